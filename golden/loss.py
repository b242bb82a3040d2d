"""Cross-entropy loss: float, and the bit-exact fixed-point version the chip computes.

Fixed point, per sample, from logit codes z_j (fraction f):
  m = max_j z_j;  u_j = (m - z_j) * LOG2E           (fraction f+16, LOG2E = round(log2(e) 2^16))
  u_j -> frac E=10 (round half up); k = u_j >> E, r = u_j mod 2^E
  e_j = round_half_up(EXP2[r] >> k) (0 when k > 31),  EXP2[r] = round(2^(-r/2^E) 2^30)
  S = sum_j e_j (fraction 30, S >= 2^30);  p = floor(log2 S)
  i = round_half_up(S >> (p - G)) - 2^G  (G = 10, 0 <= i <= 2^G)
  log2S = ((p - 30) << 16) + LOG2[i],  LOG2[i] = round(log2(1 + i/2^G) 2^16)
  lnS = log2S * LN2 (fraction 32, LN2 = round(ln 2 2^16)), requantised to the loss format
  loss = sat_loss(((m - z_label) << (loss.frac - f)) + lnS)
The batch loss is the exact integer sum of per-sample losses (no division: the ZO step
sizes absorb 1/B).  Accuracy uses argmax with ties to the lowest index (a strict '>' scan).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from .fixed import FormatError, OverflowCounter, QFormat, round_shift

LOG2E = int(np.floor(np.log2(np.e) * 2 ** 16 + 0.5))
LN2 = int(np.floor(np.log(2.0) * 2 ** 16 + 0.5))
EXP_BITS = 10
LOG_BITS = 10
SUM_FRAC = 30


@lru_cache(maxsize=None)
def exp2_table() -> np.ndarray:
    r = np.arange(1 << EXP_BITS)
    t = np.floor(2.0 ** (-r / (1 << EXP_BITS)) * 2 ** SUM_FRAC + 0.5).astype(np.int64)
    t.setflags(write=False)
    return t


@lru_cache(maxsize=None)
def log2_table() -> np.ndarray:
    i = np.arange((1 << LOG_BITS) + 1)
    t = np.floor(np.log2(1 + i / (1 << LOG_BITS)) * 2 ** 16 + 0.5).astype(np.int64)
    t.setflags(write=False)
    return t


def cross_entropy_float(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-sample cross-entropy (natural log), logits (..., B, C)."""
    z = np.asarray(logits, dtype=np.float64)
    m = z.max(axis=-1, keepdims=True)
    lse = m[..., 0] + np.log(np.exp(z - m).sum(axis=-1))
    return lse - np.take_along_axis(z, np.asarray(labels)[..., None].astype(np.int64) *
                                    np.ones(z.shape[:-2] + (1, 1), dtype=np.int64), axis=-1)[..., 0]


def cross_entropy_fixed(logits: np.ndarray, labels: np.ndarray, act: QFormat, loss: QFormat,
                        counter: OverflowCounter | None = None) -> np.ndarray:
    """Per-sample fixed-point loss codes (format `loss`), logits codes (..., B, C) in `act`."""
    if loss.frac < act.frac:
        raise FormatError(f"loss format {loss} needs at least the logits' {act.frac} fraction bits")
    z = np.asarray(logits, dtype=np.int64)
    lab = np.asarray(labels).astype(np.int64)
    if lab.min(initial=0) < 0 or lab.max(initial=0) >= z.shape[-1]:
        raise ValueError(f"labels must lie in 0..{z.shape[-1] - 1}")
    m = z.max(axis=-1, keepdims=True)
    u = round_shift((m - z) * LOG2E, act.frac + 16 - EXP_BITS)
    k = u >> EXP_BITS
    r = u & ((1 << EXP_BITS) - 1)
    base = exp2_table()[r]
    kk = np.minimum(k, 62)
    e = np.where(k > 31, 0, (base + np.where(kk > 0, np.left_shift(1, np.maximum(kk - 1, 0)), 0)) >> kk)
    S = e.sum(axis=-1)
    p = np.floor(np.log2(S.astype(np.float64))).astype(np.int64)  # exact: S < 2^40
    p = np.where((np.int64(1) << p) > S, p - 1, p)
    p = np.where((np.int64(1) << (p + 1)) <= S, p + 1, p)
    i = ((S + (np.int64(1) << (p - LOG_BITS - 1))) >> (p - LOG_BITS)) - (1 << LOG_BITS)
    log2s = ((p - SUM_FRAC) << 16) + log2_table()[i]
    lns = round_shift(log2s * LN2, 32 - loss.frac)
    zy = np.take_along_axis(z, lab[..., None] * np.ones(z.shape[:-2] + (1, 1), dtype=np.int64), axis=-1)[..., 0]
    return loss.saturate(((m[..., 0] - zy) << (loss.frac - act.frac)) + lns, counter, "loss")


def batch_loss_fixed(logits: np.ndarray, labels: np.ndarray, act: QFormat, loss: QFormat,
                     counter: OverflowCounter | None = None) -> np.ndarray:
    """Exact integer sum of per-sample losses over the batch axis (-1 of the result)."""
    return cross_entropy_fixed(logits, labels, act, loss, counter).sum(axis=-1)


def argmax_first(logits: np.ndarray) -> np.ndarray:
    """Argmax with ties to the lowest index (what a strict '>' scan in hardware gives)."""
    return np.argmax(np.asarray(logits), axis=-1)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(argmax_first(logits) == np.asarray(labels)))


