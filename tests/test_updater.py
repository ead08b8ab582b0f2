import numpy as np
import pyarrow as pa
import pytest

from activeclean_spark.blocks import Block
from activeclean_spark.losses import HingeLoss, LeastSquaresLoss, LogisticLoss
from activeclean_spark.sampler import DRIVER_STREAM, allocate_draws, random_generator, score_and_draw
from activeclean_spark.updater import (
    Preconditioner,
    StepSchedule,
    batch_gradient,
    clean_gradient,
    combined_gradient,
    controlled_batch_gradient,
    draw_losses,
)


def _relation(loss, n=(40, 60), d=3, seed=0):
    """Dirty blocks, clean values for every record, and a removed-record mask."""
    rng = np.random.default_rng(seed)
    total = sum(n)
    X_clean = rng.normal(size=(total, d))
    if loss.task == "classification":
        y_clean = (rng.random(total) < 0.5).astype(float)
    else:
        y_clean = X_clean @ np.arange(1, d + 1) + rng.normal(size=total)
    X_dirty = X_clean.copy()
    corrupted = rng.random(total) < 0.3
    X_dirty[corrupted] *= rng.uniform(-4, 4, size=(corrupted.sum(), 1))
    removed = rng.random(total) < 0.05
    blocks, start = [], 0
    for index, size in enumerate(n):
        keys = np.arange(start, start + size)
        blocks.append(Block(index, keys, X_dirty[keys], y_clean[keys].copy(), pa.table({"id": keys})))
        start += size
    return blocks, X_clean, y_clean, removed


@pytest.mark.parametrize("control_variate", [False, True], ids=["plain", "control_variate"])
@pytest.mark.parametrize("loss", [LogisticLoss(reg=0.05), LeastSquaresLoss(reg=0.05), HingeLoss(reg=0.05)],
                         ids=lambda loss: loss.name)
def test_combined_loss_and_gradient_are_unbiased(loss, control_variate):
    blocks, X_clean, y_clean, removed = _relation(loss)
    X_dirty = np.vstack([b.X for b in blocks])
    y_dirty = np.concatenate([b.y for b in blocks])
    total = X_clean.shape[0]
    theta = np.array([0.8, -0.5, 0.3, 0.1])

    # R_clean: the first 15 records of each block, cleaned already.
    cleaned = np.concatenate([b.keys[:15] for b in blocks])
    excluded = {b.partition: np.arange(15) for b in blocks}
    y_store = np.where(removed[cleaned], np.nan, y_clean[cleaned])
    g_clean = clean_gradient(loss, X_clean[cleaned], y_store, theta, cleaned.size, value=True)
    np.testing.assert_allclose(g_clean[1:], clean_gradient(loss, X_clean[cleaned], y_store, theta, cleaned.size))

    # The estimates carry the mean clean loss in front of the mean clean gradient.
    keep = ~removed
    truth = np.concatenate([[loss.losses(X_clean[keep], y_clean[keep], theta).sum()],
                            loss.gradients(X_clean[keep], y_clean[keep], theta).sum(axis=0)]) / total

    batch, rounds = 10, 4000
    estimates = np.empty((rounds, truth.size))
    for iteration in range(1, rounds + 1):
        parts = [score_and_draw(b, loss, theta, excluded[b.partition], batch, 11, iteration,
                                gradient_sum=control_variate) for b in blocks]
        draws, n_dirty, score_total = allocate_draws(parts, batch, 0.1, random_generator(11, iteration, DRIVER_STREAM))
        assert score_total > 0
        keys = np.array([d.key for d in draws])
        distinct, first, counts = np.unique(keys, return_index=True, return_counts=True)
        probabilities = np.array([draws[i].probability for i in first])
        y_batch = np.where(removed[distinct], np.nan, y_clean[distinct])
        args = (theta, counts.astype(float), probabilities, n_dirty, len(draws))
        if control_variate:
            dirty_sums = np.sum([p.dirty_sums[0] for p in parts], axis=0)
            g_batch = controlled_batch_gradient(loss, X_clean[distinct], y_batch, X_dirty[distinct], y_dirty[distinct],
                                                *args, dirty_sums, value=True)
            plain = controlled_batch_gradient(loss, X_clean[distinct], y_batch, X_dirty[distinct], y_dirty[distinct],
                                              *args, dirty_sums[1:])
        else:
            g_batch = batch_gradient(loss, X_clean[distinct], y_batch, *args, value=True)
            plain = batch_gradient(loss, X_clean[distinct], y_batch, *args)
        np.testing.assert_allclose(g_batch[1:], plain)
        estimates[iteration - 1] = combined_gradient(g_batch, g_clean, n_dirty, cleaned.size)

    # The estimate's mean over 4000 independent rounds has standard error
    # sd / sqrt(4000); 5 standard errors per coordinate keeps the false alarm
    # rate below 1e-5 while a bias of a few percent of the gradient fails.
    standard_error = estimates.std(axis=0) / np.sqrt(rounds)
    assert np.all(np.abs(estimates.mean(axis=0) - truth) <= 5 * standard_error)
    assert np.linalg.norm(estimates.mean(axis=0) - truth) < 0.05 * np.linalg.norm(truth) + 5 * standard_error.max()


def test_batch_gradient_with_uniform_probabilities_is_plain_mean():
    loss = LeastSquaresLoss(reg=0.0)
    rng = np.random.default_rng(0)
    X, y, theta = rng.normal(size=(4, 2)), rng.normal(size=4), rng.normal(size=3)
    n_dirty = 10
    g = batch_gradient(loss, X, y, theta, np.ones(4), np.full(4, 1 / n_dirty), n_dirty, 4)
    np.testing.assert_allclose(g, loss.gradients(X, y, theta).mean(axis=0))


def test_draw_losses_average_to_the_batch_loss():
    loss = LogisticLoss(reg=0.1)
    rng = np.random.default_rng(4)
    X, theta = rng.normal(size=(5, 2)), rng.normal(size=3)
    y = np.array([0.0, 1.0, np.nan, 1.0, 0.0])
    counts, probabilities = np.array([1.0, 3.0, 1.0, 2.0, 1.0]), rng.uniform(0.01, 0.1, size=5)
    terms = draw_losses(loss, X, y, theta, probabilities, 40)
    assert terms[2] == 0.0  # a removed record has no loss
    expected = batch_gradient(loss, X, y, theta, counts, probabilities, 40, 8, value=True)[0]
    assert np.isclose(counts @ terms / 8, expected)


def test_removed_records_contribute_zero():
    loss = LeastSquaresLoss(reg=0.0)
    X = np.ones((2, 1))
    y = np.array([np.nan, np.nan])
    assert np.all(batch_gradient(loss, X, y, np.ones(2), np.ones(2), np.full(2, 0.5), 2, 2) == 0)
    assert np.all(clean_gradient(loss, X, y, np.ones(2), 2) == 0)


def test_combined_gradient_weights_by_sizes():
    np.testing.assert_allclose(combined_gradient(np.array([1.0]), np.array([3.0]), 3, 1), [1.5])


@pytest.mark.parametrize("kind, expected", [("constant", [2.0, 2.0, 2.0]), ("inverse", [2.0, 1.0, 0.5]),
                                            ("inverse_sqrt", [2.0, 2 / np.sqrt(2), 1.0])])
def test_step_schedules(kind, expected):
    schedule = StepSchedule(kind, 2.0)
    np.testing.assert_allclose([schedule(1), schedule(2), schedule(4)], expected)


def test_step_schedule_rejects_invalid_values():
    with pytest.raises(ValueError, match="step schedule must be one of constant, inverse, inverse_sqrt, adagrad, got 'adam'"):
        StepSchedule("adam")
    with pytest.raises(ValueError, match="step size must be a finite number > 0, got 0"):
        StepSchedule("constant", 0)


def test_preconditioner_solves_linear_system():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(5, 5))
    matrix = A @ A.T + np.eye(5)
    g = rng.normal(size=5)
    np.testing.assert_allclose(matrix @ Preconditioner(matrix, damping=0).solve(g), g, rtol=1e-4)
    np.testing.assert_allclose(Preconditioner(matrix, "diagonal", damping=0).solve(g), g / np.diag(matrix), rtol=1e-4)


def test_preconditioner_rejects_unknown_kind():
    with pytest.raises(ValueError, match="preconditioner must be one of hessian, diagonal, none, got 'lbfgs'"):
        Preconditioner(np.eye(2), "lbfgs")


def test_preconditioner_damping_bounds_flat_directions():
    matrix = np.diag([10.0, 1e-9])
    step = Preconditioner(matrix, damping=1.0).solve(np.array([1.0, 1.0]))
    # The ridge is the mean eigenvalue (about 5), so the flat direction's
    # step is about 1 / 5 instead of 1e9.
    assert step[1] == pytest.approx(1 / 5.0, rel=1e-6)


def test_adagrad_scales_each_coordinate():
    schedule = StepSchedule("adagrad", 0.5)
    first = schedule.step(1, np.array([4.0, -0.01]))
    np.testing.assert_allclose(first, [0.5, -0.5])
    second = schedule.step(2, np.array([3.0, 0.0]))
    np.testing.assert_allclose(second, [0.5 * 3 / 5, 0.0])
    np.testing.assert_allclose(schedule.fresh().step(1, np.array([2.0, 2.0])), [0.5, 0.5])


def test_dirty_gradient_sum_covers_only_dirty_records():
    loss = LogisticLoss(reg=0.1)
    blocks, _, _, _ = _relation(loss, n=(30,))
    block = blocks[0]
    block.y[3] = np.nan
    theta = np.array([0.3, -0.2, 0.1, 0.0])
    excluded = np.array([0, 3, 7])
    part = score_and_draw(block, loss, theta, excluded, 5, 0, 1, gradient_sum=True)
    keep = np.ones(30, dtype=bool)
    keep[[0, 3, 7]] = False
    expected = loss.gradients(block.X[keep], block.y[keep], theta).sum(axis=0)
    np.testing.assert_allclose(part.dirty_gradient_sum, expected)


@pytest.mark.parametrize("loss", [LogisticLoss(reg=0.05), LeastSquaresLoss(reg=0.05)], ids=lambda loss: loss.name)
def test_combined_gradient_with_trusted_records_is_unbiased(loss):
    """Rule-trusted and detector-certified records join R_clean; the estimate must stay unbiased.

    Trusted records are truly clean here, so their dirty gradient is their
    clean gradient.  Scores come from the estimator's expected change, which
    changes the probabilities but never the expectation.
    """
    from activeclean_spark.detector import DetectorModel
    from activeclean_spark.sampler import ScoringPlan, allocate_audit

    blocks, X_clean, y_clean, removed = _relation(loss, d=3, seed=4)
    corrupted = np.any(np.vstack([b.X for b in blocks]) != X_clean, axis=1)
    total = X_clean.shape[0]
    rng = np.random.default_rng(9)
    # The rule leaves a third of the clean records unflagged; a planted
    # feature lets the detector certify another third of them.
    unflagged = ~corrupted & (rng.random(total) < 0.33)
    certifiable = ~corrupted & ~unflagged & (rng.random(total) < 0.5)
    removed &= corrupted
    for block in blocks:
        block.flagged = ~unflagged[block.keys]
        block.X = np.column_stack([block.X, certifiable[block.keys].astype(float)])
    X_clean = np.column_stack([X_clean, certifiable.astype(float)])
    X_dirty = np.vstack([b.X for b in blocks])
    y_dirty = np.concatenate([b.y for b in blocks])
    detector = DetectorModel(["clean", "x0"], np.array([[0, 0, 0, 20.0, -10.0], [0, 0, 0, -20.0, 10.0]]), 0.9, True)
    changes = (np.array([[0.0, 0, 0, 0], [0.5, -0.2, 0.1, 0]]), np.array([0.0, 0.3]))
    plan = ScoringPlan("importance", detector, changes, n_audit=1)
    theta = np.array([0.8, -0.5, 0.3, 0.2, 0.1])

    cleaned = np.concatenate([b.keys[:10] for b in blocks])
    excluded = {b.partition: np.arange(10) for b in blocks}
    y_store = np.where(removed[cleaned], np.nan, y_clean[cleaned])
    keep = ~removed
    truth = loss.gradients(X_clean[keep], np.where(removed, np.nan, y_clean)[keep], theta).sum(axis=0) / total

    batch, rounds = 10, 3000
    estimates = np.empty((rounds, theta.size))
    for iteration in range(1, rounds + 1):
        parts = [score_and_draw(b, loss, theta, excluded[b.partition], batch, 5, iteration, gradient_sum=True,
                                plan=plan) for b in blocks]
        rng_driver = random_generator(5, iteration, DRIVER_STREAM)
        draws, n_dirty, _ = allocate_draws(parts, batch, 0.1, rng_driver)
        assert all(not certifiable[d.key] and not unflagged[d.key] for d in draws)
        assert allocate_audit(parts, 1, rng_driver)
        keys = np.array([d.key for d in draws])
        distinct, first, counts = np.unique(keys, return_index=True, return_counts=True)
        probabilities = np.array([draws[i].probability for i in first])
        y_batch = np.where(removed[distinct], np.nan, y_clean[distinct])
        dirty_sum = np.sum([p.dirty_gradient_sum for p in parts], axis=0)
        g_batch = controlled_batch_gradient(loss, X_clean[distinct], y_batch, X_dirty[distinct], y_dirty[distinct],
                                            theta, counts.astype(float), probabilities, n_dirty, len(draws), dirty_sum)
        n_trusted = sum(p.n_trusted for p in parts)
        trusted_sum = np.sum([p.trusted_gradient_sum for p in parts if p.trusted_gradient_sum is not None], axis=0)
        n_clean = cleaned.size + n_trusted
        g_clean = clean_gradient(loss, X_clean[cleaned], y_store, theta, n_clean, trusted_sum)
        estimates[iteration - 1] = combined_gradient(g_batch, g_clean, n_dirty, n_clean)

    # Same tolerance argument as the test above: 5 standard errors per coordinate.
    standard_error = estimates.std(axis=0) / np.sqrt(rounds)
    assert np.all(np.abs(estimates.mean(axis=0) - truth) <= 5 * standard_error + 1e-12)
