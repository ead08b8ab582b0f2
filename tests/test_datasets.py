import numpy as np
import pandas as pd
import pytest

from activeclean_spark.datasets import breast_cancer, corrupt


def _frame(n=200, seed=0):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n, 4)), columns=["a", "b", "c", "d"])
    labels = (frame["a"] - frame["b"] + 0.5 * frame["c"] > 0).astype(int).to_numpy()
    frame["label"] = labels
    return frame, labels


def _changed_rows(clean, dirty):
    same = (clean == dirty) | (clean.isna() & dirty.isna())
    return (~same).any(axis=1)


@pytest.mark.parametrize("kind", ["random", "systematic", "missing", "label_flip"])
def test_each_corruption_changes_rate_share(kind):
    clean, labels = _frame()
    dirty = corrupt(clean, ["a", "b", "c", "d"], labels, kind=kind, rate=0.1, seed=1, label="label")
    assert _changed_rows(clean, dirty).sum() == 20
    assert clean.equals(_frame()[0])


def test_random_sets_three_times_maximum():
    clean, labels = _frame()
    dirty = corrupt(clean, ["a", "b"], labels, kind="random", rate=0.05, seed=2)
    changed = dirty[_changed_rows(clean, dirty)]
    for _, row in changed.iterrows():
        assert row["a"] == pytest.approx(3 * clean["a"].max()) or row["b"] == pytest.approx(3 * clean["b"].max())


def test_systematic_targets_largest_weights():
    clean, labels = _frame()
    dirty = corrupt(clean, ["a", "b", "c", "d"], labels, kind="systematic", rate=0.1, seed=0)
    changed_columns = [c for c in ["a", "b", "c", "d"] if not np.allclose(clean[c], dirty[c])]
    # The label depends on a, b and c only, so d has the smallest weight.
    assert changed_columns == ["a", "b", "c"]
    assert np.allclose(dirty.loc[_changed_rows(clean, dirty), "a"], clean["a"].mean())


def test_label_flip_swaps_binary_values():
    clean, labels = _frame()
    dirty = corrupt(clean, ["a"], labels, kind="label_flip", rate=0.1, seed=3, label="label")
    flipped = dirty["label"] != clean["label"]
    assert flipped.sum() == 20
    assert set(dirty["label"].unique()) == {0, 1}


def test_corruption_is_seeded():
    clean, labels = _frame()
    first = corrupt(clean, ["a", "b"], labels, kind="missing", rate=0.2, seed=5)
    second = corrupt(clean, ["a", "b"], labels, kind="missing", rate=0.2, seed=5)
    other = corrupt(clean, ["a", "b"], labels, kind="missing", rate=0.2, seed=6)
    assert first.equals(second)
    assert not first.equals(other)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"kind": "swap", "rate": 0.1}, "corruption must be one of random, systematic, missing, label_flip, got 'swap'"),
        ({"kind": "random", "rate": 1.0}, r"corruption rate must be in \(0, 1\), got 1.0"),
        ({"kind": "label_flip", "rate": 0.1}, "label_flip corruption needs the label column; got label=None"),
    ],
)
def test_corrupt_rejects_invalid_options(options, message):
    clean, labels = _frame()
    with pytest.raises(ValueError, match=message):
        corrupt(clean, ["a"], labels, seed=0, **options)


def test_breast_cancer_tables_align():
    dirty, clean, spec = breast_cancer(corruption="label_flip", rate=0.1, seed=0)
    assert list(dirty.columns) == list(clean.columns)
    assert (dirty["id"] == clean["id"]).all()
    assert (dirty["diagnosis"] != clean["diagnosis"]).sum() == 57
    assert spec["label"] == "diagnosis"
