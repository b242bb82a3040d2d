"""Transpose-free batched TT layers: states kept feature-major, (lead, features..., batch).

With the absorbed run of cores a..b, the state's axes are
    (n_0..n_{a-1}, r_a, m_a..m_b, r_{b+1}, n_{b+1}..n_{L-1}, B)
and the axes an absorption contracts are adjacent, so every absorption is ONE batched
matmul core (R, K) @ state (P, K, C*B) -> (P, R, C*B) with no copy of the state:
    first core k:    K = n_k,       R = r_k m_k r_{k+1},  P = prod n_<k,          C = prod n_>k
    right core b+1:  K = r_k n_k,   R = m_k r_{k+1},      P = n_<a r_a m_a..m_b,  C = prod n_>k
    left core a-1:   K = n_k r_{k+1}, R = r_k m_k,        P = prod n_<k,          C = m_a..m_b r_{b+1} n_>b
The output of one absorption is the next one's input as it lies in memory, and a layer's
output (M, B) is the next layer's input (n_0..n_{L-1}, B).  Only the small cores are permuted.

Fixed point: integer codes held in float64 (exact below 2^53, checked by the caller with
`check_exact`).  Each step's requantisation scale 2^-shift is folded into the core, so BLAS
returns acc * 2^-shift, a multiple of 2^-shift, exactly; round-half-up is then
floor(. + 1/2) and saturation a clip, both in place.  This is the arithmetic of
`tt.tt_forward_fixed` (tests/test_fastforward.py compares them bit for bit).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .tt import Order, TTShape


@dataclass(frozen=True)
class Absorb:
    """One absorption in the feature-major layout: state (P, K, C*B) -> (P, R, C*B)."""

    core: int
    side: str
    perm: tuple[int, int, int, int]  # core axes (r, n, m, r') -> (row axes..., contracted axes...)
    P: int
    K: int
    R: int
    C: int


def plan(shape: TTShape, order: Order, out_modes: Sequence[int] | None = None,
         in_modes: Sequence[int] | None = None) -> list[Absorb]:
    """The absorptions of `order`; `out_modes`/`in_modes` override the modes (a restricted state:
    a mode fixed to one value is a mode of size 1)."""
    n = tuple(shape.in_modes if in_modes is None else in_modes)
    r = shape.ranks
    m = tuple(shape.out_modes if out_modes is None else out_modes)
    prod = lambda v: int(np.prod(v, dtype=np.int64))  # noqa: E731
    steps: list[Absorb] = []
    a = b = order[0]
    for i, k in enumerate(order):
        if i == 0:
            steps.append(Absorb(k, "first", (0, 2, 3, 1), prod(n[:k]), n[k], r[k] * m[k] * r[k + 1], prod(n[k + 1:])))
        elif k == b + 1:
            P = prod(n[:a]) * r[a] * prod(m[a:b + 1])
            steps.append(Absorb(k, "right", (2, 3, 0, 1), P, r[k] * n[k], m[k] * r[k + 1], prod(n[k + 1:])))
            b = k
        elif k == a - 1:
            C = prod(m[a:b + 1]) * r[b + 1] * prod(n[b + 1:])
            steps.append(Absorb(k, "left", (0, 2, 1, 3), prod(n[:k]), n[k] * r[k + 1], r[k] * m[k], C))
            a = k
        else:
            raise ValueError(f"order {order} is not contiguous at core {k}")
    return steps


def state_axes(shape: TTShape, order: Order, s: int) -> list[tuple[str, int]]:
    """(label, size) of the state after the first s absorptions of `order`, batch axis 'B' last
    (size 0: any).  Labels: n<t>, m<t> for modes, r<t> for bonds."""
    n, m, r = shape.in_modes, shape.out_modes, shape.ranks
    if s == 0:
        return [(f"n{t}", n[t]) for t in range(shape.L)] + [("B", 0)]
    a, b = min(order[:s]), max(order[:s])
    return ([(f"n{t}", n[t]) for t in range(a)] + [(f"r{a}", r[a])] + [(f"m{t}", m[t]) for t in range(a, b + 1)]
            + [(f"r{b + 1}", r[b + 1])] + [(f"n{t}", n[t]) for t in range(b + 1, shape.L)] + [("B", 0)])


def restrict(state: np.ndarray, axes: list[tuple[str, int]], fixed: dict[str, np.ndarray]) -> np.ndarray:
    """The slices of a (1, ...) state at axis label -> per-query index: (Q, rest flattened).

    With nothing fixed, the state itself (1, size) (it broadcasts over the queries)."""
    B = state.size // int(np.prod([sz for lab, sz in axes if lab != "B"], dtype=np.int64))
    sizes = [sz or B for _, sz in axes]
    t = state.reshape(sizes)
    if not fixed:
        return t.reshape(1, -1)
    pos = [j for j, (lab, _) in enumerate(axes) if lab in fixed]
    t = np.moveaxis(t, pos, list(range(len(pos))))
    out = t[tuple(fixed[axes[j][0]] for j in pos)]
    return out.reshape(out.shape[0], -1)


def core_matrix(core: np.ndarray, st: Absorb, scale: float = 1.0) -> np.ndarray:
    """Core (lead.., r, n, m, r') as the (lead.., R, K) matrix of absorption `st`, times `scale`."""
    lead = core.ndim - 4
    A = np.transpose(core, tuple(range(lead)) + tuple(lead + p for p in st.perm))
    A = A.reshape(core.shape[:lead] + (st.R, st.K))
    return A * scale if scale != 1.0 else np.ascontiguousarray(A)


def absorb(A: np.ndarray, S: np.ndarray, st: Absorb, B: int) -> np.ndarray:
    """One absorption: A (R, K) or (Q, R, K); S (Qs, P*K*C*B) as any shape -> (Q or Qs, P, R, C*B).

    Queries of the core and of the state broadcast (Qs = 1 shares the state)."""
    Qs = S.shape[0]
    CB = st.C * B
    if A.ndim == 3:
        Q = A.shape[0]
        if Qs == 1 and st.P == 1:  # shared state: one GEMM for all queries
            return (A.reshape(Q * st.R, st.K) @ S.reshape(st.K, CB)).reshape(Q, 1, st.R, CB)
        return np.matmul(A[:, None], S.reshape(Qs, st.P, st.K, CB))
    return np.matmul(A, S.reshape(Qs, st.P, st.K, CB))


def requant_inplace(acc: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Round half up (floor(. + 1/2)) and saturate, in place, of acc*2^-shift held in float64."""
    acc += 0.5
    np.floor(acc, out=acc)
    return np.clip(acc, lo, hi, out=acc)
