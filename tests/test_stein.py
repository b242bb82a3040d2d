"""Stein estimators: sparse grid exact on polynomials, MC at the 1/sqrt(N) rate, FD at O(h^2)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ttzo.golden.sparse_grid import smolyak_gauss_hermite
from ttzo.golden.stein import (Polynomial, fd_derivatives, mc_factors, random_polynomial, sparse_grid_factors,
                               sparse_grid_stein, stein_eq13, stein_with_factors)

SIGMA = 0.1


def roundoff(fac, f_nodes: np.ndarray, which: str) -> float:
    """A round-off bound for sum_j c_j (f_j - f_0): 64 eps sum |c_j| max |f|."""
    c = np.abs(fac.a).sum(axis=0).max() if which == "grad" else np.abs(fac.b).sum()
    return 64 * np.finfo(float).eps * c * max(1.0, np.abs(f_nodes).max())


@settings(max_examples=30, deadline=None)
@given(D=st.sampled_from([2, 3, 5, 21]), deg=st.integers(0, 4), seed=st.integers(0, 2 ** 31))
def test_sg_gradient_exact_up_to_degree_4(D: int, deg: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = random_polynomial(rng, D, deg, terms=6)
    x = rng.uniform(-1, 1, size=(3, D))
    g = smolyak_gauss_hermite(D, 3)
    fac = sparse_grid_factors(g, SIGMA)
    grad, _ = sparse_grid_stein(p, x, g, SIGMA)
    exact = p.smoothed_grad(x, SIGMA)
    tol = roundoff(fac, p(x[:, None, :] + fac.deltas[None]), "grad")
    assert np.abs(grad - exact).max() <= tol


@settings(max_examples=30, deadline=None)
@given(D=st.sampled_from([2, 3, 5, 21]), deg=st.integers(0, 3), seed=st.integers(0, 2 ** 31))
def test_sg_laplacian_exact_up_to_degree_3(D: int, deg: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = random_polynomial(rng, D, deg, terms=6)
    x = rng.uniform(-1, 1, size=(3, D))
    g = smolyak_gauss_hermite(D, 3)
    fac = sparse_grid_factors(g, SIGMA)
    _, lap = sparse_grid_stein(p, x, g, SIGMA)
    exact = p.smoothed_laplacian(x, SIGMA)
    tol = roundoff(fac, p(x[:, None, :] + fac.deltas[None]), "lap")
    assert np.abs(lap - exact).max() <= tol


@pytest.mark.parametrize("D", [2, 5])
def test_sg_not_exact_beyond(D: int) -> None:
    """Degree 5 breaks the gradient, degree 4 the Laplacian (so the exactness tests can fail)."""
    g = smolyak_gauss_hermite(D, 3)
    x = np.full((1, D), 0.3)
    e = np.zeros((1, D), dtype=np.int64)
    e[0, 0] = 5
    p5 = Polynomial(np.array([1.0]), e)
    grad, _ = sparse_grid_stein(p5, x, g, SIGMA)
    assert abs(grad[0, 0] - p5.smoothed_grad(x, SIGMA)[0, 0]) > 1e-6
    e[0, 0] = 4
    p4 = Polynomial(np.array([1.0]), e)
    _, lap = sparse_grid_stein(p4, x, g, SIGMA)
    assert abs(lap[0] - p4.smoothed_laplacian(x, SIGMA)[0]) > 1e-6


@pytest.mark.parametrize("D", [2, 5, 21])
def test_factor_form_equals_eq13(D: int) -> None:
    """The J-evaluation factor form = eq. 13 with its 2J+1 evaluations, on a non-polynomial f."""
    rng = np.random.default_rng(1)
    w = rng.normal(size=D)
    f = lambda y: np.sin(y @ w) + 0.1 * np.cos(y[..., 0] * y[..., -1])  # noqa: E731
    x = rng.uniform(0, 1, size=(4, D))
    g = smolyak_gauss_hermite(D, 3)
    g1, l1 = stein_eq13(f, x, g.nodes, g.weights, SIGMA)
    g2, l2 = sparse_grid_stein(f, x, g, SIGMA)
    assert np.allclose(g1, g2, rtol=0, atol=1e-11)
    assert np.allclose(l1, l2, rtol=0, atol=1e-7 if D == 21 else 1e-10)


def sine_case(D: int, seed: int = 0):
    """f = sin(w.x): smoothed u = sin(w.x) exp(-s^2|w|^2/2), grad = w cos(..) e, lap = -|w|^2 sin(..) e."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=D) / np.sqrt(D) * 2
    f = lambda y: np.sin(y @ w)  # noqa: E731
    x = rng.uniform(0, 1, size=(1, D))
    damp = np.exp(-SIGMA ** 2 * (w @ w) / 2)
    grad = w * np.cos(x @ w)[:, None] * damp
    lap = -(w @ w) * np.sin(x @ w) * damp
    return f, x, grad, lap


def test_mc_converges_at_sqrt_rate() -> None:
    """RMS error of the antithetic MC estimate falls ~ 1/sqrt(N): x16 samples -> /4 error."""
    D = 21
    f, x, grad_ex, lap_ex = sine_case(D)
    rng = np.random.default_rng(7)
    rms = {}
    for n in (32, 512):
        eg, el = [], []
        for _ in range(200):
            gr, la = stein_with_factors(f, x, mc_factors(rng, D, n, SIGMA))
            eg.append(np.sum((gr - grad_ex) ** 2))
            el.append(float((la - lap_ex)[0]) ** 2)
        rms[n] = (np.sqrt(np.mean(eg)), np.sqrt(np.mean(el)))
    for i in range(2):
        ratio = rms[32][i] / rms[512][i]
        assert 3.0 < ratio < 5.3, (i, ratio, rms)


def test_mc_unbiased() -> None:
    D = 5
    f, x, grad_ex, lap_ex = sine_case(D, 3)
    rng = np.random.default_rng(11)
    gs, ls = [], []
    for _ in range(400):
        gr, la = stein_with_factors(f, x, mc_factors(rng, D, 64, SIGMA))
        gs.append(gr[0])
        ls.append(la[0])
    gs, ls = np.array(gs), np.array(ls)
    # the mean is within 4 standard errors of the exact smoothed derivatives
    assert np.all(np.abs(gs.mean(0) - grad_ex[0]) < 4 * gs.std(0) / np.sqrt(len(gs)) + 1e-12)
    assert abs(ls.mean() - lap_ex[0]) < 4 * ls.std() / np.sqrt(len(ls))


def test_sg_error_order_on_smooth_function() -> None:
    """On sin(w.x), |w| = 1 (not a polynomial) in D = 21 the level-3 rule's error against the smoothed
    derivatives is O(sigma^4) for the gradient (first inexact term: degree 6) and O(sigma^2) for the
    Laplacian (its integrand already has degree 6 at order sigma^2)."""
    D = 21
    rng = np.random.default_rng(5)
    w = rng.normal(size=D)
    w /= np.linalg.norm(w)
    x = rng.uniform(0, 1, size=(1, D))
    g = smolyak_gauss_hermite(D, 3)
    errs = []
    for s in (0.2, 0.1):
        damp = np.exp(-s ** 2 / 2)
        gr, la = sparse_grid_stein(lambda y: np.sin(y @ w), x, g, s)
        errs.append((np.abs(gr - w * np.cos(x @ w)[:, None] * damp).max(),
                     abs(la[0] + np.sin(x @ w)[0] * damp)))
    assert 12 < errs[0][0] / errs[1][0] < 20
    assert 3.5 < errs[0][1] / errs[1][1] < 4.5
    assert errs[1][0] < 1e-5 and errs[1][1] < 0.05


def test_fd_second_order() -> None:
    """Central FD: exact for quadratics, error O(h^2) on a quartic (derivatives of f, not smoothed)."""
    D = 3
    e = np.array([[2, 0, 0], [1, 1, 0], [0, 0, 4]])
    p = Polynomial(np.array([1.0, -2.0, 0.5]), e)
    x = np.array([[0.3, -0.2, 0.7]])
    grad_ex = np.array([[2 * 0.3 - 2 * -0.2, -2 * 0.3, 2.0 * 0.7 ** 3]])
    lap_ex = 2.0 + 6.0 * 0.7 ** 2
    errs = []
    for h in (1e-1, 5e-2):
        gr, la = fd_derivatives(p, x, h)
        errs.append(abs(la[0] - lap_ex))
        assert np.abs(gr[0, :2] - grad_ex[0, :2]).max() < 1e-10
    assert 3.5 < errs[0] / errs[1] < 4.5


def test_lap_dims() -> None:
    """A Laplacian over the first L coordinates only (the HJB's x part)."""
    D = 4
    p = Polynomial(np.array([1.0, 1.0]), np.array([[2, 0, 0, 0], [0, 0, 0, 2]]))
    x = np.zeros((1, D))
    g = smolyak_gauss_hermite(D, 3)
    fac = sparse_grid_factors(g, SIGMA, lap_dims=3)
    _, la = stein_with_factors(p, x, fac)
    assert la[0] == pytest.approx(2.0, abs=1e-9)


def test_bad_input() -> None:
    g = smolyak_gauss_hermite(2, 2)
    with pytest.raises(ValueError, match="sigma"):
        sparse_grid_factors(g, 0.0)
    with pytest.raises(ValueError, match="lap_dims"):
        sparse_grid_factors(g, 0.1, lap_dims=5)
