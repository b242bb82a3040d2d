"""Activations on codes: identity, ReLU and the quarter-wave table sine."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ttzo.golden.activations import SINE_SHIFT, apply_fixed, apply_float, sine_constant, sine_fixed, sine_table
from ttzo.golden.fixed import QFormat


def test_identity_and_relu() -> None:
    x = np.array([-32768, -1, 0, 1, 32767])
    f = QFormat(16, 8)
    assert apply_fixed("identity", x, f).tolist() == x.tolist()
    assert apply_fixed("relu", x, f).tolist() == [0, 0, 0, 1, 32767]
    assert apply_float("relu", np.array([-1.5, 2.0])).tolist() == [0.0, 2.0]
    with pytest.raises(ValueError, match="unknown activation"):
        apply_fixed("tanh", x, f)
    with pytest.raises(ValueError, match="unknown activation"):
        apply_float("gelu", x)


@pytest.mark.parametrize("frac, P", [(14, 12), (12, 10), (8, 8)])
def test_sine_table_is_mirrored_quarter_wave(frac: int, P: int) -> None:
    t = sine_table(frac, P)
    N = 1 << P
    direct = np.floor(np.sin(2 * np.pi * np.arange(N) / N) * 2**frac + 0.5)
    assert np.max(np.abs(t - direct)) <= 1                   # equal to the direct table up to the mirror
    j = np.arange(N // 4 + 1)
    assert t[j].tolist() == [math.floor(math.sin(2 * math.pi * v / N) * 2**frac + 0.5) for v in j]
    assert np.array_equal(t[N // 2 - j[:-1]], t[j[:-1]])      # sin(pi - a) = sin(a)
    assert np.array_equal(t[(N // 2 + j) % N], -t[j])         # sin(pi + a) = -sin(a)
    assert t[N // 4] == 1 << frac and t[0] == 0


def test_sine_constant() -> None:
    assert sine_constant(12, 10) == math.floor(2 ** (SINE_SHIFT + 10 - 12) / (2 * math.pi) + 0.5)


@settings(max_examples=50, deadline=None)
@given(st.floats(-3.0, 3.0))
def test_sine_fixed_close_to_sin(v: float) -> None:
    f, P = QFormat(20, 14), 12
    x = f.quantize(v)
    y = f.to_float(sine_fixed(np.array([x]), f, P))[0]
    # phase resolution 2pi/2^P (half a step of rounding) + table rounding + constant rounding
    assert abs(y - math.sin(f.to_float(x))) <= math.pi / 2**P + 2.0 ** -f.frac + 1e-6 * abs(v)


def test_sine_periodic_and_odd() -> None:
    f, P = QFormat(20, 14), 10
    x = np.arange(-4000, 4000, 37)
    s = sine_fixed(x, f, P)
    # odd up to one phase step (round half up of the index is not symmetric) and table rounding
    assert np.max(np.abs(s + sine_fixed(-x, f, P))) <= 2 * math.pi / 2**P * 2**f.frac + 2
    assert s.dtype == np.int64 and f.contains(s)
