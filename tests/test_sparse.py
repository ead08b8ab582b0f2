"""Sparse features: hashed text in CSR blocks gives the results of the same features held dense."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pytest
from scipy import sparse

from activeclean_spark import ActiveClean, ActiveCleanModel, FeatureSpec, LearnedDetector, LogisticLoss
from activeclean_spark import blocks as blocks_module
from activeclean_spark.synthetic import SyntheticTable

TABLE = SyntheticTable(800, 3, rate=0.2, corrupted=2, seed=4, words=6, vocabulary=300)


def _engine(sparse_features: bool, **options):
    spec = TABLE.feature_spec()
    spec.text_buckets, spec.sparse = 64, sparse_features
    params = dict(key=TABLE.key, features=spec, loss=LogisticLoss(reg=0.01), cleaner=TABLE.cleaner(), budget=120,
                  batch_size=30, num_partitions=2, seed=3)
    params.update(options)
    return ActiveClean(**params)


@pytest.fixture(scope="module")
def frames(spark):
    return TABLE.dataframe(spark, partitions=2), TABLE.dataframe(spark, clean=True, partitions=2)


# Sparse products sum in another order, so the runs agree up to rounding.
# The detector's L-BFGS stops at a gradient of 1e-6, so with it the weights
# agree to about that.  A start, certification or draw flipped by rounding
# would show as a difference far above either bound.
@pytest.mark.parametrize("options, atol", [({}, 1e-9), ({"detector": LearnedDetector(min_records=20)}, 1e-5)],
                         ids=["default", "detector"])
def test_sparse_run_equals_dense_run(frames, options, atol):
    dirty, clean = frames
    dense, sparse_run = (_engine(kind, **options).fit(dirty, reference=clean) for kind in (False, True))
    np.testing.assert_allclose(sparse_run.dirty_model.theta, dense.dirty_model.theta, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(sparse_run.model.theta, dense.model.theta, rtol=1e-6, atol=atol)
    assert sorted(sparse_run.cleaned.column("id").to_pylist()) == sorted(dense.cleaned.column("id").to_pylist())
    assert sparse_run.model.metrics["model_error"] < sparse_run.model.metrics["dirty_model_error"]


def test_text_with_2_18_buckets_runs_sparse(frames, tmp_path):
    dirty, clean = frames
    engine = _engine(True, budget=60)
    engine.features.text_buckets = 1 << 18
    data = engine.prepare(dirty, reference=clean)
    try:
        p = data.featurizer.n_features + 1
        assert data.featurizer.sparse and p > 1 << 18
        # A (p, p) curvature would take 550 GB; only its diagonal is kept.
        assert data.curvature.shape == (p,)

        def layout(block):
            return type(block.X).__name__, block.X.nnz, block.size

        kinds = data.blocks.map_collect(layout)
        assert all(kind == "csr_array" for kind, _, _ in kinds)
        # Three numeric values and at most six distinct words per record.
        assert all(nnz <= 9 * size for _, nnz, size in kinds)
        result = engine.run(data, output_dir=str(tmp_path / "out"))
    finally:
        data.release()
    assert result.n_cleaned == 60
    assert result.model.metrics["model_error"] < result.model.metrics["dirty_model_error"]
    loaded = ActiveCleanModel.load(str(tmp_path / "out"))
    rows = TABLE.arrow(np.arange(50))
    np.testing.assert_array_equal(loaded.predict_table(rows), result.model.predict_table(rows))


def test_block_files_hold_only_non_zeros(spark):
    X = sparse.random_array((500, 1 << 18), density=4 / (1 << 18), format="csr", random_state=0)
    y = np.zeros(500)
    block = blocks_module.Block(0, np.arange(500), X, y, pa.table({"id": np.arange(500)}))
    blocks = blocks_module.BlockSet(spark.sparkContext.parallelize([0], 1).map(lambda _: block))
    token = blocks.token

    def mapped(shared):
        path = blocks_module._block_path(token, shared.partition)
        sizes = sum(os.path.getsize(os.path.join(path, name)) for name in os.listdir(path) if name.startswith("X."))
        return shared.X.sum(axis=0), shared.X.nnz, sizes

    try:
        sums, nnz, size = blocks.map_collect(mapped)[0]
    finally:
        blocks.unpersist()
    np.testing.assert_allclose(sums, X.sum(axis=0))
    assert nnz == X.nnz
    # data (8 bytes) and column index (4 bytes) per entry, one offset (4 bytes) per row, and the npy headers.
    assert size < 12 * X.nnz + 4 * 501 + 4 * 1024
