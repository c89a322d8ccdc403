"""The hierarchical random-effects model behind calibration, on synthetic residuals (no predictor needed)."""

import math

import numpy as np
import pytest

from estimator.learn.calibration_model import Components, RowKeys, fit_posterior

COMPONENTS = Components(model=0.15, deployment=0.10, gpu=0.10, engine=0.05, curve=0.10, length=1.5, noise=0.04)


def keys(model="m1", gpu="H100", task="chat", count=1, engine="vllm", batch=64):
    return RowKeys(model, f"{model}|{task}|{gpu}|{count}|bfloat16", gpu, engine, math.log(batch))


def test_no_runs_for_a_configuration_leaves_the_predictor_as_is():
    """Zero evidence is the identity: a configuration sharing no level with the runs gets no shift and exactly the
    prior predictive variance (so the card's interval is kept)."""
    posterior = fit_posterior(np.array([0.3]), [keys()], COMPONENTS)
    stranger = keys(model="m2", gpu="B200", engine="sglang")
    mean, variance = posterior.shift([stranger])
    assert mean[0] == 0.0
    assert variance[0] == pytest.approx(COMPONENTS.prior_variance())


def test_one_run_moves_its_levels_part_way_and_more_runs_move_them_further():
    """Shrinkage: one run with a +0.3 log residual moves its own configuration by less than 0.3; three
    repeated runs move it further, and the posterior variance drops with the evidence."""
    target = [keys(batch=64)]
    one = fit_posterior(np.array([0.3]), [keys()], COMPONENTS)
    three = fit_posterior(np.array([0.3, 0.3, 0.3]), [keys()] * 3, COMPONENTS)
    shift_one, var_one = one.shift(target)
    shift_three, var_three = three.shift(target)
    assert 0.0 < shift_one[0] < 0.3
    assert shift_one[0] < shift_three[0] < 0.3
    assert var_three[0] < var_one[0] < COMPONENTS.prior_variance()


def test_two_batch_sizes_correct_the_batch_slope():
    """With runs at two batch sizes whose residuals rise with batch, the prediction at a larger batch moves more
    than at the smaller and the reported slope is positive; one batch size alone gives no slope (the same shift at
    batch sizes equally far on either side, and no slope reported)."""
    rows = [keys(batch=16), keys(batch=256)]
    two = fit_posterior(np.array([-0.1, 0.3]), rows, COMPONENTS)
    low, high = two.shift([keys(batch=16), keys(batch=512)])[0]
    assert high > low + 0.1
    slope, slope_sd, runs = two.curve_slope(rows[0].deployment)
    assert slope > 0 and runs == 2 and slope_sd > 0
    single = fit_posterior(np.array([0.2]), [keys(batch=64)], COMPONENTS)
    a, b = single.shift([keys(batch=8), keys(batch=512)])[0]
    assert a == pytest.approx(b)
    assert single.curve_slope(keys().deployment) is None


def test_a_gpu_effect_learnt_on_one_model_carries_to_another_model_on_that_gpu():
    """A new-GPU user measures one model: another model on the same GPU shifts in the same direction, and more
    than that model on a different GPU (which gets only the shared engine's share)."""
    runs = [keys(model="m1", gpu="NEW", batch=b) for b in (16, 64, 256)]
    posterior = fit_posterior(np.array([0.4, 0.4, 0.4]), runs, COMPONENTS)
    same_gpu, other_gpu = posterior.shift([keys(model="m2", gpu="NEW"), keys(model="m2", gpu="H100")])[0]
    assert same_gpu > other_gpu > 0
    assert same_gpu > 0.05  # a sizeable share of the 0.4 residual (GPU prior variance / total)


def _simulate(rng, n_deployments, k_revealed, batches):
    """Draw residuals from the model itself; return (revealed rows, their residuals, target rows, targets)."""
    revealed, revealed_r, targets, target_r = [], [], [], []
    for d in range(n_deployments):
        gpu = f"g{d % 3}"
        effect = rng.normal(0, COMPONENTS.model) + rng.normal(0, COMPONENTS.deployment)
        effect += rng.normal(0, COMPONENTS.gpu) + rng.normal(0, COMPONENTS.engine)
        rows = [keys(model=f"m{d}", gpu=gpu, batch=b) for b in batches]
        x = np.array([r.log_batch for r in rows])
        kernel = COMPONENTS.curve ** 2 * np.exp(-((x[:, None] - x[None, :]) ** 2) / (2 * COMPONENTS.length ** 2))
        curve = rng.multivariate_normal(np.zeros(len(x)), kernel)
        values = effect + curve + rng.normal(0, COMPONENTS.noise, len(x))
        for i, (row, value) in enumerate(zip(rows, values, strict=True)):
            (revealed if i < k_revealed else targets).append(row)
            (revealed_r if i < k_revealed else target_r).append(value)
    return revealed, np.array(revealed_r), targets, np.array(target_r)


def test_intervals_narrow_with_evidence_and_keep_their_coverage():
    """On residuals drawn from the model, Gaussian 80% intervals built the way calibration builds them (prior
    interval scaled by sqrt(v / v0)) cover about 80% of held-back rows with 1 and with 3 revealed runs per
    deployment, and are narrower with 3 than with 1 (and than without calibration)."""
    rng = np.random.default_rng(3)
    z = 1.2816  # standard normal 90th percentile
    widths, coverages = [], []
    for k in (1, 3):
        revealed, revealed_r, targets, target_r = _simulate(rng, 160, k, (8, 16, 32, 64, 128, 256))
        posterior = fit_posterior(revealed_r, revealed, COMPONENTS)
        mean, variance = posterior.shift(targets)
        sd = np.sqrt(variance)
        inside = np.abs(target_r - mean) <= z * sd
        width = float(np.mean(sd))
        coverages.append(float(np.mean(inside)))
        widths.append(width)
    assert all(0.75 <= c <= 0.85 for c in coverages), coverages
    assert widths[1] < widths[0] < math.sqrt(COMPONENTS.prior_variance())
