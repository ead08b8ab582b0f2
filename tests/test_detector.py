import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from activeclean_spark.detector import CLEAN, REMOVED, DetectorModel, LearnedDetector, RuleDetector, error_classes


def test_error_classes_follow_precedence():
    classes = error_classes(
        [[], ["weight", "brand"], ["brand"], [], ["price"]],
        [False, False, False, True, False],
        [None, None, None, None, "fill_price"],
    )
    assert classes.tolist() == [CLEAN, "brand+weight", "brand", REMOVED, "fill_price"]


def test_rule_needs_exactly_one_form():
    with pytest.raises(ValueError, match="exactly one of expression"):
        RuleDetector()
    with pytest.raises(ValueError, match="exactly one of expression"):
        RuleDetector("a > 1", predicate=lambda frame: frame["a"] > 1)


def test_rule_rejects_blank_expression():
    with pytest.raises(ValueError, match="non-empty Spark SQL"):
        RuleDetector("  ")


def test_rule_predicate_flags_rows():
    rule = RuleDetector(predicate=lambda frame: frame["price"].isna() | (frame["price"] < 0))
    flags = rule.flags(pa.table({"price": [1.0, None, -2.0, 3.0]}))
    assert flags.tolist() == [False, True, True, False]


def test_rule_predicate_wrong_length_is_named():
    rule = RuleDetector(predicate=lambda frame: [True])
    with pytest.raises(ValueError, match="returned 1 values for a batch of 3 rows"):
        rule.flags(pa.table({"price": [1.0, 2.0, 3.0]}))


def test_rule_predicate_non_boolean_is_named():
    rule = RuleDetector(predicate=lambda frame: frame["name"])
    with pytest.raises(ValueError, match="return booleans"):
        rule.flags(pa.table({"name": ["a", "b"]}))


def test_rule_predicate_exception_is_wrapped():
    rule = RuleDetector(predicate=lambda frame: frame["missing_column"] > 0)
    with pytest.raises(ValueError, match="rule predicate raised KeyError"):
        rule.flags(pa.table({"price": [1.0]}))


def test_learned_detector_separates_classes():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    dirty = X[:, 0] > 1.0  # the error is visible in feature 0
    classes = np.where(dirty, "price", CLEAN).astype(object)
    model = LearnedDetector().fit(X, classes)
    assert model.classes == [CLEAN, "price"]
    probabilities = model.probabilities(X)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    certified = model.certified(X)
    # Certified records are those far from the error region.
    assert certified.sum() > 100
    assert not np.any(certified & dirty)


def test_uninformative_detector_does_not_certify():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(200, 3))
    # 5% dirty records that look like the others: the fit predicts the base
    # rate, whose clean probability of about 0.95 passes the 0.9 threshold.
    classes = np.where(rng.random(200) < 0.05, "price", CLEAN).astype(object)
    model = LearnedDetector().fit(X, classes)
    assert not model.certify
    assert model.missed > 0.5
    assert not model.certified(X).any()


def test_detector_unseen_errors_block_certification():
    rng = np.random.default_rng(3)
    n, d = 60, 12
    X = rng.normal(size=(n, d))
    # Each dirty record has a different feature set far out, as when one of
    # many columns is corrupted at random.  A fit separates the records it
    # has seen, but an error in a feature it has not seen looks clean.
    dirty = np.arange(n) < d
    X[np.arange(d), np.arange(d)] = 8.0
    classes = np.where(dirty, "dirty", CLEAN).astype(object)
    model = LearnedDetector().fit(X, classes)
    seen = model.clean_probability(model.probabilities(X[dirty])) >= model.threshold
    assert not seen.any()  # on its own training records it would miss nothing
    assert model.missed > 0.5
    assert not model.certify


def test_detector_fit_warm_start():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 3))
    classes = np.where(X[:, 0] > 1.0, "price", CLEAN).astype(object)
    detector = LearnedDetector()
    first = detector.fit(X, classes)
    again = detector.fit(X, classes, previous=first)
    assert first.missed == again.missed == detector.fit(X, classes).missed
    np.testing.assert_allclose(again.weights, first.weights, atol=1e-3)


def test_learned_detector_needs_two_classes():
    X = np.zeros((30, 2))
    assert LearnedDetector().fit(X, np.full(30, CLEAN, dtype=object)) is None


def test_learned_detector_waits_for_min_records():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(10, 2))
    classes = np.array([CLEAN] * 8 + ["price"] * 2, dtype=object)
    model = LearnedDetector(min_records=20).fit(X, classes)
    assert model is not None
    assert not model.certify
    assert not model.certified(X).any()


def test_rare_classes_are_pooled():
    detector = LearnedDetector(min_class_size=3)
    pooled = detector.pooled(np.array([CLEAN, "a", "a", "a", "b", "c+d"], dtype=object))
    assert pooled.tolist() == [CLEAN, "a", "a", "a", "dirty", "dirty"]


def test_audit_draws_share_of_batch():
    detector = LearnedDetector(audit=0.05)
    assert detector.audit_draws(50) == 2
    assert detector.audit_draws(10) == 1
    assert detector.audit_draws(1) == 0
    assert LearnedDetector(audit=0.0).audit_draws(50) == 0
    assert LearnedDetector(certify=False).audit_draws(50) == 0


@pytest.mark.parametrize(
    "options, message",
    [
        ({"threshold": 1.0}, "threshold must be a number in"),
        ({"threshold": 0.2}, "threshold must be a number in"),
        ({"audit": 1.5}, "audit must be a share"),
        ({"min_records": 0}, "min_records must be a positive integer"),
        ({"reg": 0}, "reg must be a number > 0"),
    ],
)
def test_learned_detector_rejects_invalid_options(options, message):
    with pytest.raises(ValueError, match=message):
        LearnedDetector(**options)


def test_clean_probability_without_clean_class_is_zero():
    model = DetectorModel(["a", "b"], np.zeros((2, 3)), 0.9, True)
    probabilities = model.probabilities(np.ones((4, 2)))
    np.testing.assert_allclose(probabilities, 0.5)
    assert not model.certified(np.ones((4, 2))).any()


def test_probabilities_are_finite_for_extreme_margins():
    model = DetectorModel([CLEAN, "a"], np.array([[1e4, 0.0], [-1e4, 0.0]]), 0.9, True)
    probabilities = model.probabilities(np.array([[1e3], [-1e3]]))
    assert np.all(np.isfinite(probabilities))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)


def test_batch_cleaner_operation_column():
    from activeclean_spark.cleaners import BatchCleaner

    def clean(batch):
        batch["price"] = batch["price"].abs()
        batch["__operation__"] = np.where(batch["id"] == 1, "absolute_price", None)
        return batch

    result = BatchCleaner(clean).clean(pd.DataFrame({"id": [1, 2], "price": [-1.0, 2.0]}), "id")
    assert result.operations == {1: "absolute_price"}
    assert "__operation__" not in result.table.columns


def test_record_cleaner_operation_entry():
    from activeclean_spark.cleaners import RecordCleaner

    def clean(record):
        return {**record, "price": 0.0, "__operation__": "zero_price"}

    result = RecordCleaner(clean).clean(pd.DataFrame({"id": [7], "price": [-1.0]}), "id")
    assert result.operations == {7: "zero_price"}
    assert list(result.table.columns) == ["id", "price"]
