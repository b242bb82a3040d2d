"""ZO estimators: expectations against analytic gradients; the integer step against its definition."""
from __future__ import annotations

import numpy as np
import pytest

from ttzo.golden import prng, zo, zo_fixed
from ttzo.golden.fixed import FormatError
from ttzo.golden.formats import DEFAULT_CONFIG
from ttzo.golden.network import LayerSpec, TTNet
from ttzo.golden.tt import TTShape

D = 12
RNG = np.random.default_rng(0)
_M = RNG.normal(size=(D, D))
A = _M @ _M.T / D + np.eye(D)          # SPD Hessian
BVEC = RNG.normal(size=D)
THETA = RNG.normal(size=D)
GRAD = A @ THETA + BVEC


def quad(thetas: np.ndarray) -> np.ndarray:
    t = np.atleast_2d(thetas)
    return 0.5 * np.einsum("qi,ij,qj->q", t, A, t) + t @ BVEC


@pytest.mark.parametrize("kind", ["rademacher", "gaussian"])
@pytest.mark.parametrize("central", [False, True])
def test_rge_expectation_is_the_gradient(kind: str, central: bool) -> None:
    """Mean of 600 RGE estimates (N=50) within 5% (relative, 2-norm) of the true gradient.

    Rademacher forward differences are unbiased on a quadratic (odd moments vanish); the
    Gaussian-like codes have a small third moment, central differences cancel it exactly.
    Standard error of the mean: ~sqrt(d) |g| / sqrt(30000) ~ 2% of |g|.
    """
    steps = 600
    total = np.zeros(D)
    for t in range(steps):
        xi = zo.directions(seed=7, step=t, queries=50, d=D, kind=kind)
        e = zo.rge(quad, THETA, 1e-3, xi, central)
        assert e.evaluations == (101 if central else 51)
        total += e.grad
    mean = total / steps
    assert np.linalg.norm(mean - GRAD) / np.linalg.norm(GRAD) < 0.05


def test_gaussian_directions_have_unit_variance() -> None:
    xi = zo.directions(1, 0, 200, 500, "gaussian")
    assert abs(xi.var() - 1.0) < 0.02 and abs(xi.mean()) < 0.02


def test_sign_rge_agrees_in_sign_with_the_gradient() -> None:
    """E[sign(RGE)] has the gradient's sign wherever |g_p| is not tiny (averaged over 1000 steps, N=10)."""
    total = np.zeros(D)
    for t in range(1000):
        e = zo.sign_rge(quad, THETA, 1e-3, zo.directions(3, t, 10, D))
        assert set(np.unique(e.grad)) <= {-1.0, 0.0, 1.0}
        total += e.grad
    big = np.abs(GRAD) > 0.2 * np.abs(GRAD).max()
    assert np.all(np.sign(total[big]) == np.sign(GRAD[big]))
    assert np.dot(total, GRAD) > 0.5 * np.linalg.norm(total) * np.linalg.norm(GRAD)


def test_cge_is_the_forward_difference() -> None:
    """On a quadratic, (f(theta + mu e_p) - f(theta)) / mu = g_p + mu A_pp / 2 exactly."""
    mu = 1e-2
    e = zo.cge(quad, THETA, mu)
    assert e.evaluations == D + 1
    assert np.allclose(e.grad, GRAD + mu * np.diag(A) / 2, atol=1e-9)
    sub = np.array([1, 5, 7])
    e = zo.cge(quad, THETA, mu, sub)
    assert e.evaluations == 4 and np.count_nonzero(e.grad) == 3


def test_sample_coordinates_fraction_and_determinism() -> None:
    c = zo.sample_coordinates(5, 9, 4000, 0.5)
    assert np.array_equal(c, zo.sample_coordinates(5, 9, 4000, 0.5))
    assert abs(c.size - 2000) < 4 * np.sqrt(1000)  # binomial, 4 sigma
    assert not np.array_equal(c, zo.sample_coordinates(5, 10, 4000, 0.5))
    assert zo.sample_coordinates(5, 9, 10, 1.0).tolist() == list(range(10))


# --- the integer step ----------------------------------------------------------------------------------
class _Net:
    """Stand-in for a network: all parameters are cores except the last 3 (biases)."""

    def __init__(self, d: int) -> None:
        self.d = d

    def bias_mask(self) -> np.ndarray:
        m = np.zeros(self.d, bool)
        m[-3:] = True
        return m


PF = zo_fixed.ParamFormats.of(_Net(40), DEFAULT_CONFIG)
C = np.random.default_rng(1).integers(-50, 51, 40)


def lin_loss(thetas: np.ndarray) -> np.ndarray:
    """An integer linear 'batch loss' sum_p c_p theta_p."""
    return np.atleast_2d(thetas).astype(np.int64) @ C


def test_step_codes_per_format_and_refusal() -> None:
    mu = PF.codes(0.1, "mu")
    assert mu[0] == 819 and mu[-1] == 102  # 0.1 * 2^13, 0.1 * 2^10, round half up
    with pytest.raises(FormatError, match="below one LSB"):
        PF.codes(1e-4, "lr")  # 0.1 LSB of the bias format s16.10


def test_fixed_signrge_step_is_the_integer_definition() -> None:
    theta = np.random.default_rng(2).integers(-3000, 3000, 40)
    mu, alpha = PF.codes(0.1, "mu"), PF.codes(0.005, "lr")
    new, info = zo_fixed.signrge_step(lin_loss, theta, seed=11, step=4, queries=10, mu_codes=mu, alpha_codes=alpha,
                                      pf=PF)
    xi = prng.perturbations(11, 4, 10, 40)
    d = np.array([int(np.dot(C, np.clip(theta + mu * xi[i], PF.lo, PF.hi) - theta)) for i in range(10)])
    a = d @ xi
    assert np.array_equal(new, theta - alpha * np.sign(a))
    assert info.evaluations == 11 and info.loss0 == int(np.dot(C, theta))


def test_fixed_signrge_descends_a_linear_loss_on_average() -> None:
    theta = np.zeros(40, np.int64)
    mu, alpha = PF.codes(0.1, "mu"), PF.codes(0.005, "lr")
    start = int(lin_loss(theta)[0])
    for t in range(300):
        theta, _ = zo_fixed.signrge_step(lin_loss, theta, 3, t, 10, mu, alpha, PF)
    moved = theta != 0
    assert np.mean(np.sign(theta[moved]) == -np.sign(C[moved])) > 0.9
    assert int(lin_loss(theta)[0]) < start


def test_fixed_cge_step_momentum_and_multiplier() -> None:
    theta = np.random.default_rng(4).integers(-3000, 3000, 40)
    b = np.random.default_rng(5).integers(-10**6, 10**6, 40)
    c = zo_fixed.CGEConstants.make(PF, lr=0.01, mu=0.01, momentum=0.9, batch=64, loss_frac=16)
    assert c.m_code == 3686 and np.all((c.k_code >= 2048) & (c.k_code < 4096))
    k_real = 0.01 * 2.0 ** (2 * PF.frac() - 16) / (64 * c.mu_codes)
    assert np.all(np.abs(c.k_code * 2.0 ** -c.k_shift / k_real - 1) < 2 ** -11)
    coords = np.array([0, 3, 39])
    new, b2, info = zo_fixed.cge_step(lin_loss, theta, b, coords, c, PF)
    g = np.zeros(40, np.int64)
    g[coords] = C[coords] * c.mu_codes[coords]  # exact: a linear loss, no saturation here
    bb = ((3686 * b + 2048) >> 12) + g
    assert np.array_equal(b2, bb)
    upd = np.floor(c.k_code * bb.astype(float) * 2.0 ** -c.k_shift + 0.5).astype(np.int64)
    assert np.array_equal(new, theta - upd)
    assert info.evaluations == 4


def small_tt() -> TTNet:
    return TTNet((LayerSpec(TTShape.uniform((4, 4), (4, 4), 2), "relu"),
                  LayerSpec(TTShape.uniform((4, 4), (2, 2), 2), "identity")), name="tiny")


def _teacher_data(net: TTNet, n: int = 64):
    rng = np.random.default_rng(8)
    x = rng.integers(0, 256, (n, net.in_features))
    w = rng.normal(size=(net.in_features, 4))
    y = np.argmax((x / 256.0 - 0.5) @ w, axis=1)
    return x, y


@pytest.mark.parametrize("which", ["signrge", "cge"])
def test_fixed_optimizers_reduce_the_loss_of_a_small_tt_model(which: str) -> None:
    from ttzo.golden.fastforward import NetEvaluator
    net = small_tt()
    cfg = DEFAULT_CONFIG
    x, y = _teacher_data(net)
    ev = NetEvaluator(net, cfg)
    pf = zo_fixed.ParamFormats.of(net, cfg)
    theta = net.flatten(net.quantize(net.init(np.random.default_rng(9)), cfg))
    loss = lambda t: ev.losses(np.asarray(t, float), x, y)  # noqa: E731
    start = int(loss(theta[None])[0])
    b = np.zeros_like(theta)
    for t in range(60):
        if which == "signrge":
            theta, _ = zo_fixed.signrge_step(loss, theta, 1, t, 10, pf.codes(0.1, "mu"), pf.codes(0.01, "lr"), pf)
        else:
            c = zo_fixed.CGEConstants.make(pf, 0.05, 0.01, 0.9, len(y), cfg.loss.frac)
            theta, b, _ = zo_fixed.cge_step(loss, theta, b, np.arange(theta.size), c, pf,
                                            lambda th, cs, vs: ev.coordinate_losses(th.astype(float), cs, vs, x, y))
    end = int(loss(theta[None])[0])
    assert end < 0.95 * start, (start, end)  # measured: signRGE -11%, CGE more (60 steps)


def test_fixed_rge_step_is_the_integer_definition_and_unbiased() -> None:
    theta = np.random.default_rng(6).integers(-3000, 3000, 40)
    mu = PF.codes(0.1, "mu")
    new, info = zo_fixed.rge_step(lin_loss, theta, 2, 0, 10, mu, lr=0.01, batch=64, loss_frac=16, pf=PF)
    xi = prng.perturbations(2, 0, 10, 40)
    d = np.array([int(np.dot(C, np.clip(theta + mu * xi[i], PF.lo, PF.hi) - theta)) for i in range(10)])
    a = d @ xi
    k_code, k_shift = zo_fixed.multiplier(0.01 * 2.0 ** (2 * PF.frac() - 16) / (10 * 64 * mu), "k")
    assert np.array_equal(new, theta - ((k_code * a + (1 << (k_shift - 1))) >> k_shift))
    assert info.evaluations == 11
    # E[a_p] = N mu_p c_p for a linear loss (Rademacher): the mean over 400 steps is within 15%
    tot = np.zeros(40)
    for t in range(400):
        xi = prng.perturbations(2, t, 10, 40)
        tot += (((mu * xi) @ C) @ xi)
    mean = tot / 400
    assert np.linalg.norm(mean - 10 * mu * C) < 0.15 * np.linalg.norm(10 * mu * C)



def test_fixed_cge_stochastic_rounding_is_unbiased_and_from_the_prng() -> None:
    """--cge-rounding stochastic: (k*b + (word mod 2^k_shift)) >> k_shift with the step's SR stream.

    Updates below half an LSB vanish with nearest rounding (what stalls the fixed-point fine-tuning,
    docs/results.md); stochastically rounded, their mean over steps is k*b / 2^k_shift."""
    theta = np.zeros(40, np.int64)
    c = zo_fixed.CGEConstants.make(PF, lr=0.01, mu=0.01, momentum=0.9, batch=64, loss_frac=16)
    frac = np.linspace(0.05, 0.45, 40)                                   # wanted update, in LSB
    b_in = np.floor(frac * 2.0 ** c.k_shift / c.k_code / 0.9).astype(np.int64)
    no_loss = lambda t: np.zeros(len(np.atleast_2d(t)), np.int64)        # noqa: E731  g = 0: b <- m*b
    none = np.array([], dtype=np.int64)
    near, b_new, _ = zo_fixed.cge_step(no_loss, theta, b_in, none, c, PF)
    want = c.k_code * b_new * 2.0 ** -c.k_shift
    assert np.all((want > 0.03) & (want < 0.5)) and np.all(near == theta)   # nearest: no update at all
    ups = []
    for step in range(400):
        w = zo_fixed.stochastic_rounding_words(3, step, 40)
        assert np.array_equal(w, prng.words(prng.stream_seed(3, step, prng.MAX_QUERY - 2), 40)[0])
        new, _, _ = zo_fixed.cge_step(no_loss, theta, b_in, none, c, PF, rounding_words=w)
        low = w.astype(np.int64) & ((np.int64(1) << c.k_shift) - 1)
        assert np.array_equal(new, theta - ((c.k_code * b_new + low) >> c.k_shift))
        ups.append(theta - new)
    mean = np.mean(ups, axis=0)
    assert np.all(np.abs(mean - want) < 4 * np.sqrt(want * (1 - want) / 400))
