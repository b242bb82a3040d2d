"""Smolyak sparse Gauss-Hermite grids: node counts, weights, exactness up to 2k-1, failure at 2k, order."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ttzo.golden.sparse_grid import (_smolyak, gauss_hermite, level3_count, max_moment_error, quadrature_of_monomial,
                                     smolyak_gauss_hermite, summary)
from ttzo.golden.stein import Polynomial

DIMS = (2, 3, 5, 21)
LEVELS = (1, 2, 3)


@pytest.mark.parametrize("D", DIMS)
@pytest.mark.parametrize("k", LEVELS)
def test_counts_and_weight_sum(D: int, k: int) -> None:
    g = smolyak_gauss_hermite(D, k)
    expected = {1: 1, 2: 2 * D + 1, 3: 2 * D * D + 2 * D + 1}[k]
    assert g.count == expected
    assert abs(g.weights.sum() - 1.0) < 1e-12 * np.abs(g.weights).sum()
    # merged: no duplicate nodes
    assert len({tuple(z) for z in g.nodes}) == g.count


def test_paper_count_d21() -> None:
    assert smolyak_gauss_hermite(21, 3).count == level3_count(21) == 925


@pytest.mark.parametrize("D", DIMS)
@pytest.mark.parametrize("k", LEVELS)
def test_exact_up_to_2k_minus_1(D: int, k: int) -> None:
    g = smolyak_gauss_hermite(D, k)
    err, mono = max_moment_error(g, 2 * k - 1)
    assert err < 1e-12 * max(1.0, np.abs(g.weights).sum()), (err, mono)


@pytest.mark.parametrize("D", DIMS)
@pytest.mark.parametrize("k", LEVELS)
def test_fails_at_degree_2k(D: int, k: int) -> None:
    """z_0^(2k) is not integrated exactly: E = (2k-1)!! but the rule gives less (1-D rule of k points)."""
    g = smolyak_gauss_hermite(D, k)
    mono = (0,) * (2 * k)
    exact = float(np.prod(np.arange(2 * k - 1, 0, -2)))
    got = quadrature_of_monomial(g, mono)
    assert abs(got - exact) > 0.5, (got, exact)
    # the k-point 1-D Gauss-Hermite rule gives the same (wrong) value: known closed forms 0, 1, 9
    assert got == pytest.approx({1: 0.0, 2: 1.0, 3: 9.0}[k], abs=1e-9)


@pytest.mark.parametrize("D", DIMS)
def test_level3_matches_closed_form(D: int) -> None:
    """Independent reference (paper-facts): origin, +-sqrt3 e_i (1/6), +-e_i (-(D-1)/2), +-e_i +- e_j (1/4)."""
    ref: dict[tuple, float] = {}
    s3 = np.sqrt(3.0)
    for i in range(D):
        for v, w in ((s3, 1 / 6), (-s3, 1 / 6), (1.0, -(D - 1) / 2), (-1.0, -(D - 1) / 2)):
            z = [0.0] * D
            z[i] = v
            ref[tuple(np.round(z, 9))] = w
        for j in range(i + 1, D):
            for a in (1.0, -1.0):
                for b in (1.0, -1.0):
                    z = [0.0] * D
                    z[i], z[j] = a, b
                    ref[tuple(np.round(z, 9))] = 0.25
    ref[tuple([0.0] * D)] = 1.0 - sum(ref.values())
    g = smolyak_gauss_hermite(D, 3)
    got = {tuple(np.round(z, 9) + 0.0): w for z, w in zip(g.nodes, g.weights)}
    assert set(got) == set(ref)
    for key, w in ref.items():
        assert got[key] == pytest.approx(w, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("D", DIMS)
def test_independent_of_node_order(D: int) -> None:
    g = smolyak_gauss_hermite(D, 3)
    rng = np.random.default_rng(D)
    perm = rng.permutation(g.count)
    f = lambda z: np.cos(z @ np.linspace(0.1, 0.5, D)) + (z[:, 0] ** 2) * z[:, -1]  # noqa: E731
    a = g.weights @ f(g.nodes)
    b = g.weights[perm] @ f(g.nodes[perm])
    assert a == pytest.approx(b, rel=1e-12, abs=1e-12)
    # and the construction is deterministic: canonical order, origin first, mirror pairs after it
    g2 = _smolyak.__wrapped__(D, 3)  # rebuilt from scratch, bypassing the cache
    assert np.array_equal(g2.nodes, g.nodes)
    assert not g.nodes[0].any()
    assert np.array_equal(g.nodes[1::2], -g.nodes[2::2])
    assert np.array_equal(g.mirror_index()[1:3], [2, 1])


def test_1d_rules() -> None:
    for n in range(1, 7):
        x, w = gauss_hermite(n)
        assert w.sum() == pytest.approx(1.0, abs=1e-15)
        for p in range(2 * n):
            exact = 0.0 if p % 2 else float(np.prod(np.arange(p - 1, 0, -2)))
            assert w @ x ** p == pytest.approx(exact, abs=1e-12 * max(1.0, exact))
        assert np.array_equal(x, -x[::-1])


@settings(max_examples=25, deadline=None)
@given(D=st.sampled_from([2, 3, 5]), k=st.sampled_from([1, 2, 3]), seed=st.integers(0, 2 ** 31))
def test_random_polynomials_exact(D: int, k: int, seed: int) -> None:
    """Any polynomial of total degree <= 2k-1: rule = exact Gaussian expectation (binomial moments)."""
    rng = np.random.default_rng(seed)
    terms = 5
    exps = np.zeros((terms, D), dtype=np.int64)
    for t in range(terms):
        for _ in range(int(rng.integers(0, 2 * k))):
            exps[t, rng.integers(0, D)] += 1
    p = Polynomial(rng.normal(size=terms), exps)
    g = smolyak_gauss_hermite(D, k)
    exact = p.smoothed(np.zeros((1, D)), 1.0)[0]
    assert g.weights @ p(g.nodes) == pytest.approx(exact, rel=1e-11, abs=1e-11)


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="level"):
        smolyak_gauss_hermite(3, 0)
    with pytest.raises(ValueError, match="dimension"):
        smolyak_gauss_hermite(0, 2)
    with pytest.raises(ValueError, match="sigma"):
        smolyak_gauss_hermite(2, 2).scaled(0.0)


def test_summary_fields() -> None:
    s = summary(5, 3)
    assert s["nodes"] == 61 and s["exact_degree"] == 5
    assert s["max_moment_error"] < 1e-12 and s["degree_2k_error_z0"] == pytest.approx(6.0)
