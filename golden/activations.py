"""Activation functions on integer codes: identity, ReLU, and the table sine of the PINN path.

The sine is what hardware computes: the code x (fraction f) is turned into a phase index of
P bits of a full turn, idx = ((x * C + 2^(S-1)) >> S) mod 2^P with C = round(2^(S+P-f) / 2pi)
and S = 24, then looked up in a table built from a quarter wave:
q[j] = round_half_up(sin(2 pi j / 2^P) * 2^f), j = 0..2^(P-2), and mirrored
(sin(pi - a) = sin(a), sin(a + pi) = -sin(a)), so a quarter-wave ROM gives the same bits.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from .fixed import QFormat, round_shift

ACTIVATIONS = ("identity", "relu", "sine")
SINE_SHIFT = 24


@lru_cache(maxsize=None)
def sine_constant(frac: int, phase_bits: int) -> int:
    """C in the phase computation idx = round(x * C / 2^24) mod 2^P."""
    return int(np.floor(2.0 ** (SINE_SHIFT + phase_bits - frac) / (2 * np.pi) + 0.5))


@lru_cache(maxsize=None)
def sine_table(frac: int, phase_bits: int) -> np.ndarray:
    """Full-turn table (2^P int64 codes) mirrored from the quarter wave."""
    P = phase_bits
    quarter_n = 1 << (P - 2)
    j = np.arange(quarter_n + 1)
    q = np.floor(np.sin(2 * np.pi * j / (1 << P)) * (1 << frac) + 0.5).astype(np.int64)
    idx = np.arange(1 << P)
    quad = idx >> (P - 2)
    pos = idx & (quarter_n - 1)
    mag = np.where(quad % 2 == 0, q[pos], q[quarter_n - pos])
    table = np.where(quad >= 2, -mag, mag)
    table.setflags(write=False)
    return table


def sine_fixed(x: np.ndarray, fmt: QFormat, phase_bits: int) -> np.ndarray:
    c = sine_constant(fmt.frac, phase_bits)
    idx = round_shift(np.asarray(x, dtype=np.int64) * c, SINE_SHIFT) & ((1 << phase_bits) - 1)
    return fmt.saturate(sine_table(fmt.frac, phase_bits)[idx])


def apply_fixed(name: str, x: np.ndarray, fmt: QFormat, phase_bits: int = 10) -> np.ndarray:
    """Activation `name` on codes of format `fmt`; the result is in the same format."""
    if name == "identity":
        return np.asarray(x, dtype=np.int64)
    if name == "relu":
        return np.maximum(np.asarray(x, dtype=np.int64), 0)
    if name == "sine":
        return sine_fixed(x, fmt, phase_bits)
    raise ValueError(f"unknown activation {name!r}; choose from {ACTIVATIONS}")


def apply_float(name: str, x: np.ndarray) -> np.ndarray:
    if name == "identity":
        return x
    if name == "relu":
        return np.maximum(x, 0.0)
    if name == "sine":
        return np.sin(x)
    raise ValueError(f"unknown activation {name!r}; choose from {ACTIVATIONS}")
