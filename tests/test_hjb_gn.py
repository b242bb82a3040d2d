"""ZO Gauss-Newton fine-tuning of the HJB output layer (golden/hjb_gn.py, `--fine gn` of golden/hjb_train.py)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ttzo.golden import hjb, hjb_gn
from ttzo.golden.hjb_train import HJBTrainConfig, _one_step, train_hjb

TINY = dict(net="fc2-16", estimator="fd", val_points=300, dtype="delta32", log_every=1)


def _tiny(seed: int = 0, points: int = 30, estimator: str = "fd"):
    net = hjb.make_net("fc2-16")
    theta = net.flatten(hjb.init_params(net, np.random.default_rng(seed)))
    rng = np.random.default_rng(seed + 1)
    xt = hjb.sample_points(rng, points)
    fac = hjb.estimator_factors(estimator, rng)
    return net, theta, xt, fac


# ------------------------------------------------------------------------------------------------
# Finite-difference Jacobian and LM
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("central", [False, True])
def test_fd_jacobian_of_a_linear_residual_is_its_matrix(central: bool) -> None:
    rng = np.random.default_rng(3)
    M, c = rng.normal(size=(9, 6)), rng.normal(size=9)
    theta = rng.normal(size=6)
    coords = np.array([5, 0, 3])
    jac = hjb_gn.fd_jacobian(lambda th: th @ M.T + c, theta, coords, mu=0.37, central=central)
    np.testing.assert_allclose(jac.jac, M[:, coords], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(jac.r0, M @ theta + c, rtol=1e-13)
    assert jac.queries == 1 + (2 if central else 1) * coords.size


def test_fd_jacobian_rejects_a_bad_step() -> None:
    with pytest.raises(ValueError, match="mu"):
        hjb_gn.fd_jacobian(lambda th: th, np.zeros(2), np.array([0]), mu=0.0)


def test_lm_solve_is_least_squares_and_ridge() -> None:
    rng = np.random.default_rng(4)
    J, r = rng.normal(size=(20, 7)), rng.normal(size=20)
    np.testing.assert_allclose(hjb_gn.lm_solve(J, r, 0.0), -np.linalg.lstsq(J, r, rcond=None)[0], rtol=1e-10)
    lam = 0.7
    np.testing.assert_allclose(hjb_gn.lm_solve(J, r, lam), -np.linalg.solve(J.T @ J + lam * np.eye(7), J.T @ r),
                               rtol=1e-10)


def test_lm_fit_solves_rosenbrock() -> None:
    """r(x, y) = (10 (y - x^2), 1 - x): the minimum is (1, 1) with zero residual."""
    res = lambda w: np.array([10 * (w[1] - w[0] ** 2), 1 - w[0]])
    jac = lambda w: np.array([[-20 * w[0], 10.0], [-1.0, 0.0]])
    w, lam, hist = hjb_gn.lm_fit(res, jac, np.array([-1.2, 1.0]), lam=1e-3, iters=60)
    np.testing.assert_allclose(w, [1.0, 1.0], atol=1e-8)
    losses = [h["trial_loss"] for h in hist if h["accepted"]]
    assert all(b < a for a, b in zip(losses, losses[1:]))


# ------------------------------------------------------------------------------------------------
# The output layer's queries
# ------------------------------------------------------------------------------------------------

def test_output_layer_queries_match_full_network_finite_differences() -> None:
    """The fast path's residual Jacobian equals fd_jacobian over full network evaluations (float64 model).

    The residual is quadratic in the output layer, so central differences are exact up to rounding and
    forward differences differ by mu/2 times the second derivative."""
    net, theta, xt, fac = _tiny()
    model = hjb.DeltaHJB(net, np.float64)
    full = lambda ths: np.array([model.residual(net.unflatten(th), xt, fac) for th in ths])
    q = hjb_gn.OutputLayerQueries(model, xt, fac, chunk=7)
    want = hjb_gn.fd_jacobian(full, theta, q.coords, mu=1e-2, central=True)
    got, aff = q.jacobian(theta, mu=1e-2, central=True)
    assert got.queries == want.queries == 1 + 2 * 17
    np.testing.assert_allclose(got.r0, want.r0, rtol=1e-9, atol=1e-9)
    scale = np.abs(want.jac).max()
    np.testing.assert_allclose(got.jac, want.jac, atol=1e-7 * scale)
    # the affine Stein map reproduces the full network's residual and the analytic Jacobian at another w
    w1 = aff.w0 + np.random.default_rng(5).normal(scale=0.3, size=aff.w0.size)
    th1 = theta.copy()
    th1[q.front:] = w1
    np.testing.assert_allclose(aff.residual(w1), full(th1[None])[0], rtol=1e-8, atol=1e-8)
    fd1 = hjb_gn.fd_jacobian(full, th1, q.coords, mu=1e-2, central=True)
    np.testing.assert_allclose(aff.jacobian(w1), fd1.jac, atol=1e-7 * np.abs(fd1.jac).max())
    fwd, _ = q.jacobian(theta, mu=1e-6)
    assert fwd.queries == 1 + 17
    np.testing.assert_allclose(fwd.jac, want.jac, atol=1e-4 * scale)


def test_output_layer_queries_need_a_dense_scalar_output() -> None:
    from ttzo.golden.network import LayerSpec, TTNet
    from ttzo.golden.tt import TTShape
    two = TTNet((LayerSpec(TTShape((hjb.D,), (8,), (1, 1)), "sine"), LayerSpec(TTShape((8,), (2,), (1, 1)), "identity")))
    with pytest.raises(ValueError, match="one output"):
        hjb_gn.OutputLayerQueries(hjb.DeltaHJB(two), np.zeros((1, hjb.D)), hjb.estimator_factors("fd"))
    net = hjb.make_net("tt")
    assert hjb_gn.output_layer(net, np.arange(net.n_params)).size == 769


def test_gn_step_solves_the_zero_residual_problem() -> None:
    """NN = 0 (zero output layer) is the exact solution, so the output layer's least-squares problem has a
    zero-residual minimum: from the random init one GN step (enough points) removes nearly all the loss."""
    net, theta, xt, fac = _tiny(points=40)
    model = hjb.DeltaHJB(net, np.float32)
    st = hjb_gn.gn_step(model, theta, xt, fac, lam=1e-8, inner=3)
    assert st.queries == 18
    # calibrated: 1.8 -> 5.6e-12 here (3 LM iterations); the margin asserted is 1e-6
    assert st.loss1 < 1e-6 * st.loss0
    assert np.array_equal(st.theta[:-17], theta[:-17])  # only the output layer moves


# ------------------------------------------------------------------------------------------------
# The training loop
# ------------------------------------------------------------------------------------------------

def _cfg(**kw) -> HJBTrainConfig:
    base = dict(optimizer="hybrid", switch=2, fine="gn", steps=4, points=3, gn_points=40, lr=1e-3, lr_final=1e-3,
                **TINY)
    base.update(kw)
    return HJBTrainConfig(**base)


def test_gn_fine_tune_lowers_the_loss_and_the_validation_error(tmp_path) -> None:
    cfg = _cfg()
    final = train_hjb(cfg, tmp_path / "gn", progress=False)
    rows = json.loads((tmp_path / "gn" / "metrics.json").read_text())["log"]
    sign = [r for r in rows if r["step"] <= 2]
    gn = [r for r in rows if r["step"] > 2]
    assert all("gn_loss_after" in r for r in gn) and not any("gn_loss_after" in r for r in sign)
    # calibrated on this tiny problem: the GN steps' losses fall 2.2 -> 1.2e-11 and 1.7e-11 -> 5e-21, the
    # validation MSE 0.26 -> 1.5e-21 (NN -> 0, the exact solution); asserted with wide margins
    assert all(r["gn_loss_after"] < 1e-5 * r["loss"] for r in gn)
    assert final["val_mse"] < 1e-4 * sign[-1]["val_mse"]
    # 18 queries (1 + 17 output-layer coordinates) on 40 points per GN step
    assert gn[-1]["evals"] - gn[0]["evals"] == 18 * 40


def test_gn_fine_tune_resumes_like_one_run(tmp_path) -> None:
    straight = train_hjb(_cfg(), tmp_path / "a", progress=False)
    train_hjb(_cfg(steps=3), tmp_path / "b", progress=False)
    z = np.load(tmp_path / "b" / "checkpoint.npz")
    assert "gn_lam" in z.files
    resumed = train_hjb(_cfg(), tmp_path / "b", resume=True, progress=False)
    np.testing.assert_array_equal(np.load(tmp_path / "a" / "checkpoint.npz")["theta"],
                                  np.load(tmp_path / "b" / "checkpoint.npz")["theta"])
    assert resumed["val_mse"] == straight["val_mse"]


def test_gn_needs_delta32(tmp_path) -> None:
    with pytest.raises(ValueError, match="delta32"):
        train_hjb(_cfg(dtype="float64"), tmp_path, progress=False)
    with pytest.raises(ValueError, match="gn_points"):
        _cfg(gn_points=-1).validate()


def test_one_step_default_gn_state() -> None:
    """_one_step works without a state dict (the damping then starts from gn_lambda)."""
    cfg = _cfg()
    net, theta, _, _ = _tiny()
    model = hjb.DeltaHJB(net, np.float32)
    th, _, loss0, n = _one_step(cfg, 3, theta, np.zeros_like(theta), model, None, 2, 1e-3)
    assert n == 18 * 40 and np.isfinite(loss0) and not np.array_equal(th, theta)


def test_cli_fine_gn_options(tmp_path, capsys) -> None:
    """`ttzo train hjb --fine gn --gn-...` maps every option into the run's config and runs GN steps."""
    from ttzo.host.cli import main
    rc = main(["train", "hjb", "--optimizer", "hybrid", "--switch", "1", "--fine", "gn", "--gn-points", "25",
               "--gn-lambda", "1e-5", "--gn-inner", "2", "--gn-mu", "1e-4", "--gn-central", "--net", "fc2-16",
               "--estimator", "fd", "--dtype", "delta32", "--steps", "2", "--points", "1", "--val-points", "50",
               "--log-every", "1", "--out", str(tmp_path), "--json"])
    assert rc == 0
    out = capsys.readouterr().out
    assert json.loads(out[out.index("{"):])["steps"] == 2
    doc = json.loads((tmp_path / "metrics.json").read_text())
    cfg = doc["config"]
    assert (cfg["fine"], cfg["gn_points"], cfg["gn_lambda"], cfg["gn_inner"], cfg["gn_mu"], cfg["gn_central"]) == \
        ("gn", 25, 1e-5, 2, 1e-4, True)
    # step 1 is GN: 1 + 2 * 17 central queries on 25 points
    assert doc["log"][1]["evals"] - doc["log"][0]["evals"] == 35 * 25
