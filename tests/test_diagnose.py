"""Tests of the 2-D view of a suggested batch: embedding, input checks, image and notebook output."""

from __future__ import annotations

import logging
import sys

import numpy as np
import pandas as pd
import pytest
import scipy.sparse

from activeclean_spark import diagnose as diagnose_module
from activeclean_spark.diagnose import Diagnosis, diagnose, embed

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MARKUP = ["<script>alert(1)</script>", "<b>x</b>"]


def _blobs(n_per_blob=20, d=5, gap=12.0, seed=0):
    """Return two Gaussian blobs whose centres are ``gap`` standard deviations apart, and the blob of each row."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(2 * n_per_blob, d))
    X[n_per_blob:] += gap
    blob = np.repeat([0, 1], n_per_blob)
    return X, blob


def _nearest_neighbour_blob(coordinates, blob):
    distances = np.linalg.norm(coordinates[:, None, :] - coordinates[None, :, :], axis=2)
    np.fill_diagonal(distances, np.inf)
    return blob[np.argmin(distances, axis=1)]


def _separation(coordinates, blob):
    """Return the distance between the blob centroids over the largest distance of a point to its own centroid."""
    centroids = np.array([coordinates[blob == b].mean(axis=0) for b in (0, 1)])
    spread = max(np.linalg.norm(coordinates[blob == b] - centroids[b], axis=1).max() for b in (0, 1))
    return np.linalg.norm(centroids[0] - centroids[1]) / spread


def _hide_sklearn(monkeypatch):
    # A None entry in sys.modules makes the import raise ImportError.
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.manifold", None)


def _small_diagnosis(**overrides):
    rng = np.random.default_rng(1)
    arguments = dict(
        X_background=rng.normal(size=(30, 4)),
        labels_background=rng.integers(0, 2, 30),
        X_batch=rng.normal(size=(6, 4)) + 3,
        labels_batch=np.array([0, 1, 0, 1, 0, 1]),
        suspect_batch=np.array([True, False, True, False, False, False]),
        details_batch=pd.DataFrame({"id": range(100, 106), "note": MARKUP * 3}),
        method="pca",
    )
    arguments.update(overrides)
    return diagnose(**arguments)


# ---------------------------------------------------------------------------
# embed
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_embed_separates_blobs(method):
    X, blob = _blobs()
    coordinates, used = embed(X, method=method, seed=0)
    assert used == method
    assert coordinates.shape == (40, 2)
    assert np.array_equal(_nearest_neighbour_blob(coordinates, blob), blob)
    # Blobs 12 standard deviations apart: their centroids must lie well outside
    # each blob's own radius for both PCA and t-SNE.
    assert _separation(coordinates, blob) > 2


def test_embed_auto_falls_back_to_pca(monkeypatch, caplog):
    _hide_sklearn(monkeypatch)
    X, blob = _blobs()
    with caplog.at_level(logging.INFO, logger="activeclean_spark.diagnose"):
        coordinates, used = embed(X, method="auto")
    assert used == "pca"
    assert "PCA" in caplog.text
    assert np.array_equal(_nearest_neighbour_blob(coordinates, blob), blob)


def test_embed_tsne_without_sklearn(monkeypatch):
    _hide_sklearn(monkeypatch)
    with pytest.raises(ImportError, match="method='pca'"):
        embed(np.eye(4), method="tsne")


def test_embed_auto_logs_tsne(caplog):
    X, _ = _blobs(n_per_blob=5)
    with caplog.at_level(logging.INFO, logger="activeclean_spark.diagnose"):
        _, used = embed(X, method="auto")
    assert used == "tsne"
    assert "t-SNE" in caplog.text


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_embed_constant_columns(method):
    X, _ = _blobs(n_per_blob=8)
    X[:, 1] = 0.1
    X[:, 3] = 0.0
    coordinates, _ = embed(X, method=method)
    assert np.isfinite(coordinates).all()


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_embed_identical_rows(method):
    coordinates, used = embed(np.full((5, 3), 2.5), method=method)
    assert used == method
    assert np.array_equal(coordinates, np.zeros((5, 2)))


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_embed_three_rows(method):
    X = np.array([[0.0, 1.0, 2.0], [1.0, 0.0, 2.0], [5.0, 5.0, 1.0]])
    coordinates, _ = embed(X, method=method)
    assert coordinates.shape == (3, 2)
    assert np.isfinite(coordinates).all()


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_embed_one_column(method):
    X = np.array([[0.0], [1.0], [2.0], [10.0]])
    coordinates, _ = embed(X, method=method)
    assert coordinates.shape == (4, 2)
    assert np.isfinite(coordinates).all()


def test_embed_pca_one_column_order():
    X = np.array([[0.0], [1.0], [2.0], [10.0]])
    coordinates, _ = embed(X, method="pca")
    assert np.array_equal(coordinates[:, 1], np.zeros(4))
    # One standardized column is its own first principal component, up to sign.
    standardized = (X[:, 0] - X.mean()) / X.std()
    assert np.allclose(np.abs(coordinates[:, 0]), np.abs(standardized))


def test_embed_pca_deterministic():
    X, _ = _blobs()
    first, _ = embed(X, method="pca", seed=0)
    second, _ = embed(X[::-1].copy(), method="pca", seed=3)
    assert np.allclose(first, second[::-1])


def test_embed_pca_scale_free():
    X, _ = _blobs()
    scaled = X * np.array([1.0, 1e4, 1e-3, 1.0, 50.0])
    assert np.allclose(embed(X, method="pca")[0], embed(scaled, method="pca")[0])


def test_embed_sparse_dense_match():
    X = scipy.sparse.random(40, 12, density=0.3, random_state=2, format="csr")
    dense, _ = embed(X.toarray(), method="pca")
    sparse, _ = embed(X, method="pca")
    assert np.allclose(dense, sparse)


def test_embed_sparse_svds(monkeypatch):
    # With the limit at 0 every sparse input goes through the implicitly
    # centered and scaled operator and ARPACK, which must agree with the dense SVD.
    monkeypatch.setattr(diagnose_module, "DENSE_LIMIT", 0)
    X = scipy.sparse.random(60, 30, density=0.2, random_state=3, format="lil")
    X[:, 4] = 0.0
    X = X.tocsr()
    implicit, _ = embed(X, method="pca")
    dense, _ = embed(X.toarray(), method="pca")
    # ARPACK converges to machine precision by default, far below this tolerance.
    assert np.allclose(implicit, dense, atol=1e-6)


def test_embed_wide_tsne():
    # More than 50 columns are reduced by PCA before t-SNE.
    X, blob = _blobs(n_per_blob=15, d=80)
    coordinates, _ = embed(scipy.sparse.csr_matrix(X), method="tsne")
    assert np.array_equal(_nearest_neighbour_blob(coordinates, blob), blob)


@pytest.mark.parametrize(
    "X, message",
    [
        (np.zeros((2, 3)), "at least 3 records"),
        (np.zeros((5, 0)), "no feature column"),
        (np.zeros(5), "must be 2-D"),
        (np.array([[1.0, np.nan], [0.0, 1.0], [2.0, 2.0]]), "1 NaN or infinite"),
        (scipy.sparse.csr_matrix(np.array([[np.inf, 0.0], [0.0, 1.0], [2.0, 2.0]])), "1 NaN or infinite"),
    ],
)
def test_embed_invalid_input(X, message):
    with pytest.raises(ValueError, match=message):
        embed(X, method="pca")


def test_embed_unknown_method():
    with pytest.raises(ValueError, match="'umap'"):
        embed(np.eye(3), method="umap")


def test_embed_text_input():
    with pytest.raises(TypeError, match="numeric array"):
        embed(np.array([["a", "b"], ["c", "d"], ["e", "f"]]), method="pca")


# ---------------------------------------------------------------------------
# diagnose input checks
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, error, message",
    [
        ({"labels_batch": [0, 1]}, ValueError, "labels_batch"),
        ({"labels_background": np.zeros((30, 2))}, ValueError, "labels_background"),
        ({"X_batch": np.zeros((6, 3))}, ValueError, "X_background has 4 columns but X_batch has 3"),
        ({"X_batch": np.zeros(6)}, ValueError, "X_batch must be 2-D"),
        ({"suspect_batch": [True]}, ValueError, "suspect_batch"),
        ({"suspect_background": np.full(30, 0.5)}, TypeError, "suspect_background must contain booleans"),
        ({"details_batch": pd.DataFrame({"id": [1]})}, ValueError, "details_batch"),
        ({"details_background": {"id": [1]}}, TypeError, "details_background"),
    ],
)
def test_diagnose_bad_shapes(overrides, error, message):
    with pytest.raises(error, match=message):
        _small_diagnosis(**overrides)


def test_diagnose_too_few_records():
    with pytest.raises(ValueError, match="0 background and 2 batch"):
        diagnose(np.zeros((0, 2)), [], np.eye(2), [0, 1], method="pca")


def test_diagnose_stacks_parts():
    diagnosis = _small_diagnosis()
    assert diagnosis.coordinates.shape == (36, 2)
    assert diagnosis.method == "pca"
    assert diagnosis.in_batch.sum() == 6
    assert diagnosis.in_batch[-6:].all()
    assert diagnosis.suspect.sum() == 2
    assert diagnosis.suspect[-6]
    assert len(diagnosis.details) == 36


def test_diagnose_integer_flags():
    diagnosis = _small_diagnosis(suspect_batch=[1, 0, 0, 0, 0, 1])
    assert diagnosis.suspect.dtype == bool
    assert diagnosis.suspect.sum() == 2


def test_diagnose_sparse_batch():
    rng = np.random.default_rng(4)
    diagnosis = _small_diagnosis(X_batch=scipy.sparse.csr_matrix(rng.normal(size=(6, 4))))
    assert diagnosis.coordinates.shape == (36, 2)


def test_diagnose_mixed_labels():
    diagnosis = _small_diagnosis(labels_batch=["a", "b", "a", "b", "a", "b"])
    assert diagnosis.labels[0] in (0, 1)
    assert diagnosis.labels[-1] == "b"


def test_diagnosis_field_checks():
    with pytest.raises(ValueError, match="coordinates must have shape"):
        Diagnosis(np.zeros((3, 3)), "pca", [0, 1, 2], [True] * 3, [False] * 3, pd.DataFrame(index=range(3)))
    with pytest.raises(ValueError, match="details must have one row per point"):
        Diagnosis(np.zeros((3, 2)), "pca", [0, 1, 2], [True] * 3, [False] * 3, pd.DataFrame(index=range(2)))


# ---------------------------------------------------------------------------
# table, figure and notebook output
# ---------------------------------------------------------------------------


def test_table_batch_rows():
    table = _small_diagnosis().table()
    assert list(table.columns) == ["id", "note", "x", "y", "label", "suspect"]
    assert table["id"].tolist() == list(range(100, 106))
    assert table["suspect"].tolist() == [True, False, True, False, False, False]
    assert table["label"].tolist() == [0, 1, 0, 1, 0, 1]


def test_table_renames_clashes():
    details = pd.DataFrame({"id": range(6), "y": range(6), "label": list("abcdef")})
    table = _small_diagnosis(details_batch=details).table()
    assert list(table.columns) == ["id", "record_y", "record_label", "x", "y", "label", "suspect"]
    assert table["record_label"].tolist() == list("abcdef")


def test_table_keeps_integer_keys():
    # The background has no details, so its rows miss the key column.
    table = _small_diagnosis().table()
    assert all(isinstance(value, (int, np.integer)) for value in table["id"])


def test_to_png_valid(tmp_path):
    import matplotlib.image

    path = _small_diagnosis(title="batch $5 <b>").to_png(tmp_path / "view.png")
    assert path == str(tmp_path / "view.png")
    with open(path, "rb") as handle:
        assert handle.read(8) == PNG_SIGNATURE
    image = matplotlib.image.imread(path)
    assert image.ndim == 3
    assert image.shape[0] > 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["view.png"]


def test_repr_png_bytes():
    assert _small_diagnosis()._repr_png_()[:8] == PNG_SIGNATURE


def test_repr_html_escapes():
    text = _small_diagnosis()._repr_html_()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "&lt;b&gt;x&lt;/b&gt;" in text
    assert "<script" not in text.lower()
    assert "<b>" not in text


def test_repr_html_escapes_headers():
    details = pd.DataFrame({"<i>col</i>": range(6)})
    text = _small_diagnosis(details_batch=details)._repr_html_()
    assert "&lt;i&gt;col&lt;/i&gt;" in text
    assert "<i>" not in text


def test_repr_html_image_inline():
    text = _small_diagnosis()._repr_html_()
    assert text.count('src="data:image/png;base64,') == 1
    assert text.count("<tr>") == 7


def test_figure_legend_labels():
    figure = _small_diagnosis().figure()
    legend = figure.axes[0].get_legend()
    texts = [text.get_text() for text in legend.get_texts()]
    assert "label 0" in texts
    assert "label 1" in texts
    assert "suspected dirty" in texts
    assert len(figure.axes) == 1


@pytest.mark.parametrize("labels", [np.arange(36) * 0.5, np.array([f"class {i}" for i in range(36)], dtype=object)])
def test_figure_colourbar_many_labels(labels):
    diagnosis = _small_diagnosis(labels_background=labels[:30], labels_batch=labels[30:])
    figure = diagnosis.figure()
    # The second axes is the colour bar.
    assert len(figure.axes) == 2


def test_figure_missing_labels():
    labels = np.array([None, "a", "b", None, "a", "b"], dtype=object)
    figure = _small_diagnosis(labels_batch=labels).figure()
    texts = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert "label missing" in texts


def test_figure_keeps_backend():
    import matplotlib

    backend = matplotlib.rcParams["backend"]
    _small_diagnosis().figure()
    assert matplotlib.rcParams["backend"] == backend


def _hide_matplotlib(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)


def test_figure_without_matplotlib(monkeypatch):
    diagnosis = _small_diagnosis()
    _hide_matplotlib(monkeypatch)
    with pytest.raises(ImportError, match=r"pip install 'activeclean_spark\[report\]'"):
        diagnosis.figure()


def test_repr_without_matplotlib(monkeypatch):
    diagnosis = _small_diagnosis()
    _hide_matplotlib(monkeypatch)
    assert diagnosis._repr_png_() is None
    text = diagnosis._repr_html_()
    assert "needs matplotlib" in text
    assert "data:image/png" not in text
    assert text.count("<tr>") == 7
