"""Fixed-point arithmetic at the edges: round-half-up, saturation, overflow counting, refusal."""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ttzo.golden.fixed import (FormatError, OverflowCounter, QFormat, accumulator_bits, check_exact, requantize,
                               round_shift)
from ttzo.golden.formats import DEFAULT_CONFIG, PINN_CONFIG, FixedConfig


def ref_round_shift(c: int, s: int) -> int:
    """Round half up of c / 2^s, exact rational arithmetic (independent of the shift trick)."""
    return math.floor(Fraction(c, 1 << s) + Fraction(1, 2))


def test_ranges() -> None:
    s = QFormat(16, 13)
    assert (s.min_code, s.max_code) == (-32768, 32767)
    assert s.max_value == pytest.approx(32767 / 8192) and s.min_value == -4.0
    u = QFormat(8, 8, signed=False)
    assert (u.min_code, u.max_code, u.lsb) == (0, 255, 1 / 256)
    assert str(s) == "s16.13" and str(u) == "u8.8"
    assert QFormat.parse(" S16.13 ") == s and QFormat.parse("u8.8") == u


@pytest.mark.parametrize("value_lsb, code", [
    (0.5, 1), (1.5, 2), (2.5, 3), (-0.5, 0), (-1.5, -1), (-2.5, -2),   # .5 always rounds up (toward +inf)
    (0.49, 0), (-0.51, -1), (0.0, 0), (-0.0, 0), (7.25, 7), (-7.75, -8),
])
def test_quantize_half_up(value_lsb: float, code: int) -> None:
    f = QFormat(16, 4)
    assert int(f.quantize(value_lsb / 16)) == code


@settings(deadline=None)
@given(st.floats(-1e4, 1e4, allow_nan=False), st.integers(-4, 20))
def test_quantize_matches_rational_reference(x: float, frac: int) -> None:
    f = QFormat(24, frac)
    ref = math.floor(Fraction(x) * Fraction(2) ** frac + Fraction(1, 2))
    assert int(f.quantize(x)) == min(max(ref, f.min_code), f.max_code)


@settings(deadline=None)
@given(st.integers(-(1 << 50), 1 << 50), st.integers(1, 30))
def test_round_shift_int_and_float(c: int, s: int) -> None:
    ref = ref_round_shift(c, s)
    assert int(round_shift(np.int64(c), s)) == ref
    assert float(round_shift(np.float64(c), s)) == float(ref)  # the float64 (BLAS) path, exact below 2^53


def test_round_shift_edges() -> None:
    c = np.array([-3, -2, -1, 0, 1, 2, 3], dtype=np.int64)   # halves at +-1/2, +-3/2
    assert round_shift(c, 1).tolist() == [-1, -1, 0, 0, 1, 1, 2]
    assert round_shift(c, 0).tolist() == c.tolist()
    assert round_shift(c, -3).tolist() == (c * 8).tolist()   # negative shift: exact left shift


def test_saturation_and_counting() -> None:
    f = QFormat(8, 0)
    ctr = OverflowCounter()
    codes = np.array([-129, -128, 0, 127, 128, 10**9, -10**9])
    out = f.saturate(codes, ctr, "t")
    assert out.tolist() == [-128, -128, 0, 127, 127, 127, -128]
    assert ctr.report() == {"t": {"saturated": 4, "total": 7}} and ctr.any
    f.saturate(np.array([1, 2]), ctr, "t")
    assert ctr.report()["t"] == {"saturated": 4, "total": 9}
    ctr.reset()
    assert not ctr.any and ctr.report() == {}
    u = QFormat(8, 8, signed=False)
    assert u.saturate(np.array([-1, 0, 255, 256])).tolist() == [0, 0, 255, 255]
    # quantize saturates at the edge of the range, and counts it
    ctr2 = OverflowCounter()
    q = QFormat(16, 13).quantize([3.9998, 4.0, -4.0, -4.0001, 1e30], ctr2, "w")
    assert q.tolist() == [32766, 32767, -32768, -32768, 32767]
    assert ctr2.counts["w"] == 3


def test_requantize_rounds_then_saturates() -> None:
    ctr = OverflowCounter()
    acc = np.array([0x18, -0x18, 0x80000, -0x80010, 0x8])  # fraction 4 -> fraction 0 (divide by 16)
    out = requantize(acc, 4, QFormat(16, 0), ctr, "s")
    assert out.tolist() == [2, -1, 32767, -32768, 1]
    assert ctr.counts["s"] == 2
    assert requantize(np.array([3]), 0, QFormat(16, 2)).tolist() == [12]  # exact left shift


def test_refuses_formats_integer_arithmetic_cannot_hold() -> None:
    with pytest.raises(FormatError, match="outside 1..48"):
        QFormat(49, 0)
    with pytest.raises(FormatError, match="signed format needs at least 2"):
        QFormat(1, 0)
    with pytest.raises(FormatError, match="integers"):
        QFormat(16.0, 4)  # type: ignore[arg-type]
    with pytest.raises(FormatError, match="cannot parse"):
        QFormat.parse("q16.4")
    with pytest.raises(FormatError, match="cannot quantise non-finite"):
        QFormat(16, 4).quantize([np.nan])
    a = QFormat(32, 16)
    with pytest.raises(FormatError, match="need 64 bits"):
        check_exact(a, a, 1)
    assert check_exact(QFormat(16, 13), QFormat(16, 11), 48) == 15 + 15 + 6 + 2
    assert accumulator_bits(QFormat(8, 0), QFormat(8, 0, signed=False), 1) == 7 + 8 + 2


def test_accumulator_width_is_enough() -> None:
    """The extreme sums of `terms` products plus a bias fit the signed width accumulator_bits returns."""
    for a, b, n, e in [(QFormat(16, 13), QFormat(16, 11), 48, 0), (QFormat(8, 8, False), QFormat(16, 13), 7, 0),
                       (QFormat(12, 3), QFormat(10, 2), 1, 0), (QFormat(16, 11), QFormat(16, 13), 16, 29),
                       (QFormat(4, 0), QFormat(4, 0), 3, 3)]:
        w = accumulator_bits(a, b, n, extra_bits=e)
        prods = [x * y for x in (a.min_code, a.max_code) for y in (b.min_code, b.max_code)]
        bias_lo, bias_hi = (-(1 << e), (1 << e) - 1) if e else (0, 0)
        assert n * max(prods) + bias_hi <= (1 << (w - 1)) - 1
        assert n * min(prods) + bias_lo >= -(1 << (w - 1))


def test_fixed_config_roundtrip_and_checks() -> None:
    for cfg in (DEFAULT_CONFIG, PINN_CONFIG):
        assert FixedConfig.from_dict(cfg.to_dict()) == cfg
    assert DEFAULT_CONFIG.input == QFormat(8, 8, signed=False)
    assert DEFAULT_CONFIG.with_(weight="s16.12").weight == QFormat(16, 12)
    with pytest.raises(FormatError, match="unknown format fields"):
        FixedConfig.from_dict({"weights": "s16.13"})
    with pytest.raises(FormatError, match="bias.frac"):
        DEFAULT_CONFIG.with_(bias="s16.30")
    with pytest.raises(FormatError, match="sine_bits"):
        FixedConfig(sine_bits=2)
    lsb = DEFAULT_CONFIG.weight.lsb
    assert DEFAULT_CONFIG.step_code(3 * lsb) == 3 and DEFAULT_CONFIG.step_code(2.5 * lsb) == 3
    with pytest.raises(FormatError, match="below one LSB"):
        DEFAULT_CONFIG.step_code(lsb / 4, "alpha")
    with pytest.raises(FormatError, match="does not fit"):
        DEFAULT_CONFIG.step_code(1e6, "mu")
