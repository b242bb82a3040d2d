"""The hardware PRNG: xorshift32 streams seeded per (seed, step, query), defined bit for bit.

Perturbations are never stored: the chip and this model regenerate them from the seed.
Stream (seed, step, q) starts from state s0 = fmix32(seed ^ ((step << 12) | q)) (0 -> 1), the
murmur3 finaliser, a bijection, so distinct (step, q) give distinct streams; its p-th word
(p = 0, 1, ...) is xorshift32 applied p+1 times (x ^= x<<13; x ^= x>>17; x ^= x<<5, mod 2^32),
and perturbs parameter p of the flat parameter vector (docs/fixed-point.md, "Parameter order").

Rademacher xi = +1 if bit 31 of the word is 0, else -1.  Gaussian-like xi (Irwin-Hall of four
bytes) = (b0 + b1 + b2 + b3 - 510) / 128, an integer code with 7 fraction bits (std 1.155).

xorshift32 is linear over GF(2), so word p of any stream is the XOR of precomputed columns
(the images of each seed bit after p+1 steps): that turns the sequential recurrence into
one vectorised table look-up here, with the same bits as the sequential hardware.
"""
from __future__ import annotations

import numpy as np

MASK32 = 0xFFFFFFFF
MAX_QUERY = 1 << 12
GAUSS_FRAC = 7


def xorshift32(x: int) -> int:
    """One step of Marsaglia's xorshift32 (13, 17, 5)."""
    x ^= (x << 13) & MASK32
    x ^= x >> 17
    x ^= (x << 5) & MASK32
    return x & MASK32


def fmix32(h: int) -> int:
    """MurmurHash3's 32-bit finaliser: a bijection on 32-bit words."""
    h &= MASK32
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & MASK32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & MASK32
    h ^= h >> 16
    return h


def stream_seed(seed: int, step: int, query: int) -> int:
    """Initial xorshift32 state of the stream for (seed, step, query); never 0."""
    if not 0 <= query < MAX_QUERY:
        raise ValueError(f"query index {query} outside 0..{MAX_QUERY - 1}")
    if step < 0:
        raise ValueError("step must be non-negative")
    s = fmix32((seed & MASK32) ^ (((step << 12) | query) & MASK32))
    return s if s else 1


def words_sequential(state: int, n: int) -> np.ndarray:
    """The first n words of a stream, by stepping the recurrence (the reference for the tables)."""
    out = np.empty(n, dtype=np.uint32)
    for i in range(n):
        state = xorshift32(state)
        out[i] = state
    return out


class _JumpTable:
    """cols[p, j] = xorshift32^(p+1)(1 << j); grown on demand and shared."""

    def __init__(self) -> None:
        self.cols = np.zeros((0, 32), dtype=np.uint32)

    def get(self, n: int) -> np.ndarray:
        if n > self.cols.shape[0]:
            n_new = max(n, 2 * self.cols.shape[0], 1024)
            cols = np.empty((n_new, 32), dtype=np.uint32)
            x = (np.uint32(1) << np.arange(32, dtype=np.uint32)).astype(np.uint32)
            for p in range(n_new):
                x = x ^ (x << np.uint32(13))
                x = x ^ (x >> np.uint32(17))
                x = x ^ (x << np.uint32(5))
                cols[p] = x
            self.cols = cols
        return self.cols[:n]


_TABLE = _JumpTable()


def words(states: np.ndarray | list[int] | int, n: int, offset: int = 0) -> np.ndarray:
    """Words offset..offset+n-1 of each stream: (len(states), n) uint32, vectorised."""
    st = np.atleast_1d(np.asarray(states, dtype=np.uint64)).astype(np.uint32)
    cols = _TABLE.get(offset + n)[offset:]
    bits = ((st[:, None] >> np.arange(32, dtype=np.uint32)) & 1).astype(bool)  # (S, 32)
    out = np.zeros((st.size, n), dtype=np.uint32)
    for j in range(32):
        sel = bits[:, j]
        if sel.any():
            out[sel] ^= cols[:, j][None, :]
    return out


def rademacher(w: np.ndarray) -> np.ndarray:
    """+1 where bit 31 is clear, -1 where set (int64)."""
    return 1 - 2 * (np.asarray(w, dtype=np.uint32) >> np.uint32(31)).astype(np.int64)


def gaussian(w: np.ndarray) -> np.ndarray:
    """Irwin-Hall of the word's four bytes, centred: integer code with GAUSS_FRAC fraction bits."""
    w = np.asarray(w, dtype=np.uint32).astype(np.int64)
    return (w & 0xFF) + ((w >> 8) & 0xFF) + ((w >> 16) & 0xFF) + ((w >> 24) & 0xFF) - 510


def perturbations(seed: int, step: int, queries: int, n: int, kind: str = "rademacher",
                  first_query: int = 0) -> np.ndarray:
    """xi for queries first_query.. of a step: (queries, n) int64 codes (Rademacher: +-1)."""
    states = [stream_seed(seed, step, first_query + q) for q in range(queries)]
    w = words(states, n)
    if kind == "rademacher":
        return rademacher(w)
    if kind == "gaussian":
        return gaussian(w)
    raise ValueError(f"unknown perturbation kind {kind!r}: use 'rademacher' or 'gaussian'")
