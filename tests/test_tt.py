"""TT-matrix layers: layout, float forward vs dense, bit-exact fixed forward vs independent references."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ttzo.golden.fixed import FormatError, OverflowCounter, QFormat
from ttzo.golden.tt import (FixedLayerFormats, TTShape, init_cores, to_dense, tt_forward_fixed, tt_forward_float)


@st.composite
def tt_shapes(draw, max_L: int = 4, max_mode: int = 4, max_rank: int = 3) -> TTShape:
    L = draw(st.integers(1, max_L))
    n = tuple(draw(st.integers(1, max_mode)) for _ in range(L))
    m = tuple(draw(st.integers(1, max_mode)) for _ in range(L))
    r = (1,) + tuple(draw(st.integers(1, max_rank)) for _ in range(L - 1)) + (1,)
    return TTShape(n, m, r)


def dense_by_slices(shape: TTShape, cores: list[np.ndarray]) -> np.ndarray:
    """W[(i_1..i_L), (j_1..j_L)] = G_1[:, j_1, i_1, :] @ ... @ G_L[:, j_L, i_L, :] (paper eq. 7, our layout)."""
    W = np.zeros((shape.out_features, shape.in_features))
    for row, i in enumerate(itertools.product(*[range(m) for m in shape.out_modes])):
        for col, j in enumerate(itertools.product(*[range(n) for n in shape.in_modes])):
            P = np.eye(1)
            for k, G in enumerate(cores):
                P = P @ G[:, j[k], i[k], :]
            W[row, col] = P[0, 0]
    return W


def test_to_dense_matches_slice_products() -> None:
    rng = np.random.default_rng(0)
    shape = TTShape((2, 3, 2), (3, 1, 2), (1, 2, 3, 1))
    cores = init_cores(shape, rng)
    np.testing.assert_allclose(to_dense(shape, cores), dense_by_slices(shape, cores), rtol=1e-12, atol=1e-15)


@settings(max_examples=60, deadline=None)
@given(tt_shapes(), st.integers(1, 3), st.integers(0, 2**32 - 1), st.data())
def test_float_forward_equals_dense(shape: TTShape, batch: int, seed: int, data) -> None:
    rng = np.random.default_rng(seed)
    cores = [rng.normal(size=s) for s in shape.core_shapes]
    bias = rng.normal(size=shape.out_features)
    x = rng.normal(size=(batch, shape.in_features))
    order = data.draw(st.sampled_from(shape.orders()))
    y = tt_forward_float(shape, cores, x, bias, order)
    ref = x @ to_dense(shape, cores).T + bias
    scale = np.abs(x).max() * np.prod([np.abs(c).max() for c in cores]) * shape.in_features + 1.0
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-12 * scale)


def test_orders_are_all_contiguous_sequences() -> None:
    for L in range(1, 6):
        shape = TTShape.uniform((2,) * L, (2,) * L, 2)
        orders = shape.orders()
        assert len(orders) == len(set(orders)) == 2 ** (L - 1)
        for o in orders:
            assert sorted(o) == list(range(L))
            assert all(min(o[:i]) - 1 == o[i] or max(o[:i]) + 1 == o[i] for i in range(1, L))
        assert shape.left_to_right in orders
    with pytest.raises(ValueError, match="not next to"):
        TTShape.uniform((2, 2, 2), (2, 2, 2), 2).steps((0, 2, 1))
    with pytest.raises(ValueError, match="not a permutation"):
        TTShape.uniform((2, 2), (2, 2), 2).steps((0, 0))


# ---------------------------------------------------------------------------------------------
# Independent fixed-point reference: plain Python integers, dictionaries, one loop per MAC
# ---------------------------------------------------------------------------------------------

def _rq(acc: int, shift: int, fmt: QFormat) -> int:
    v = (acc + (1 << (shift - 1))) >> shift if shift > 0 else acc << -shift  # round half up
    return min(max(v, fmt.min_code), fmt.max_code)


def ref_fixed(shape: TTShape, cores: list[np.ndarray], x: list[int], bias: list[int] | None,
              f: FixedLayerFormats, order: tuple[int, ...]) -> tuple[list[int], int]:
    """The contract of docs/fixed-point.md for one sample: returns output codes and the MAC count."""
    L, macs = shape.L, 0
    n_idx = list(itertools.product(*[range(n) for n in shape.in_modes]))
    xin = {j: int(v) for j, v in zip(n_idx, x)}
    G = [c.astype(object) for c in cores]
    # state: {(n-tuple with None at absorbed positions, m-tuple with None at unabsorbed, rl, rr): code}
    state: dict = {}
    lo = hi = order[0]
    frac = f.x.frac
    for step, k in enumerate(order):
        r0, nk, mk, r1 = G[k].shape
        new: dict = {}
        if step == 0:
            for j, v in xin.items():
                for mm in range(mk):
                    for a in range(r0):
                        for b in range(r1):
                            key = (j[:k] + (None,) + j[k + 1:], (None,) * k + (mm,) + (None,) * (L - k - 1), a, b)
                            new[key] = new.get(key, 0) + v * int(G[k][a, j[k], mm, b]); macs += 1
        else:
            right = k == hi + 1
            lo, hi = (lo, k) if right else (k, hi)
            for (j, mt, a, b), v in state.items():
                for mm in range(mk):
                    if right:   # sum over n_k and the right bond b
                        for b2 in range(r1):
                            key = (j[:k] + (None,) + j[k + 1:], mt[:k] + (mm,) + mt[k + 1:], a, b2)
                            new[key] = new.get(key, 0) + v * int(G[k][b, j[k], mm, b2]); macs += 1
                    else:       # sum over n_k and the left bond a
                        for a2 in range(r0):
                            key = (j[:k] + (None,) + j[k + 1:], mt[:k] + (mm,) + mt[k + 1:], a2, b)
                            new[key] = new.get(key, 0) + v * int(G[k][a2, j[k], mm, a]); macs += 1
        acc_frac = frac + f.weight.frac
        if step < L - 1:
            state = {key: _rq(v, acc_frac - f.state.frac, f.state) for key, v in new.items()}
            frac = f.state.frac
        else:
            out = []
            for i, mt in enumerate(itertools.product(*[range(m) for m in shape.out_modes])):
                acc = new[((None,) * L, mt, 0, 0)]
                if bias is not None:
                    acc += int(bias[i]) << (acc_frac - f.bias.frac)
                out.append(_rq(acc, acc_frac - f.out.frac, f.out))
            return out, macs
    raise AssertionError


def _random_codes(rng: np.random.Generator, fmt: QFormat, size, spread: float = 1.0) -> np.ndarray:
    lo, hi = fmt.min_code, fmt.max_code
    c = np.round(rng.normal(0, spread * (hi - lo) / 6, size=size)).astype(np.int64)
    return np.clip(c, lo, hi)


FMTS = FixedLayerFormats(x=QFormat(8, 8, signed=False), weight=QFormat(16, 13), bias=QFormat(16, 10),
                         state=QFormat(12, 9), out=QFormat(12, 6))


@settings(max_examples=40, deadline=None)
@given(tt_shapes(max_L=3, max_mode=3, max_rank=3), st.integers(0, 2**32 - 1), st.booleans(), st.data())
def test_fixed_forward_matches_python_reference(shape: TTShape, seed: int, with_bias: bool, data) -> None:
    """Rounding and saturation (narrow state/out formats force both) agree bit for bit, in every order."""
    rng = np.random.default_rng(seed)
    spread = data.draw(st.sampled_from([0.05, 0.3, 1.0]))  # small to large values: 1.0 saturates often
    cores = [_random_codes(rng, FMTS.weight, s, spread) for s in shape.core_shapes]
    bias = _random_codes(rng, FMTS.bias, shape.out_features) if with_bias else None
    x = rng.integers(0, 256, size=(2, shape.in_features))
    order = data.draw(st.sampled_from(shape.orders()))
    y = tt_forward_fixed(shape, cores, x, bias, FMTS, order)
    for b in range(2):
        ref, macs = ref_fixed(shape, cores, list(x[b]), None if bias is None else list(bias), FMTS, order)
        assert y[b].tolist() == ref
    assert macs == shape.macs(order)  # the MAC count is what the reference actually multiplied


def test_fixed_forward_equals_integer_dense_product() -> None:
    """With integer cores (weight.frac = 0) and a wide state the contract drops no bits: y = W x + b exactly."""
    rng = np.random.default_rng(1)
    shape = TTShape((3, 4, 2), (2, 3, 2), (1, 3, 2, 1))
    f = FixedLayerFormats(x=QFormat(8, 8, signed=False), weight=QFormat(6, 0), bias=QFormat(16, 4),
                          state=QFormat(40, 8), out=QFormat(40, 8))
    cores = [rng.integers(-32, 32, size=s) for s in shape.core_shapes]
    bias = rng.integers(-30000, 30000, size=shape.out_features)
    x = rng.integers(0, 256, size=(5, shape.in_features))
    # the dense integer matrix from Python ints (no float anywhere)
    Wint = np.array(dense_by_slices(shape, [c.astype(object) for c in cores]), dtype=object)
    ref = [[sum(int(Wint[i, j]) * int(x[b, j]) for j in range(shape.in_features)) + (int(bias[i]) << 4)
            for i in range(shape.out_features)] for b in range(5)]
    for order in shape.orders():
        ctr = OverflowCounter()
        y = tt_forward_fixed(shape, cores, x, bias, f, order, ctr)
        assert y.tolist() == ref
        assert not ctr.any


def test_fixed_forward_counts_saturation() -> None:
    shape = TTShape((2,), (1,), (1, 1))
    f = FixedLayerFormats(x=QFormat(8, 0), weight=QFormat(8, 0), bias=QFormat(8, 0), state=QFormat(8, 0),
                          out=QFormat(8, 0))
    ctr = OverflowCounter()
    y = tt_forward_fixed(shape, [np.array([[[[100]], [[100]]]])], np.array([[1, 1], [-1, -1], [1, 0]]), None,
                         f, counter=ctr)
    assert y[:, 0].tolist() == [127, -128, 100]
    assert ctr.report() == {"out": {"saturated": 2, "total": 3}}


def test_fixed_forward_refuses_inexact_formats() -> None:
    shape = TTShape((4,), (2,), (1, 1))
    wide = QFormat(40, 0)
    f = FixedLayerFormats(x=wide, weight=wide, bias=QFormat(16, 0), state=wide, out=wide)
    with pytest.raises(FormatError, match="need"):
        tt_forward_fixed(shape, [np.zeros((1, 4, 2, 1), np.int64)], np.zeros((1, 4), np.int64), None, f)


def test_query_axis_equals_loop() -> None:
    """Cores with a leading query axis Q (the ZO perturbations) equal Q separate forwards."""
    rng = np.random.default_rng(2)
    shape = TTShape((3, 2, 2), (2, 2, 3), (1, 2, 2, 1))
    Q = 3
    cq = [_random_codes(rng, FMTS.weight, (Q,) + s, 0.3) for s in shape.core_shapes]
    bq = _random_codes(rng, FMTS.bias, (Q, shape.out_features))
    x = rng.integers(0, 256, size=(4, shape.in_features))
    y = tt_forward_fixed(shape, cq, x, bq, FMTS)
    yf = tt_forward_float(shape, [c.astype(float) for c in cq], x.astype(float), bq.astype(float))
    assert y.shape == (Q, 4, shape.out_features)
    for q in range(Q):
        assert y[q].tolist() == tt_forward_fixed(shape, [c[q] for c in cq], x, bq[q], FMTS).tolist()
        np.testing.assert_allclose(yf[q], tt_forward_float(shape, [c[q].astype(float) for c in cq], x.astype(float),
                                                           bq[q].astype(float)), rtol=1e-12)


def test_paper_mac_counts_and_best_order() -> None:
    l1 = TTShape.uniform((7, 4, 4, 7), (8, 4, 4, 8), 6)
    l2 = TTShape.uniform((8, 4, 4, 8), (1, 5, 2, 1), 6)
    assert l1.macs(l1.left_to_right) == 338_688 and l1.dense_macs == 802_816
    assert l2.macs(l2.left_to_right) == 41_184 and l2.dense_macs == 10_240
    for s in (l1, l2):
        assert s.macs() == min(s.macs(o) for o in s.orders())
    assert l2.macs() < 41_184
    # the left-to-right sweep, by the closed form r_{k-1} n_k * (prod n_>k) * (prod m_<=k) * r_k
    for s in (l1, l2):
        n, m, r = s.in_modes, s.out_modes, s.ranks
        closed = sum(r[k] * n[k] * math.prod(n[k + 1:]) * math.prod(m[:k + 1]) * r[k + 1] for k in range(s.L))
        assert closed == s.macs(s.left_to_right)
    assert l1.n_core_params == 1824 and l2.n_core_params == 1104


def test_init_variance() -> None:
    """He-style init: the dense-equivalent W has variance close to gain / N."""
    shape = TTShape.uniform((7, 4, 4, 7), (8, 4, 4, 8), 6)
    v = [to_dense(shape, init_cores(shape, np.random.default_rng(s))).var() for s in range(8)]
    assert np.mean(v) == pytest.approx(2.0 / 784, rel=0.25)


def test_bad_inputs() -> None:
    shape = TTShape((2, 2), (2, 2), (1, 2, 1))
    with pytest.raises(ValueError, match="features"):
        tt_forward_float(shape, init_cores(shape, np.random.default_rng(0)), np.zeros((1, 5)))
    with pytest.raises(ValueError, match="ranks"):
        TTShape((2, 2), (2, 2), (2, 2, 1))
    with pytest.raises(ValueError, match="same length"):
        TTShape((2, 2), (2,), (1, 2, 1))


def test_fixed_forward_exact_for_codes_outside_their_formats() -> None:
    """Operands beyond their formats (callers may pass unsaturated codes) are still summed exactly (int64):
    2^55 + 1 - 2^55 is 1, which float64 accumulation would round to 0."""
    K = 8
    shape = TTShape((K,), (K,), (1, 1))
    f = FixedLayerFormats(x=QFormat(8, 0), weight=QFormat(8, 0), bias=QFormat(8, 0), state=QFormat(48, 0),
                          out=QFormat(48, 0))
    core = np.zeros((1, K, K, 1), np.int64)
    x = np.zeros((2, K), np.int64)
    for i in range(K):  # output i sums x_i 2^25 + x_(i+1) - x_(i+2) 2^25 (cyclic), in every position
        core[0, i, i, 0], core[0, (i + 1) % K, i, 0], core[0, (i + 2) % K, i, 0] = 1 << 25, 1, -(1 << 25)
    x[:, 0::2] = 1 << 30   # even outputs: 2^55 + 1 - 2^55 = 1
    x[:, 1::2] = 1
    ref = (x.astype(object) @ core[0, :, :, 0].astype(object)).tolist()
    assert ref[0][0] == 1
    assert tt_forward_fixed(shape, [core], x, None, f).tolist() == ref
