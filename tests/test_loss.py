"""Loss: float cross-entropy, the bit-exact fixed-point loss (independent reference, error bound), argmax ties."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp

from ttzo.golden import loss as L
from ttzo.golden.fixed import FormatError, OverflowCounter, QFormat

ACT = QFormat(16, 8)
LOSSF = QFormat(32, 16)
#: |fixed loss - float CE of the same logit codes| bound: log2 table (2^-11 relative -> 4.9e-4 nats), exp2 index
#: rounding (2^-11 in log2 units -> 3.4e-4 nats), LOG2E/LN2 constants and the loss LSB; 2^-9 = 1.95e-3 covers them.
BOUND = 2.0 ** -9


def rhu(v: int, s: int) -> int:
    """Round half up of v / 2^s (Python ints; s may be <= 0)."""
    return (v + (1 << (s - 1))) >> s if s > 0 else v << -s


def ref_fixed_ce(z: list[int], label: int, act: QFormat, loss: QFormat) -> int:
    """The algorithm of docs/fixed-point.md, step by step, in plain Python integers and tables built here."""
    log2e = math.floor(math.log2(math.e) * 2**16 + 0.5)
    ln2 = math.floor(math.log(2) * 2**16 + 0.5)
    exp2 = [math.floor(2.0 ** (-r / 1024) * 2**30 + 0.5) for r in range(1024)]
    log2 = [math.floor(math.log2(1 + i / 1024) * 2**16 + 0.5) for i in range(1025)]
    m = max(z)
    S = 0
    for zj in z:
        u = rhu((m - zj) * log2e, act.frac + 16 - 10)
        k, r = u >> 10, u & 1023
        S += 0 if k > 31 else rhu(exp2[r], k)
    p = S.bit_length() - 1
    i = rhu(S, p - 10) - 1024
    log2s = ((p - 30) << 16) + log2[i]
    lns = rhu(log2s * ln2, 32 - loss.frac)
    v = ((m - z[label]) << (loss.frac - act.frac)) + lns
    return min(max(v, loss.min_code), loss.max_code)


def test_float_ce_matches_logsumexp() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(0, 5, size=(3, 7, 10))
    lab = rng.integers(0, 10, size=7)
    ref = logsumexp(z, axis=-1) - np.take_along_axis(z, np.broadcast_to(lab[:, None], (3, 7, 1)), -1)[..., 0]
    np.testing.assert_allclose(L.cross_entropy_float(z, lab), ref, rtol=1e-12)


def test_tables() -> None:
    e, g = L.exp2_table(), L.log2_table()
    assert len(e) == 1024 and e[0] == 2**30 and np.all(np.diff(e) < 0) and e[-1] > 2**29
    assert len(g) == 1025 and g[0] == 0 and g[-1] == 65536 and np.all(np.diff(g) > 0)
    assert L.LOG2E == 94548 and L.LN2 == 45426


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([0.3, 3.0, 30.0]), st.sampled_from([(16, 8), (16, 6), (20, 12)]),
       st.sampled_from([2, 10, 17]))
def test_fixed_ce_bit_exact_and_bounded(seed: int, spread: float, act_bf: tuple[int, int], C: int) -> None:
    act = QFormat(*act_bf)
    rng = np.random.default_rng(seed)
    z = act.quantize(rng.normal(0, spread, size=(6, C)))
    z[0, :] = z[0, 0]                 # all tied
    z[1, 1:3] = z[1].max() + 1        # tied maximum
    lab = rng.integers(0, C, size=6)
    got = L.cross_entropy_fixed(z, lab, act, LOSSF)
    assert got.tolist() == [ref_fixed_ce(z[b].tolist(), int(lab[b]), act, LOSSF) for b in range(6)]
    flt = L.cross_entropy_float(act.to_float(z), lab)
    assert np.max(np.abs(LOSSF.to_float(got) - flt)) <= BOUND
    assert L.batch_loss_fixed(z, lab, act, LOSSF) == got.sum()


def test_fixed_ce_with_query_axis_and_saturation() -> None:
    rng = np.random.default_rng(3)
    z = ACT.quantize(rng.normal(0, 3, size=(4, 5, 10)))
    lab = rng.integers(0, 10, size=5)
    got = L.cross_entropy_fixed(z, lab, ACT, LOSSF)
    assert got.shape == (4, 5)
    for q in range(4):
        assert got[q].tolist() == L.cross_entropy_fixed(z[q], lab, ACT, LOSSF).tolist()
    small = QFormat(12, 8)                       # loss up to 8 nats only
    ctr = OverflowCounter()
    zz = np.array([[0, 100 * 256], [100 * 256, 0]])
    out = L.cross_entropy_fixed(zz, np.array([0, 0]), ACT, small, ctr)
    assert out.tolist() == [small.max_code, ref_fixed_ce([100 * 256, 0], 0, ACT, small)]
    assert ctr.report() == {"loss": {"saturated": 1, "total": 2}}


def test_fixed_ce_errors() -> None:
    z = np.zeros((2, 10), dtype=np.int64)
    with pytest.raises(ValueError, match="labels"):
        L.cross_entropy_fixed(z, np.array([0, 10]), ACT, LOSSF)
    with pytest.raises(FormatError, match="fraction"):
        L.cross_entropy_fixed(z, np.array([0, 1]), ACT, QFormat(32, 4))


def test_argmax_ties_go_to_lowest_index() -> None:
    z = np.array([[1, 3, 3, 0], [5, 5, 5, 5], [-2, -1, -1, -3], [0, 0, 0, 1]])
    assert L.argmax_first(z).tolist() == [1, 0, 1, 3]
    assert L.accuracy(z, np.array([1, 0, 2, 3])) == 0.75
