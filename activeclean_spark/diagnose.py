"""A 2-D view of the suggested batch among a background sample of records.

:func:`diagnose` embeds the feature vectors of the suggested batch and of a
background sample in two dimensions, with t-SNE when scikit-learn is installed
and PCA otherwise.  The returned :class:`Diagnosis` draws the points coloured
by label, the batch as larger markers and the records that the detector
suspects of being dirty with an ``x``.  In a notebook it shows itself as an
image followed by a table of the batch.  Elsewhere :meth:`Diagnosis.to_png`
writes the image to a file.

This module needs numpy, pandas and scipy, matplotlib for the images, and
scikit-learn for t-SNE.  It does not import pyspark.  Matplotlib is used
through ``matplotlib.figure.Figure`` and the Agg canvas, so the process-wide
pyplot backend (a notebook's inline backend, for example) is left untouched.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import numbers
import os
import tempfile
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse
import scipy.sparse.linalg

__all__ = ["Diagnosis", "diagnose", "embed"]

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'activeclean_spark[report]'"
METHODS = ("auto", "tsne", "pca")

# A sparse matrix with at most this many entries (80 MB as float64) is made
# dense before standardizing.  A larger one is centered and scaled implicitly
# inside a sparse SVD, because subtracting the column means would fill it in.
DENSE_LIMIT = 10_000_000

# Wider inputs are reduced to this many principal components before t-SNE,
# which keeps its neighbour search cheap and drops directions of pure noise.
TSNE_DIMENSIONS = 50

# Up to this many distinct labels get one colour each and a legend, more get a colour bar.
MAX_LEGEND_LABELS = 10

# Columns that Diagnosis.table adds to the details.
TABLE_COLUMNS = ("x", "y", "label", "suspect")

MISSING_LABEL_COLOR = "#9e9e9e"


# ---------------------------------------------------------------------------
# Embedding
# ---------------------------------------------------------------------------


def _as_matrix(X, name: str):
    """Check that ``X`` is a finite numeric matrix and return it as a float array or CSR matrix."""
    if scipy.sparse.issparse(X):
        matrix = scipy.sparse.csr_matrix(X, dtype=float)
        finite = np.isfinite(matrix.data)
    else:
        try:
            matrix = np.asarray(X, dtype=float)
        except (TypeError, ValueError) as error:
            raise TypeError(
                f"{name} must be a numeric array or a scipy.sparse matrix, got {type(X).__name__}: {error}"
            ) from error
        if matrix.ndim != 2:
            raise ValueError(
                f"{name} must be 2-D (records x features), got shape {matrix.shape}; "
                "reshape a single feature with X.reshape(-1, 1)"
            )
        finite = np.isfinite(matrix)
    if not finite.all():
        raise ValueError(
            f"{name} contains {int((~finite).sum())} NaN or infinite value(s); impute or drop them before embedding"
        )
    return matrix


def _column_statistics(X) -> tuple[np.ndarray, np.ndarray]:
    """Return the column means and the reciprocal standard deviations, 0 for constant columns.

    A constant column is detected exactly (its minimum equals its maximum), so
    rounding in the mean cannot turn it into noise of unit variance.
    """
    if scipy.sparse.issparse(X):
        mean = np.asarray(X.mean(axis=0)).ravel()
        # E[x^2] - E[x]^2 can come out slightly negative by cancellation.
        variance = np.maximum(np.asarray(X.multiply(X).mean(axis=0)).ravel() - mean**2, 0.0)
        constant = (X.max(axis=0) - X.min(axis=0)).toarray().ravel() == 0
    else:
        mean = X.mean(axis=0)
        variance = X.var(axis=0)
        constant = np.ptp(X, axis=0) == 0
    usable = ~constant & (variance > 0)
    inverse_scale = np.zeros(X.shape[1])
    inverse_scale[usable] = 1.0 / np.sqrt(variance[usable])
    return mean, inverse_scale


def _flip_signs(U: np.ndarray) -> np.ndarray:
    """Flip each column so that its entry of largest magnitude is positive, which makes the SVD deterministic."""
    largest = np.argmax(np.abs(U), axis=0)
    signs = np.sign(U[largest, np.arange(U.shape[1])])
    signs[signs == 0] = 1.0
    return U * signs


def _principal_components(X, k: int, seed: int) -> np.ndarray:
    """Project the standardized rows of ``X`` on their first ``k`` principal components.

    The result has fewer than ``k`` columns when ``X`` has fewer than ``k``
    rows or columns, and at most ``min(n, d) - 1`` when a large sparse ``X``
    goes through ARPACK.
    """
    n, d = X.shape
    mean, inverse_scale = _column_statistics(X)

    if scipy.sparse.issparse(X) and n * d > DENSE_LIMIT and min(n, d) > 1:
        # ARPACK finds at most min(n, d) - 1 singular vectors.
        k = min(k, min(n, d) - 1)
        # The operator is (X - 1 mean^T) diag(inverse_scale), applied without forming it.
        shift = mean * inverse_scale

        def matvec(v):
            v = np.ravel(v)
            return X @ (inverse_scale * v) - shift @ v

        def rmatvec(u):
            u = np.ravel(u)
            return inverse_scale * (X.T @ u) - shift * u.sum()

        operator = scipy.sparse.linalg.LinearOperator((n, d), matvec=matvec, rmatvec=rmatvec, dtype=float)
        start = np.random.default_rng(seed).standard_normal(min(n, d))
        U, S, _ = scipy.sparse.linalg.svds(operator, k=k, v0=start)
        order = np.argsort(S)[::-1]
        U, S = U[:, order], S[order]
    else:
        dense = X.toarray() if scipy.sparse.issparse(X) else X
        Z = (dense - mean) * inverse_scale
        U, S, _ = np.linalg.svd(Z, full_matrices=False)
        U, S = U[:, :k], S[:k]
    return _flip_signs(U) * S


def _pad_columns(Y: np.ndarray, width: int) -> np.ndarray:
    if Y.shape[1] >= width:
        return Y
    return np.hstack([Y, np.zeros((Y.shape[0], width - Y.shape[1]))])


def _tsne_class():
    """Return scikit-learn's TSNE class, or None when scikit-learn cannot be imported."""
    try:
        from sklearn.manifold import TSNE
    except ImportError:
        return None
    return TSNE


def _tsne(X, TSNE, seed: int) -> np.ndarray:
    n, d = X.shape
    if d > TSNE_DIMENSIONS:
        Z = _principal_components(X, TSNE_DIMENSIONS, seed)
    else:
        dense = X.toarray() if scipy.sparse.issparse(X) else X
        mean, inverse_scale = _column_statistics(dense)
        Z = (dense - mean) * inverse_scale
    # The PCA initialisation needs two input columns.  A zero column leaves
    # the 1-D layout of a single feature unchanged.
    Z = _pad_columns(Z, 2)
    model = TSNE(n_components=2, perplexity=min(30.0, (n - 1) / 3), init="pca", random_state=seed)
    return np.asarray(model.fit_transform(Z), dtype=float)


def embed(X, *, method: str = "auto", seed: int = 0) -> tuple[np.ndarray, str]:
    """Embed the rows of ``X`` in two dimensions.

    Every column is centered and scaled to unit variance first, so features
    measured in large units do not dominate the layout.  Constant columns are
    set to zero.  When every column is constant all records coincide, and the
    coordinates are all zero whatever the method.

    Parameters
    ----------
    X : numpy.ndarray or scipy.sparse matrix
        Features, one row per record, with at least 3 rows and 1 column.
    method : {"auto", "tsne", "pca"}, default="auto"
        ``"tsne"`` runs scikit-learn's t-SNE with perplexity
        ``min(30, (n - 1) / 3)`` and PCA initialisation, after reducing inputs
        wider than 50 columns to their first 50 principal components.
        ``"pca"`` projects on the first two principal components with numpy's
        SVD, or with scipy's sparse SVD for a sparse matrix of more than 10
        million entries.  ``"auto"`` uses t-SNE when scikit-learn can be
        imported and PCA otherwise.  t-SNE takes far longer than PCA and
        its run time grows with ``n``, so keep the background sample small
        (hundreds to a few thousand records) when it is used.
    seed : int, default=0
        Random state of t-SNE and of the sparse SVD's start vector.

    Returns
    -------
    coordinates : numpy.ndarray
        Shape ``(n, 2)``.  With one column, PCA's second coordinate is zero.
    method : str
        The method used, ``"tsne"`` or ``"pca"``.

    Raises
    ------
    ValueError
        If ``X`` is not 2-D, has fewer than 3 rows or no column, contains NaN
        or infinite values, or ``method`` is unknown.
    ImportError
        If ``method="tsne"`` and scikit-learn is not installed.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, METHODS))}, got {method!r}")
    X = _as_matrix(X, "X")
    n, d = X.shape
    if n < 3:
        raise ValueError(f"embedding needs at least 3 records, got {n}; add background records")
    if d == 0:
        raise ValueError("X has no feature column; pass the featurized records")

    TSNE = None
    if method in ("auto", "tsne"):
        TSNE = _tsne_class()
        if TSNE is None and method == "tsne":
            raise ImportError(
                f"method='tsne' needs scikit-learn; install it with {INSTALL_HINT} or pass method='pca'"
            )
    used = "tsne" if TSNE is not None else "pca"
    if method == "auto":
        logger.info("Embedding %d records in 2-D with %s", n, "t-SNE" if used == "tsne" else "PCA")

    _, inverse_scale = _column_statistics(X)
    if not inverse_scale.any():
        # t-SNE's PCA initialisation divides by the zero spread of identical
        # points, and scikit-learn 1.9.1 then ended in a segmentation fault.
        return np.zeros((n, 2)), used
    if used == "tsne":
        return _tsne(X, TSNE, seed), used
    return _pad_columns(_principal_components(X, 2, seed), 2), used


# ---------------------------------------------------------------------------
# Matplotlib helpers
# ---------------------------------------------------------------------------


def new_figure(figsize: tuple[float, float]):
    """Create a matplotlib Figure drawn by the Agg canvas, leaving pyplot's backend alone.

    Raises
    ------
    ImportError
        If matplotlib is not installed.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(f"drawing the report images needs matplotlib; install it with {INSTALL_HINT}") from error
    figure = Figure(figsize=figsize)
    FigureCanvasAgg(figure)
    return figure


def png_bytes(figure) -> bytes:
    """Render a figure to PNG bytes.

    The software tag that matplotlib writes by default is left out, so the PNG
    contains no link to its web site.
    """
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()


def write_atomically(path: str, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``.

    A reader of ``path`` gets the old file or the new one, never a partial one.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=directory)
    # mkstemp creates the file readable by its owner only; a report gets the usual permissions instead.
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(descriptor, 0o666 & ~umask)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def plain_text(value, limit: int = 40) -> str:
    """Return ``value`` as text for a matplotlib label: shortened, with ``$`` kept from starting math mode."""
    text = str(value)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("$", r"\$")


# ---------------------------------------------------------------------------
# Labels and colours
# ---------------------------------------------------------------------------


def _sort_key(value):
    if isinstance(value, numbers.Number) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, str(value))


def _label_categories(labels: np.ndarray) -> tuple[list, np.ndarray]:
    """Return the distinct non-missing labels in sorted order and each point's index into them, -1 if missing."""
    values = pd.Series(labels, dtype=object)
    missing = values.isna().to_numpy()
    categories = sorted(pd.unique(values[~missing]), key=_sort_key)
    codes = np.full(len(values), -1)
    if categories:
        position = {category: index for index, category in enumerate(categories)}
        codes[~missing] = values[~missing].map(position).to_numpy(dtype=int)
    return categories, codes


def _is_numeric_labels(categories: list) -> bool:
    return bool(categories) and all(
        isinstance(value, numbers.Number) and not isinstance(value, bool) for value in categories
    )


# ---------------------------------------------------------------------------
# Diagnosis
# ---------------------------------------------------------------------------


def _check_length(values, n: int, name: str, dtype=None) -> np.ndarray:
    array = np.asarray(values, dtype=dtype)
    if array.ndim != 1 or len(array) != n:
        raise ValueError(f"{name} must have {n} entries, one per record, got shape {array.shape}")
    return array


def _as_flags(values, n: int, name: str) -> np.ndarray:
    """Return ``values`` as a bool array of length ``n``, accepting bools and the integers 0 and 1."""
    if values is None:
        return np.zeros(n, dtype=bool)
    array = _check_length(values, n, name)
    if array.dtype == bool:
        return array
    if array.dtype.kind in "iu" and np.isin(array, (0, 1)).all():
        return array.astype(bool)
    raise TypeError(f"{name} must contain booleans (True marks a record), got dtype {array.dtype}")


@dataclass
class Diagnosis:
    """The 2-D view of a suggested batch among background records.

    Attributes
    ----------
    coordinates : numpy.ndarray
        Embedded position of each point, shape ``(n, 2)``.
    method : str
        Embedding method, ``"tsne"`` or ``"pca"``.
    labels : numpy.ndarray
        Label value of each point, numbers or text.
    in_batch : numpy.ndarray
        True for the records of the suggested batch, False for the background sample.
    suspect : numpy.ndarray
        True for the records that the detector marks as likely dirty.
    details : pandas.DataFrame
        One row per point with the key and a few columns to show.  Values are
        shown as text, so markup in them is never interpreted.
    title : str
        Figure title; empty for a default title that names the method.
    """

    coordinates: np.ndarray
    method: str
    labels: np.ndarray
    in_batch: np.ndarray
    suspect: np.ndarray
    details: pd.DataFrame
    title: str = ""

    def __post_init__(self):
        coordinates = np.asarray(self.coordinates, dtype=float)
        if coordinates.ndim != 2 or coordinates.shape[1] != 2:
            raise ValueError(f"coordinates must have shape (n, 2), got {coordinates.shape}")
        n = len(coordinates)
        self.coordinates = coordinates
        self.labels = _check_length(self.labels, n, "labels")
        self.in_batch = _as_flags(self.in_batch, n, "in_batch")
        self.suspect = _as_flags(self.suspect, n, "suspect")
        if not isinstance(self.details, pd.DataFrame):
            raise TypeError(f"details must be a pandas DataFrame, got {type(self.details).__name__}")
        if len(self.details) != n:
            raise ValueError(f"details must have one row per point ({n}), got {len(self.details)}")

    def _title(self) -> str:
        if self.title:
            return plain_text(self.title, limit=80)
        name = "t-SNE" if self.method == "tsne" else "PCA"
        return f"Suggested batch among background records ({name})"

    def figure(self):
        """Draw the points and return the matplotlib Figure.

        Background records are small dots and batch records larger markers
        with a black edge, both coloured by label.  Suspected records get an
        ``x`` on top.  Up to 10 distinct labels are listed in a legend, more
        are shown on a colour bar, and missing labels are grey.

        Raises
        ------
        ImportError
            If matplotlib is not installed.
        """
        figure = new_figure((8.0, 5.5))
        axes = figure.add_subplot()
        colors, legend_handles = self._colors(figure, axes)

        from matplotlib.lines import Line2D

        x, y = self.coordinates[:, 0], self.coordinates[:, 1]
        background = ~self.in_batch
        axes.scatter(x[background], y[background], s=10, c=colors[background], alpha=0.6, linewidths=0)
        axes.scatter(
            x[self.in_batch], y[self.in_batch], s=55, c=colors[self.in_batch], edgecolors="black", linewidths=0.9
        )
        # Thin crosses leave the label colour of the point below visible.
        axes.scatter(x[self.suspect], y[self.suspect], s=45, marker="x", c="black", linewidths=0.8, alpha=0.8)

        marker_handles = [
            Line2D([], [], linestyle="", marker="o", markersize=3, color="grey", label="background record"),
            Line2D(
                [], [], linestyle="", marker="o", markersize=8, markerfacecolor="grey", markeredgecolor="black",
                label="suggested batch",
            ),
            Line2D([], [], linestyle="", marker="x", markersize=8, color="black", label="suspected dirty"),
        ]
        # Below the axes, where neither a colour bar nor the points can cover it.
        axes.legend(
            handles=legend_handles + marker_handles, loc="upper center", bbox_to_anchor=(0.5, -0.12),
            ncol=4, fontsize="small", frameon=False,
        )
        name = "t-SNE" if self.method == "tsne" else "PC"
        axes.set_xlabel(f"{name} 1")
        axes.set_ylabel(f"{name} 2")
        axes.set_title(self._title())
        axes.grid(alpha=0.3)
        return figure

    def _colors(self, figure, axes) -> tuple[np.ndarray, list]:
        """Return each point's RGBA colour and the legend entries for the labels.

        A colour bar takes the place of the legend entries when there are more
        than 10 distinct labels.
        """
        import matplotlib
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize, to_rgba
        from matplotlib.lines import Line2D

        categories, codes = _label_categories(self.labels)
        colors = np.tile(to_rgba(MISSING_LABEL_COLOR), (len(codes), 1))
        known = codes >= 0
        handles = []

        if len(categories) <= MAX_LEGEND_LABELS:
            palette = matplotlib.colormaps["tab10"]
            colors[known] = palette(codes[known])
            for index, category in enumerate(categories):
                handles.append(
                    Line2D([], [], linestyle="", marker="o", color=palette(index), label=f"label {plain_text(category)}")
                )
        else:
            colormap = matplotlib.colormaps["viridis"]
            numeric = _is_numeric_labels(categories)
            if numeric:
                values = np.full(len(codes), np.nan)
                values[known] = np.asarray(categories, dtype=float)[codes[known]]
                norm = Normalize(float(min(categories)), float(max(categories)))
            else:
                values = codes.astype(float)
                norm = Normalize(0, len(categories) - 1)
            colors[known] = colormap(norm(values[known]))
            colorbar = figure.colorbar(ScalarMappable(norm=norm, cmap=colormap), ax=axes, pad=0.02)
            colorbar.set_label("label")
            if not numeric:
                ticks = np.unique(np.linspace(0, len(categories) - 1, MAX_LEGEND_LABELS).round().astype(int))
                colorbar.set_ticks(ticks)
                colorbar.set_ticklabels([plain_text(categories[tick], limit=20) for tick in ticks])
        if not known.all():
            handles.append(Line2D([], [], linestyle="", marker="o", color=MISSING_LABEL_COLOR, label="label missing"))
        return colors, handles

    def __repr__(self) -> str:
        return (f"Diagnosis(method={self.method!r}, {len(self.coordinates)} points, {int(self.in_batch.sum())} in "
                f"the batch, {int(self.suspect.sum())} suspected dirty)")

    def to_png(self, path: str | os.PathLike) -> str:
        """Write the figure to a PNG file and return its path.

        The file is replaced atomically, and a missing parent directory is created.
        """
        path = os.fspath(path)
        write_atomically(path, png_bytes(self.figure()))
        return path

    def table(self) -> pd.DataFrame:
        """Return the batch's rows of ``details`` with the columns x, y, label and suspect added.

        A details column that has one of these four names is kept as
        ``record_<name>``.  The index runs from 0.
        """
        rows = np.flatnonzero(self.in_batch)
        details = self.details.iloc[rows].reset_index(drop=True)
        renames = {}
        used_names = set(map(str, details.columns)) | set(TABLE_COLUMNS)
        for column in details.columns:
            if column in TABLE_COLUMNS:
                name = f"record_{column}"
                while name in used_names:
                    name = f"record_{name}"
                renames[column] = name
                used_names.add(name)
        details = details.rename(columns=renames)
        added = pd.DataFrame(
            {
                "x": self.coordinates[rows, 0],
                "y": self.coordinates[rows, 1],
                "label": self.labels[rows],
                "suspect": self.suspect[rows],
            }
        )
        return pd.concat([details, added], axis=1)

    def _repr_png_(self) -> bytes | None:
        # Notebook display hooks return None to mean "no image": without
        # matplotlib, the HTML view still shows the table.
        try:
            return png_bytes(self.figure())
        except ImportError:
            return None

    def _repr_html_(self) -> str:
        from .htmlreport import html_table, image_html

        image = self._repr_png_()
        if image is None:
            picture = f"<p>The image needs matplotlib: {html.escape(INSTALL_HINT)}</p>"
        else:
            picture = image_html(base64.b64encode(image).decode("ascii"), alt=self._title())
        batch = int(self.in_batch.sum())
        suspects = int((self.in_batch & self.suspect).sum())
        caption = (
            f"{batch} record(s) in the suggested batch, {suspects} of them suspected dirty, "
            f"among {len(self.in_batch) - batch} background record(s)"
        )
        return f'<div class="activeclean-diagnosis">{picture}{html_table(self.table(), caption=caption)}</div>'


# ---------------------------------------------------------------------------
# Building a diagnosis
# ---------------------------------------------------------------------------


def _check_part(X, labels, suspect, details, part: str):
    """Check one part (background or batch) and return it as ``(X, labels, suspect, details)``."""
    X = _as_matrix(X, f"X_{part}")
    n = X.shape[0]
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != n:
        raise ValueError(
            f"labels_{part} must have one label per row of X_{part} ({n}), got shape {labels.shape}"
        )
    suspect = _as_flags(suspect, n, f"suspect_{part}")
    if details is None:
        details = pd.DataFrame(index=range(n))
    elif not isinstance(details, pd.DataFrame):
        raise TypeError(f"details_{part} must be a pandas DataFrame or None, got {type(details).__name__}")
    elif len(details) != n:
        raise ValueError(f"details_{part} must have one row per row of X_{part} ({n}), got {len(details)}")
    return X, labels, suspect, details.reset_index(drop=True)


def _stack_labels(background: np.ndarray, batch: np.ndarray) -> np.ndarray:
    # np.concatenate would turn numbers into text when one part is text.
    if len(background) == 0:
        return batch
    if len(batch) == 0:
        return background
    if background.dtype.kind in "biuf" and batch.dtype.kind in "biuf":
        return np.concatenate([background, batch])
    return np.concatenate([background.astype(object), batch.astype(object)])


def _stack_details(background: pd.DataFrame, batch: pd.DataFrame) -> pd.DataFrame:
    if list(background.columns) == list(batch.columns):
        return pd.concat([background, batch], ignore_index=True)
    # A column that only one part has is missing in the other, and pandas
    # would store integer keys as floats next to NaN.  Object columns keep them.
    return pd.concat([background.astype(object), batch.astype(object)], ignore_index=True)


def diagnose(
    X_background,
    labels_background,
    X_batch,
    labels_batch,
    *,
    suspect_background=None,
    suspect_batch=None,
    details_background: pd.DataFrame | None = None,
    details_batch: pd.DataFrame | None = None,
    method: str = "auto",
    seed: int = 0,
    title: str = "",
) -> Diagnosis:
    """Embed the suggested batch together with a background sample and return the view.

    Both parts are stacked (background first) and embedded once with
    :func:`embed`, so their coordinates are comparable.

    Parameters
    ----------
    X_background, X_batch : numpy.ndarray or scipy.sparse matrix
        Features of the background sample and of the batch, with the same
        number of columns.  Either part may have no row, but together they
        need at least 3.
    labels_background, labels_batch : array-like
        One label per row, numbers or text.  Missing labels are drawn grey.
    suspect_background, suspect_batch : array-like of bool, optional
        True where the detector marks the record as likely dirty.  Default:
        no record is suspected.
    details_background, details_batch : pandas.DataFrame, optional
        One row per record with the key and a few columns to show in the
        table.  Their index is ignored.
    method : {"auto", "tsne", "pca"}, default="auto"
        Embedding method of :func:`embed`.
    seed : int, default=0
        Random state of the embedding.
    title : str, default=""
        Figure title.

    Returns
    -------
    Diagnosis

    Raises
    ------
    ValueError
        If a part's labels, suspect flags or details do not have one entry per
        row of its X, the two X have different numbers of columns, or fewer
        than 3 records are given in all.
    TypeError
        If an X is not numeric, details are not a DataFrame or suspect flags
        are not booleans.
    """
    X_back, labels_back, suspect_back, details_back = _check_part(
        X_background, labels_background, suspect_background, details_background, "background"
    )
    X_new, labels_new, suspect_new, details_new = _check_part(
        X_batch, labels_batch, suspect_batch, details_batch, "batch"
    )
    if X_back.shape[1] != X_new.shape[1]:
        raise ValueError(
            f"X_background has {X_back.shape[1]} columns but X_batch has {X_new.shape[1]}; "
            "featurize both with the same featurizer"
        )
    n_back, n_new = X_back.shape[0], X_new.shape[0]
    if n_back + n_new < 3:
        raise ValueError(
            f"the view needs at least 3 records, got {n_back} background and {n_new} batch record(s); "
            "add background records"
        )

    if scipy.sparse.issparse(X_back) or scipy.sparse.issparse(X_new):
        X = scipy.sparse.vstack([scipy.sparse.csr_matrix(X_back), scipy.sparse.csr_matrix(X_new)], format="csr")
    else:
        X = np.vstack([X_back, X_new])
    coordinates, used = embed(X, method=method, seed=seed)

    return Diagnosis(
        coordinates=coordinates,
        method=used,
        labels=_stack_labels(labels_back, labels_new),
        in_batch=np.concatenate([np.zeros(n_back, dtype=bool), np.ones(n_new, dtype=bool)]),
        suspect=np.concatenate([suspect_back, suspect_new]),
        details=_stack_details(details_back, details_new),
        title=title,
    )
