"""Tensor-train matrix layers: shapes, contraction orders, float and bit-exact fixed-point forward.

A TT-matrix W (M x N, M = prod m_k, N = prod n_k) is stored as L cores G_k of shape
(r_{k-1}, n_k, m_k, r_k) with r_0 = r_L = 1 (the authors' layout).  Input x has N entries
indexed row-major over (n_1..n_L); output y over (m_1..m_L).

A forward pass *absorbs* the cores into a state one at a time, keeping the absorbed set a
contiguous run (start anywhere, grow left or right).  Absorbing core k sums over its input
mode n_k and its shared bond: that is one inner product of length n_k*r per output element,
accumulated exactly at full width and then (fixed point) requantised to the state format.
The last absorption adds the bias to the full-width accumulator and requantises to the
activation format.  `order` is the sequence of core indices absorbed; the default is the one
with fewest MACs (`best_order`), reported beside the left-to-right sweep the paper uses.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from itertools import product
from typing import Sequence

import numpy as np

from .fixed import FLOAT64_EXACT_BITS, FormatError, OverflowCounter, QFormat, check_exact, requantize

Order = tuple[int, ...]


@dataclass(frozen=True)
class TTShape:
    """Folding and ranks of one TT-matrix layer: (n_1..n_L) -> (m_1..m_L), ranks (1, r_1, .., 1)."""

    in_modes: tuple[int, ...]
    out_modes: tuple[int, ...]
    ranks: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "in_modes", tuple(int(v) for v in self.in_modes))
        object.__setattr__(self, "out_modes", tuple(int(v) for v in self.out_modes))
        object.__setattr__(self, "ranks", tuple(int(v) for v in self.ranks))
        L = len(self.in_modes)
        if L < 1 or len(self.out_modes) != L:
            raise ValueError(f"in_modes {self.in_modes} and out_modes {self.out_modes} need the same length >= 1")
        if len(self.ranks) != L + 1 or self.ranks[0] != 1 or self.ranks[-1] != 1:
            raise ValueError(f"ranks {self.ranks} must have length {L + 1} and start and end with 1")
        if min(self.in_modes + self.out_modes + self.ranks) < 1:
            raise ValueError("modes and ranks must be positive")

    @classmethod
    def uniform(cls, in_modes: Sequence[int], out_modes: Sequence[int], rank: int) -> "TTShape":
        L = len(in_modes)
        return cls(tuple(in_modes), tuple(out_modes), (1,) + (rank,) * (L - 1) + (1,))

    @property
    def L(self) -> int:
        return len(self.in_modes)

    @property
    def in_features(self) -> int:
        return int(np.prod(self.in_modes))

    @property
    def out_features(self) -> int:
        return int(np.prod(self.out_modes))

    @property
    def core_shapes(self) -> list[tuple[int, int, int, int]]:
        r, n, m = self.ranks, self.in_modes, self.out_modes
        return [(r[k], n[k], m[k], r[k + 1]) for k in range(self.L)]

    @property
    def n_core_params(self) -> int:
        return int(sum(np.prod(s) for s in self.core_shapes))

    # --- contraction orders ----------------------------------------------------------------
    def orders(self) -> list[Order]:
        """Every order that keeps the absorbed cores contiguous (L * 2^(L-1) sequences, deduplicated)."""
        out: list[Order] = []
        for start in range(self.L):
            for dirs in product((0, 1), repeat=self.L - 1):
                a = b = start
                seq = [start]
                ok = True
                for d in dirs:
                    if d == 0 and a > 0:
                        a -= 1
                        seq.append(a)
                    elif d == 1 and b < self.L - 1:
                        b += 1
                        seq.append(b)
                    else:
                        ok = False
                        break
                if ok and tuple(seq) not in out:
                    out.append(tuple(seq))
        return out

    def steps(self, order: Order) -> list["Step"]:
        """The absorption steps of `order`: which core, which side, inner length K and output size."""
        _check_order(order, self.L)
        r, n, m = self.ranks, self.in_modes, self.out_modes
        a = b = order[0]
        steps: list[Step] = []
        for i, k in enumerate(order):
            if i == 0:
                side, K = "first", n[k]
            elif k == b + 1:
                b, side, K = k, "right", n[k] * r[k]
            else:
                a, side, K = k, "left", n[k] * r[k + 1]
            lo, hi = (a, b) if i else (k, k)
            rest_n = int(np.prod([n[j] for j in range(self.L) if not lo <= j <= hi]))
            abs_m = int(np.prod([m[j] for j in range(lo, hi + 1)]))
            outputs = rest_n * abs_m * r[lo] * r[hi + 1]
            steps.append(Step(core=k, side=side, inner=K, outputs=outputs))
        return steps

    def macs(self, order: Order | None = None) -> int:
        """Multiply-accumulates per sample of `order` (default: the best one)."""
        return sum(s.inner * s.outputs for s in self.steps(self.best_order if order is None else order))

    @property
    def left_to_right(self) -> Order:
        return tuple(range(self.L))

    @cached_property
    def best_order(self) -> Order:
        """Fewest MACs; ties go to the earliest in `orders()` (left-to-right first)."""
        return min(self.orders(), key=lambda o: (self.macs(o), self.orders().index(o)))

    @property
    def dense_macs(self) -> int:
        return self.in_features * self.out_features


@dataclass(frozen=True)
class Step:
    """One absorption: core index, side ('first', 'left', 'right'), inner-product length, outputs."""

    core: int
    side: str
    inner: int
    outputs: int


def _check_order(order: Order, L: int) -> None:
    if sorted(order) != list(range(L)):
        raise ValueError(f"order {order} is not a permutation of the {L} cores")
    a = b = order[0]
    for k in order[1:]:
        if k == a - 1:
            a = k
        elif k == b + 1:
            b = k
        else:
            raise ValueError(f"order {order} absorbs core {k} that is not next to the absorbed run {a}..{b}")


# ------------------------------------------------------------------------------------------------
# Initialisation and dense reconstruction
# ------------------------------------------------------------------------------------------------

def init_cores(shape: TTShape, rng: np.random.Generator, gain: float = 2.0) -> list[np.ndarray]:
    """Gaussian cores whose dense-equivalent W has Var = gain / N (He init for gain 2).

    Var(W_ij) = prod(inner ranks) * prod(s_k^2); all cores get the same std s.
    """
    target = gain / shape.in_features
    inner = float(np.prod(shape.ranks[1:-1]))
    s = (target / inner) ** (1.0 / (2 * shape.L))
    return [rng.normal(0.0, s, size=cs) for cs in shape.core_shapes]


def to_dense(shape: TTShape, cores: Sequence[np.ndarray]) -> np.ndarray:
    """The M x N matrix the cores represent (row index over m-modes, column over n-modes)."""
    t = np.ones((1, 1, 1))  # (M_acc, N_acc, r)
    for G in cores:
        r0, n, m, r1 = G.shape
        t = np.einsum("abr,rnms->ambns", t, G).reshape(t.shape[0] * m, t.shape[1] * n, r1)
    return t[:, :, 0]


# ------------------------------------------------------------------------------------------------
# Forward passes
# ------------------------------------------------------------------------------------------------

def _absorb(state: np.ndarray, labels: list[str], lead: int, core: np.ndarray, k: int, side: str
            ) -> tuple[np.ndarray, list[str]]:
    """Contract `core` (lead dims + (r, n, m, r')) into `state` (lead dims + B + labelled axes).

    Returns the raw (un-requantised) accumulator and its labels.  Uses matmul so float64
    operands go through BLAS; integer-valued float64 stays exact below 2**53.
    """
    # (contracted state labels, permutation of the core's (r, n, m, r') axes, new labels)
    contract, perm, new = {
        "first": ([f"n{k}"], (1, 0, 2, 3), ["rl", f"m{k}", "rr"]),
        "right": ([f"n{k}", "rr"], (1, 0, 2, 3), [f"m{k}", "rr"]),
        "left": ([f"n{k}", "rl"], (1, 3, 0, 2), ["rl", f"m{k}"]),
    }[side]
    cl = core.ndim - 4
    core_t = np.transpose(core, list(range(cl)) + [cl + p for p in perm])
    n_contract = 1 if side == "first" else 2
    K = int(np.prod(core_t.shape[cl:cl + n_contract]))
    new_sizes = core_t.shape[cl + n_contract:]
    cm = core_t.reshape(core_t.shape[:cl] + (K, -1))

    keep = [lab for lab in labels if lab not in contract]
    base = lead + 1
    perm_tail = [labels.index(lab) for lab in keep + contract]
    st = np.transpose(state, list(range(base)) + [base + p for p in perm_tail])
    keep_shape = st.shape[base:base + len(keep)]
    st = st.reshape(st.shape[:lead] + (-1, K))
    out = np.matmul(st, cm)
    lead_shape = out.shape[:-2]
    return out.reshape(lead_shape + state.shape[lead:base] + keep_shape + tuple(new_sizes)), keep + new


def _final(state: np.ndarray, labels: list[str], lead: int, L: int) -> np.ndarray:
    """Reorder a fully absorbed state to (lead.., B, M) with m-modes row-major."""
    base = lead + 1
    order = [labels.index(f"m{k}") for k in range(L)] + [labels.index("rl"), labels.index("rr")]
    st = np.transpose(state, list(range(base)) + [base + p for p in order])
    return st.reshape(st.shape[:base] + (-1,))


def _initial(x: np.ndarray, shape: TTShape) -> tuple[np.ndarray, list[str], int]:
    x = np.asarray(x)
    if x.shape[-1] != shape.in_features:
        raise ValueError(f"input has {x.shape[-1]} features, the layer expects {shape.in_features}")
    lead = x.ndim - 2
    if lead < 0:
        raise ValueError("input must be (batch, features) or (queries, batch, features)")
    return x.reshape(x.shape[:-1] + shape.in_modes), [f"n{k}" for k in range(shape.L)], lead


def tt_forward_float(shape: TTShape, cores: Sequence[np.ndarray], x: np.ndarray, bias: np.ndarray | None = None,
                     order: Order | None = None) -> np.ndarray:
    """Float y = W x + b through the TT cores, x: (B, N) or (Q, B, N); cores may carry a leading Q axis."""
    order = shape.best_order if order is None else order
    _check_order(order, shape.L)
    state, labels, lead = _initial(np.asarray(x, dtype=np.float64), shape)
    lead = max(lead, max(np.ndim(c) for c in cores) - 4)
    if state.ndim - len(labels) - 1 < lead:
        state = state[None]
    for step in shape.steps(order):
        state, labels = _absorb(state, labels, lead, np.asarray(cores[step.core], dtype=np.float64),
                                step.core, step.side)
    y = _final(state, labels, lead, shape.L)
    if bias is not None:
        b = np.asarray(bias, dtype=np.float64)
        y = y + (b[..., None, :] if b.ndim > 1 else b)
    return y


@dataclass(frozen=True)
class FixedLayerFormats:
    """The formats one fixed-point TT layer reads and writes."""

    x: QFormat       # input codes
    weight: QFormat  # core codes
    bias: QFormat
    state: QFormat   # after every absorption but the last
    out: QFormat     # after the last absorption (+ bias), before the activation


def tt_forward_fixed(shape: TTShape, cores: Sequence[np.ndarray], x: np.ndarray, bias: np.ndarray | None,
                     fmts: FixedLayerFormats, order: Order | None = None,
                     counter: OverflowCounter | None = None) -> np.ndarray:
    """Bit-exact fixed-point y = W x + b: integer codes in, integer codes (fmts.out) out.

    After each absorption the exact accumulator (fraction in.frac + weight.frac) is
    requantised, round-half-up and saturating, to fmts.state; the last one adds the bias
    (shifted up to the accumulator's fraction) and requantises to fmts.out.
    """
    order = shape.best_order if order is None else order
    steps = shape.steps(order)
    # check_exact's bound assumes every operand lies in its format; if one does not, the float64
    # (BLAS) shortcut may be inexact, so compute in int64 throughout
    in_formats = (fmts.x.contains(x) and all(fmts.weight.contains(c) for c in cores)
                  and (bias is None or fmts.bias.contains(bias)))
    state, labels, lead = _initial(np.asarray(x, dtype=np.int64), shape)
    lead = max(lead, max(np.ndim(c) for c in cores) - 4)
    if state.ndim - len(labels) - 1 < lead:
        state = state[None]
    frac_in, fmt_in = fmts.x.frac, fmts.x
    for i, step in enumerate(steps):
        last = i == len(steps) - 1
        acc_frac = frac_in + fmts.weight.frac
        # the bias, aligned to the accumulator's fraction, is one more addend of the last step
        bias_bits = fmts.bias.magnitude_bits + acc_frac - fmts.bias.frac if last and bias is not None else 0
        width = check_exact(fmt_in, fmts.weight, step.inner, what=f"TT step {i} (core {step.core})",
                            extra_bits=bias_bits)
        dt = np.float64 if in_formats and width <= FLOAT64_EXACT_BITS else np.int64
        acc, labels = _absorb(state.astype(dt), labels, lead, np.asarray(cores[step.core]).astype(dt),
                              step.core, step.side)
        if last:
            acc = _final(acc, labels, lead, shape.L)
            if bias is not None:
                shift = acc_frac - fmts.bias.frac
                if shift < 0:
                    raise FormatError(f"bias fraction {fmts.bias.frac} exceeds accumulator fraction {acc_frac}")
                b = np.asarray(bias, dtype=np.int64) << shift
                b = b[..., None, :] if b.ndim > 1 else b
                acc = acc + b.astype(dt)
            return requantize(acc.astype(np.int64) if dt is np.int64 else acc, acc_frac, fmts.out,
                              counter, "out")
        state = requantize(acc, acc_frac, fmts.state, counter, "state")
        frac_in, fmt_in = fmts.state.frac, fmts.state
    raise AssertionError("unreachable")
