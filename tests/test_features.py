import numpy as np
import pyarrow as pa
import pytest

from activeclean_spark.features import FeatureSpec, Featurizer, FunctionFeaturizer, value_text


def _table():
    return pa.table(
        {
            "amount": pa.array(["1.5", "2.5", "N/A", None, " 4.0 "]),
            "count": pa.array([1, 2, 3, None, 5], pa.int64()),
            "flag": pa.array([True, False, True, True, None]),
            "color": pa.array(["red", "red", "blue", None, "green"]),
            "label": pa.array(["yes", "no", "yes", "maybe", None]),
        }
    )


def _fitted(**options):
    spec = FeatureSpec(
        label="label", numeric=["amount", "count"], categorical=["flag", "color"], positive="yes", **options
    )
    table = _table()
    half = table.num_rows // 2
    partials = [spec.partial_statistics(table.slice(0, half)), spec.partial_statistics(table.slice(half))]
    return spec.fit_from_statistics(partials)


def test_numeric_parsing_and_standardization():
    featurizer = _fitted()
    amounts = np.array([1.5, 2.5, 4.0])
    assert featurizer.numeric[0]["mean"] == pytest.approx(amounts.mean())
    assert featurizer.numeric[0]["std"] == pytest.approx(amounts.std())
    X, _ = featurizer.transform(_table())
    expected = (np.array([1.5, 2.5, 0.0, 0.0, 4.0]) - amounts.mean()) / amounts.std()
    expected[2:4] = 0.0
    np.testing.assert_allclose(X[:, 0], expected)
    np.testing.assert_array_equal(X[:, 1], [0, 0, 1, 1, 0])


def test_categories_other_and_missing_buckets():
    featurizer = _fitted(max_categories=1)
    assert featurizer.feature_names[-6:] == [
        "flag=true", "flag=__other__", "flag=__missing__", "color=red", "color=__other__", "color=__missing__",
    ]
    X, _ = featurizer.transform(_table())
    np.testing.assert_array_equal(X[:, -3:], [[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 1, 0]])
    np.testing.assert_array_equal(X.sum(axis=1) - X[:, [0, 2]].sum(axis=1) - X[:, [1, 3]].sum(axis=1), [2] * 5)


def test_labels_one_vs_rest_with_nan_for_null():
    _, y = _fitted().transform(_table())
    np.testing.assert_array_equal(y[:4], [1.0, 0.0, 1.0, 0.0])
    assert np.isnan(y[4])


def test_label_classes_inferred_when_two_values():
    spec = FeatureSpec(label="label", numeric=["count"])
    table = pa.table({"count": [1, 2, 3], "label": [0, 1, 1]})
    featurizer = spec.fit_from_statistics([spec.partial_statistics(table)])
    assert featurizer.label["classes"] == ["0", "1"]
    np.testing.assert_array_equal(featurizer.labels(table), [0.0, 1.0, 1.0])


def test_label_with_three_values_needs_positive():
    spec = FeatureSpec(label="label", numeric=["count"])
    table = pa.table({"count": [1, 2, 3], "label": ["a", "b", "c"]})
    with pytest.raises(ValueError, match="label column 'label' has 3 distinct values .* set positive"):
        spec.fit_from_statistics([spec.partial_statistics(table)])


def test_positive_label_must_occur():
    spec = FeatureSpec(label="label", numeric=["count"], positive="z")
    table = pa.table({"count": [1, 2], "label": ["a", "b"]})
    with pytest.raises(ValueError, match="positive label 'z' does not occur in label column 'label'"):
        spec.fit_from_statistics([spec.partial_statistics(table)])


def test_regression_labels_are_parsed():
    spec = FeatureSpec(label="target", numeric=["count"], task="regression")
    table = pa.table({"count": [1, 2, 3], "target": ["1.5", "bad", None]})
    featurizer = spec.fit_from_statistics([spec.partial_statistics(table)])
    y = featurizer.labels(table)
    assert y[0] == 1.5
    assert np.isnan(y[1])
    assert np.isnan(y[2])


def test_numeric_column_of_dates_is_rejected():
    spec = FeatureSpec(label="label", numeric=["when"])
    table = pa.table({"when": pa.array([1, 2], pa.date32()), "label": [0, 1]})
    with pytest.raises(TypeError, match="numeric column 'when' has type date32.*list it under categorical"):
        spec.partial_statistics(table)


def test_saved_featurizer_gives_same_features(tmp_path):
    featurizer = _fitted()
    path = tmp_path / "featurizer.json"
    featurizer.save(str(path))
    loaded = Featurizer.load(str(path))
    np.testing.assert_array_equal(loaded.transform(_table())[0], featurizer.transform(_table())[0])
    assert loaded.feature_names == featurizer.feature_names


@pytest.mark.parametrize(
    "options, message",
    [
        ({"label": "y"}, "name at least one feature column"),
        ({"label": "y", "numeric": ["a"], "categorical": ["a"]}, r"columns \['a'\] are listed more than once"),
        ({"label": "a", "numeric": ["a"]}, "label column 'a' is also listed as a feature"),
        ({"label": "y", "numeric": ["a"], "task": "ranking"}, "task must be 'classification' or 'regression'"),
        ({"label": "y", "numeric": ["a"], "max_categories": 0}, "max_categories must be a positive integer, got 0"),
    ],
)
def test_spec_rejects_invalid_options(options, message):
    with pytest.raises(ValueError, match=message):
        FeatureSpec(**options)


def test_value_text_matches_arrow_casts():
    assert value_text(True) == "true"
    assert value_text(1.0) == "1"
    assert value_text(2.5) == "2.5"
    assert value_text("a") == "a"


def test_labels_with_two_classes_reject_other_values():
    spec = FeatureSpec(label="label", numeric=["count"], positive="yes")
    table = pa.table({"count": [1, 2, 3], "label": ["yes", "no", "no"]})
    featurizer = spec.fit_from_statistics([spec.partial_statistics(table)])
    y = featurizer.labels(pa.table({"count": [1, 2], "label": ["yes", "typo"]}))
    assert y[0] == 1.0
    assert np.isnan(y[1])


def test_hashed_column_keeps_unseen_values_apart():
    spec = FeatureSpec(label="label", numeric=["count"], hashed=["brand"], hash_buckets=64)
    fitted_on = pa.table({"count": [1, 2], "brand": [None, None], "label": [0, 1]})
    featurizer = spec.fit_from_statistics([spec.partial_statistics(fitted_on)])
    table = pa.table({"count": [1, 2, 3, 4], "brand": ["Acme", "Zenith", "Acme", None], "label": [0, 1, 0, 1]})
    X, _ = featurizer.transform(table)
    hashed = X[:, 1:]  # "count" has no missing value, so no indicator
    assert hashed.shape[1] == 65
    np.testing.assert_array_equal(hashed.sum(axis=1), [1, 1, 1, 1])
    np.testing.assert_array_equal(hashed[0], hashed[2])
    assert not np.array_equal(hashed[0], hashed[1])
    assert hashed[3, -1] == 1.0
    assert featurizer.feature_names[-1] == "brand#__missing__"


def test_hashed_buckets_are_stable_across_featurizers():
    spec = FeatureSpec(label="label", hashed=["brand"], hash_buckets=1024)
    table = pa.table({"brand": ["Glenna Jean", "Trend Lab"], "label": [0, 1]})
    first = spec.fit_from_statistics([spec.partial_statistics(table)]).transform(table)[0]
    second = Featurizer.from_dict(spec.fit_from_statistics([spec.partial_statistics(table)]).to_dict()).transform(table)[0]
    np.testing.assert_array_equal(first, second)


def squares(table):
    """Featurize function for the tests: x and x squared, label as is."""
    x = np.asarray(table.column("x").to_numpy(zero_copy_only=False), dtype=float)
    return np.column_stack([x, x * x]), np.asarray(table.column("label").to_numpy(zero_copy_only=False), dtype=float)


def test_function_featurizer_round_trip():
    featurizer = FunctionFeaturizer(squares, ["x", "x2"], columns=["x"], label="label")
    table = pa.table({"x": [1.0, 2.0], "label": [0, 1]})
    X, y = featurizer.transform(table)
    np.testing.assert_array_equal(X, [[1, 1], [2, 4]])
    np.testing.assert_array_equal(y, [0, 1])
    assert featurizer.columns == ["x", "label"]
    loaded = Featurizer.from_dict(featurizer.to_dict())
    np.testing.assert_array_equal(loaded.transform(table)[0], X)


def test_function_featurizer_checks_shapes():
    featurizer = FunctionFeaturizer(squares, ["x"], columns=["x"], label="label")
    with pytest.raises(ValueError, match=r"featurize function returned X of shape \(2, 2\), expected \(2, 1\)"):
        featurizer.transform(pa.table({"x": [1.0, 2.0], "label": [0, 1]}))
    with pytest.raises(TypeError, match="featurize function must be callable, got str"):
        FunctionFeaturizer("squares", ["x"], columns=["x"], label="label")


def test_missing_indicators_follow_the_dirty_data_unless_set():
    table = pa.table({"a": [1.0, None, 3.0], "b": [1.0, 2.0, 3.0], "label": [0, 1, 0]})
    names = {}
    for setting in ("auto", True, False):
        spec = FeatureSpec(label="label", numeric=["a", "b"], missing_indicators=setting)
        featurizer = spec.fit_from_statistics([spec.partial_statistics(table)])
        names[setting] = featurizer.feature_names
        X, _ = featurizer.transform(table)
        assert X.shape == (3, len(featurizer.feature_names))
    assert names["auto"] == ["a", "a__missing", "b"]
    assert names[True] == ["a", "a__missing", "b", "b__missing"]
    assert names[False] == ["a", "b"]
    with pytest.raises(ValueError, match="missing_indicators"):
        FeatureSpec(label="label", numeric=["a"], missing_indicators="some")
