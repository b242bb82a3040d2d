"""Fast evaluation of many parameter sets of one TT network: batched queries and CGE reuse.

`NetEvaluator` computes exactly what `TTNet.forward_fixed` (or `forward_float`) computes, but

* for Q parameter sets at once, in the transpose-free feature-major layout of
  golden/fmforward.py (one batched matmul per absorption step, no copy of the state);
* in fixed point on float64 BLAS, holding integer codes in float64: every accumulator is
  checked to stay below 2**53 (`check_exact`); the requantisation's 2^-s is folded into the
  core and round-half-up is floor(. + 1/2), exact (scaling by a power of two loses nothing);
* for coordinate perturbations (ZO-CGE) without re-running what cannot change: a change of
  entry (a, n, m, b) of core k in layer l leaves every earlier layer and every absorption step
  before core k unchanged; in the touched step the exact accumulator changes only in one row
  of the core matrix (output mode m_k = m and that rank index), by delta * (state row at
  the entry's column); every later step of the layer keeps m_k as a pass-through axis, so it
  runs on the restricted state (the layer's plan with m_k = 1: 1/m_k of the work), and the
  next step (same side) only adds core[rank row] @ (row change) to its cached accumulator.
  A bias entry changes one accumulator row.  When the next layer's input modes are this
  layer's output modes, it too runs only on the changed input slice (n_k = m, or the one
  feature of a bias) until the step that absorbs that mode, which adds the change to its
  cached accumulator; later layers are re-evaluated in full.  Because each accumulator is an
  exact integer sum (one bit of headroom more for the deltas: `delta_exact`), the shortcuts
  give the same codes as plain re-evaluation (tests/test_fastforward.py proves it, also for
  random networks).

Inputs are pixel/activation codes in fixed point and their values (code * 2^-frac) in float.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .activations import apply_fixed, apply_float
from .fixed import FLOAT64_EXACT_BITS, check_exact
from .fmforward import Absorb, absorb, core_matrix, plan, requant_inplace, restrict, state_axes
from .formats import FixedConfig
from .loss import cross_entropy_fixed, cross_entropy_float
from .network import TTNet


@dataclass
class _LayerCache:
    """The unperturbed pass through one layer (one parameter set, feature-major)."""

    states: list[np.ndarray]   # input state of each step, (1, P*K*C*B) as the step reads it
    accs: list[np.ndarray]     # scaled accumulator of each step before requantisation (last: incl. bias)
    h: np.ndarray              # (1, M, B) layer output after the activation


class NetEvaluator:
    """Batched forward passes and losses of `net` for flat parameter vectors (float or fixed)."""

    def __init__(self, net: TTNet, cfg: FixedConfig | None = None, max_elems: int = 200_000,
                 cge_elems: int | None = None) -> None:
        """`max_elems` bounds the widest intermediate of one forward call: queries, and for big
        batches samples, are chunked so that it stays in the 2 MB L2 (at r=6, batch 64: two calls
        of 32 samples per query measured 1.1-1.9x faster than one call of 64, on the project VM);
        `cge_elems` (default 2 * max_elems) the same for a chunk of coordinate changes."""
        self.net = net
        self.cfg = cfg
        self.fixed = cfg is not None
        self.max_elems = max_elems
        self.cge_elems = 2 * max_elems if cge_elems is None else cge_elems
        self.sizes = net.param_sizes()
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)
        # block b -> (layer, core index or -1 for bias, shape)
        self.blocks: list[tuple[int, int, tuple[int, ...]]] = []
        for i, spec in enumerate(net.layers):
            for k, cs in enumerate(spec.shape.core_shapes):
                self.blocks.append((i, k, cs))
            self.blocks.append((i, -1, (spec.shape.out_features,)))
        self.exact = True
        self.delta_exact = True
        if self.fixed:
            for i, spec in enumerate(net.layers):
                f = net.layer_formats(cfg, i)
                fin = f.x
                steps = spec.shape.steps(spec.contraction)
                for s, st in enumerate(steps):
                    last = s == len(steps) - 1
                    # as tt_forward_fixed: the aligned bias is one more addend of the last step
                    bias_bits = f.bias.magnitude_bits + fin.frac + f.weight.frac - f.bias.frac if last else 0
                    w = check_exact(fin, f.weight, st.inner, what=f"layer {i} TT step {s}", extra_bits=bias_bits)
                    if w > FLOAT64_EXACT_BITS:
                        self.exact = False
                    if w + 1 > FLOAT64_EXACT_BITS:  # a CGE delta (difference of two states) needs one bit more
                        self.delta_exact = False
                    fin = f.state
        # widest per-sample activation, to size query chunks
        self._per_query = max(max(st.outputs for st in sp.shape.steps(sp.contraction)) for sp in net.layers)
        # feature-major plans (golden/fmforward.py) and, in fixed point, each step's folded
        # requantisation: (2^-shift, min code, max code); ReLU is fused into the last clip
        self._plans = [plan(sp.shape, sp.contraction) for sp in net.layers]
        self._plan_cache: dict = {}
        self._rq: list[list[tuple[float, float, float]]] = []
        self._bias_scale: list[float] = []
        for i, sp in enumerate(net.layers):
            if not self.fixed:
                break
            f = net.layer_formats(cfg, i)
            frac, rq = f.x.frac, []
            for s, st in enumerate(self._plans[i]):
                last = s == len(self._plans[i]) - 1
                fo = f.out if last else f.state
                lo = max(fo.min_code, 0) if last and sp.activation == "relu" else fo.min_code
                rq.append((2.0 ** -(frac + f.weight.frac - fo.frac), float(lo), float(fo.max_code)))
                if last:  # bias aligned to the accumulator, then scaled like it
                    self._bias_scale.append(2.0 ** (frac + f.weight.frac - f.bias.frac) * rq[-1][0])
                frac = fo.frac
            self._rq.append(rq)

    # --- one layer --------------------------------------------------------------------------------
    def _act(self, i: int, y: np.ndarray) -> np.ndarray:
        name = self.net.layers[i].activation
        if not self.fixed:
            return apply_float(name, y)
        if name == "identity":
            return y
        if name == "relu":
            return np.maximum(y, 0.0)
        return apply_fixed(name, y.astype(np.int64), self.cfg.act, self.cfg.sine_bits).astype(np.float64)

    def _params(self, theta: np.ndarray):
        return self.net.unflatten(np.asarray(theta, dtype=np.float64))

    def _input(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if self.fixed:
            if not self.cfg.input.contains(x):
                raise ValueError(f"input codes outside the input format {self.cfg.input}")
            return x.astype(np.float64)
        return x.astype(np.float64)

    # --- plain batched forward (feature-major, golden/fmforward.py) ---------------------------------
    def _fm_layer(self, i: int, cores, bias, S: np.ndarray, B: int, keep: list | None = None) -> np.ndarray:
        """Layer i, activation included: S (Qs, N, B) feature-major -> (Q, M, B).

        `keep`: a list that receives (input state, accumulator before requantisation) per step."""
        steps = self._plans[i]
        for s, st in enumerate(steps):
            last = s == len(steps) - 1
            scale = self._rq[i][s][0] if self.fixed else 1.0
            acc = absorb(core_matrix(cores[st.core], st, scale), S, st, B)
            if last:
                acc = acc.reshape(acc.shape[0], -1, B)
                if bias is not None:
                    b = bias * self._bias_scale[i] if self.fixed else bias
                    acc += b[..., :, None]
            if keep is not None:
                keep.append((S, acc.copy()))
            if self.fixed:
                requant_inplace(acc, *self._rq[i][s][1:])
            S = acc
        act = self.net.layers[i].activation
        if act == "relu":
            if not self.fixed:  # fixed: fused into the last clip
                np.maximum(S, 0.0, out=S)
            return S
        return self._act(i, S)

    def _fm_forward(self, params, S: np.ndarray, B: int, start: int = 0) -> np.ndarray:
        for i in range(start, len(self.net.layers)):
            cores, bias = params[i]
            S = self._fm_layer(i, cores, bias, S, B)
        return S

    def logits(self, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Network output for theta (d,) -> (B, C) or theta (Q, d) -> (Q, B, C); codes as float64 in fixed."""
        theta = np.asarray(theta, dtype=np.float64)
        if self.fixed and not self.exact:
            return self._logits_int(theta, x)
        h = self._input(x)
        single = theta.ndim == 1
        thetas = theta[None] if single else theta
        B = h.shape[0]
        sb = max(1, min(B, self.max_elems // max(1, self._per_query)))       # samples per call ...
        sb = -(-B // -(-B // sb))                                             # ... in equal chunks
        qc = max(1, self.max_elems // max(1, sb * self._per_query))          # queries per call
        out = np.empty((len(thetas), B, self.net.out_features))
        for b0 in range(0, B, sb):
            xt = np.ascontiguousarray(h[b0:b0 + sb].T)[None]                  # (1, N, b) shared by the queries
            nb = xt.shape[-1]
            for q0 in range(0, len(thetas), qc):
                y = self._fm_forward(self._params(thetas[q0:q0 + qc]), xt, nb)
                out[q0:q0 + qc, b0:b0 + nb] = y.transpose(0, 2, 1)
        return out[0] if single else out

    def _logits_int(self, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Fallback for formats too wide for float64: the contract's int64 forward, query by query."""
        codes = [([c.astype(np.int64) for c in cores], b.astype(np.int64))
                 for cores, b in self.net.unflatten(theta)]
        out = self.net.forward_fixed(codes, np.asarray(x, dtype=np.int64), self.cfg)
        return out.astype(np.float64)

    def per_sample_loss(self, logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
        if self.fixed:
            return cross_entropy_fixed(logits.astype(np.int64), labels, self.cfg.act, self.cfg.loss)
        return cross_entropy_float(logits, labels)

    def batch_loss(self, logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Fixed: exact integer sum of per-sample loss codes (int64); float: mean cross-entropy."""
        per = self.per_sample_loss(logits, labels)
        return per.sum(axis=-1) if self.fixed else per.mean(axis=-1)

    def losses(self, thetas: np.ndarray, x: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Batch loss of each of Q parameter sets: (Q, d) -> (Q,)."""
        return self.batch_loss(self.logits(np.atleast_2d(thetas), x), labels)

    # --- CGE: many single-coordinate changes, reusing unchanged partial contractions -----------
    def base_cache(self, theta: np.ndarray, x: np.ndarray) -> list[_LayerCache]:
        params = self._params(theta)
        h = self._input(x)
        B = h.shape[0]
        S = np.ascontiguousarray(h.T)[None]
        caches = []
        for i, (cores, bias) in enumerate(params):
            keep: list = []
            S = self._fm_layer(i, cores, bias, S, B, keep)
            caches.append(_LayerCache([k[0] for k in keep], [k[1] for k in keep], S))
        return caches

    def coordinate_logits(self, theta: np.ndarray, coords: np.ndarray, values: np.ndarray, x: np.ndarray,
                          cache: list[_LayerCache] | None = None) -> np.ndarray:
        """Logits (len(coords), B, C) of theta with theta[coords[q]] replaced by values[q], one at a time.

        Equal (fixed point: bit for bit) to `logits` of the explicitly perturbed vectors.
        """
        theta = np.asarray(theta, dtype=np.float64)
        coords = np.asarray(coords, dtype=np.int64)
        values = np.asarray(values, dtype=np.float64)
        if self.fixed and not self.exact:
            t = np.repeat(theta[None], len(coords), 0)
            t[np.arange(len(coords)), coords] = values
            return self.logits(t, x)
        if cache is None:
            cache = self.base_cache(theta, x)
        params = self._params(theta)
        B = cache[0].h.shape[-1]
        out = np.empty((len(coords), B, self.net.out_features))
        block = np.searchsorted(self.offsets, coords, side="right") - 1
        for b in np.unique(block):
            sel = np.nonzero(block == b)[0]
            chunk = max(1, self.cge_elems // max(1, B * self._block_width(int(b))))
            for s in range(0, len(sel), chunk):
                q = sel[s:s + chunk]
                local = coords[q] - self.offsets[b]
                delta = values[q] - theta[coords[q]]
                out[q] = self._block_logits(int(b), local, delta, params, cache).transpose(0, 2, 1)
        return out

    def coordinate_losses(self, theta: np.ndarray, coords: np.ndarray, values: np.ndarray, x: np.ndarray,
                          labels: np.ndarray, cache: list[_LayerCache] | None = None) -> np.ndarray:
        return self.batch_loss(self.coordinate_logits(theta, coords, values, x, cache), labels)

    def _block_width(self, b: int) -> int:
        """Widest per-sample intermediate of one coordinate change in block b (to size chunks)."""
        i, k, _ = self.blocks[b]
        widths = lambda j: [st.P * st.R * st.C for st in self._plans[j]]  # noqa: E731
        shape = self.net.layers[i].shape
        if k >= 0:
            s = next(j for j, st in enumerate(self._plans[i]) if st.core == k)
            w = [st.P * st.R * st.C for st in self._restricted_plan(i, k)[s + 1:]]
            w.append(shape.out_features // shape.out_modes[k])
        else:
            w = [1]
        j = i + 1
        if not (j < len(self.net.layers) and self._restricts(i)):
            w.append(shape.out_features)          # the scattered full output of layer i
        for jj in range(j, len(self.net.layers)):
            w += widths(jj) + [self.net.layers[jj].shape.out_features]
        return max(w)

    def _restricts(self, i: int) -> bool:
        """Whether a change in layer i is followed by the restricted re-evaluation of layer i + 1."""
        return self.delta_exact and self.net.layers[i + 1].shape.in_modes == self.net.layers[i].shape.out_modes

    def _restricted_plan(self, i: int, k: int) -> list[Absorb]:
        """Layer i's plan with output mode k fixed (size 1)."""
        key = ("out", i, k)
        if key not in self._plan_cache:
            spec = self.net.layers[i]
            modes = list(spec.shape.out_modes)
            modes[k] = 1
            self._plan_cache[key] = plan(spec.shape, spec.contraction, modes)
        return self._plan_cache[key]

    def _input_restricted_plan(self, j: int, fixed: frozenset[int]) -> list[Absorb]:
        """Layer j's plan with the input modes in `fixed` of size 1."""
        key = ("in", j, fixed)
        if key not in self._plan_cache:
            spec = self.net.layers[j]
            modes = [1 if u in fixed else n for u, n in enumerate(spec.shape.in_modes)]
            self._plan_cache[key] = plan(spec.shape, spec.contraction, in_modes=modes)
        return self._plan_cache[key]

    def _block_logits(self, b: int, local: np.ndarray, delta: np.ndarray, params, cache) -> np.ndarray:
        """Outputs (Q, C, B) (feature-major) of the Q single-coordinate changes of block b."""
        i, k, bshape = self.blocks[b]
        lc = cache[i]
        B = lc.h.shape[-1]
        modes = self.net.layers[i].shape.out_modes
        if k < 0:   # one output feature changed
            y = self._bias_change(i, local, delta, lc)
            fixed = dict(enumerate(np.unravel_index(local, modes)))
        else:       # the outputs with m_k = m changed
            y, m = self._core_change(i, k, bshape, local, delta, params, lc)
            fixed = {k: m}
        j = i + 1
        if j < len(self.net.layers) and self._restricts(i):
            h = self._restricted_layer(j, params, cache[j], fixed, y, B)
            j += 1
        else:
            h = self._scatter(lc.h, modes, fixed, y)
        return self._fm_forward(params, h, B, j)

    @staticmethod
    def _scatter(base: np.ndarray, modes: tuple[int, ...], fixed: dict[int, np.ndarray], y: np.ndarray
                 ) -> np.ndarray:
        """Copies (Q, M, B) of the base output (1, M, B) with the slices at modes[t] = fixed[t] set to y."""
        Q = y.shape[0]
        h = np.repeat(base, Q, axis=0)
        hv = h.reshape((Q,) + tuple(modes) + (base.shape[-1],))
        idx = (np.arange(Q),) + tuple(fixed[t] if t in fixed else slice(None) for t in range(len(modes)))
        hv[idx] = y.reshape(hv[idx].shape)
        return h

    def _restricted_layer(self, j: int, params, lc: _LayerCache, fixed: dict[int, np.ndarray], S: np.ndarray,
                          B: int) -> np.ndarray:
        """Layer j for Q inputs that differ from the cached base input only where input mode n_t =
        fixed[t] (per query); S holds them restricted to that slice (Q, ..., B).  Output (Q, M, B).

        While a fixed mode is not yet absorbed, only its slice is computed (the plan with that
        mode of size 1); the step that absorbs it adds core[n_t = v] @ (new - base state slice)
        to the cached accumulator, exact in integers (`delta_exact`)."""
        spec = self.net.layers[j]
        shape, order = spec.shape, spec.contraction
        steps = self._plans[j]
        cores, bias = params[j]
        Q = S.shape[0]
        active = dict(fixed)
        for s, st in enumerate(steps):
            t = st.core
            A = core_matrix(cores[t], st, self._rq[j][s][0] if self.fixed else 1.0)
            rst = self._input_restricted_plan(j, frozenset(active))[s]
            if t in active:
                v = active.pop(t)
                lab = {f"n{u}": w for u, w in active.items()}
                base_in = restrict(lc.states[s], state_axes(shape, order, s), {**lab, f"n{t}": v})
                dS = S.reshape(Q, -1) - base_in
                if st.side == "first":
                    Av = A[:, v].T[:, :, None]
                elif st.side == "right":                       # K = (r_k, n_k)
                    Av = A.reshape(st.R, rst.K, -1)[:, :, v].transpose(2, 0, 1)
                else:                                          # K = (n_k, r_k+1)
                    Av = A.reshape(st.R, -1, rst.K)[:, v, :].transpose(1, 0, 2)
                dS = dS.reshape(Q, rst.P, rst.K, rst.C * B)
                if rst.K == 1:  # an outer product: broadcasting beats Q*P one-column matmuls
                    acc = (Av[:, None] * dS).reshape(Q, -1)
                else:
                    acc = np.matmul(Av[:, None], dS).reshape(Q, -1)
                acc += restrict(lc.accs[s], state_axes(shape, order, s + 1), lab)
            else:
                acc = absorb(A, S, rst, B)
                if s == len(steps) - 1:
                    acc = acc.reshape(Q, -1, B)
                    acc += (bias * self._bias_scale[j] if self.fixed else bias)[:, None]
            S = self._finish(j, acc, s)
        return self._last_act(j, S.reshape(Q, -1, B))

    def _finish(self, i: int, acc: np.ndarray, s: int) -> np.ndarray:
        """Requantisation (fixed; ReLU fused) or activation (float) of layer i's step s, in place."""
        if self.fixed:
            return requant_inplace(acc, *self._rq[i][s][1:])
        return acc

    def _last_act(self, i: int, y: np.ndarray) -> np.ndarray:
        """The activation after the last step's `_finish` (ReLU is already in the fixed clip)."""
        if self.net.layers[i].activation == "relu":
            return y if self.fixed else np.maximum(y, 0.0, out=y)
        return self._act(i, y)

    def _bias_change(self, i: int, local: np.ndarray, delta: np.ndarray, lc: _LayerCache) -> np.ndarray:
        """Layer i's changed output feature (Q, B) for Q changes of its bias entries `local`."""
        last = len(self._plans[i]) - 1
        acc = lc.accs[-1].reshape(-1, lc.h.shape[-1])                     # (M, B)
        scale = self._bias_scale[i] if self.fixed else 1.0
        row = acc[local] + (delta * scale)[:, None]                        # (Q, B)
        return self._last_act(i, self._finish(i, row, last))                # (Q, B)

    def _core_change(self, i: int, k: int, cshape: tuple[int, ...], local: np.ndarray, delta: np.ndarray,
                     params, lc: _LayerCache) -> tuple[np.ndarray, np.ndarray]:
        """Layer i's outputs restricted to m_k = m (Q, M / m_k, B) for Q changes of core k, and m."""
        spec = self.net.layers[i]
        shape = spec.shape
        steps = self._plans[i]
        s = next(j for j, st in enumerate(steps) if st.core == k)
        st = steps[s]
        B = lc.h.shape[-1]
        Q = len(local)
        idx = np.unravel_index(local, cshape)                               # (a, n, m, b) per coordinate
        pidx = [idx[p] for p in st.perm]                                    # in the core matrix's axis order
        ps = [cshape[p] for p in st.perm]
        nrow = {"first": 3, "right": 2, "left": 2}[st.side]                 # row axes of the core matrix
        rho = np.ravel_multi_index(pidx[:nrow], ps[:nrow])
        kap = np.ravel_multi_index(pidx[nrow:], ps[nrow:])
        m = idx[2]
        CB = st.C * B
        scale = self._rq[i][s][0] if self.fixed else 1.0
        S_in = lc.states[s].reshape(st.P, st.K, CB)
        acc = lc.accs[s].reshape(st.P, st.R, CB)
        # the changed row of the accumulator: + delta * (input state row at the entry's column)
        row = acc[:, rho].transpose(1, 0, 2) + (delta * scale)[:, None, None] * S_in[:, kap].transpose(1, 0, 2)
        row = self._finish(i, row, s)                                       # (Q, P, C*B)
        if s == len(steps) - 1:
            row = self._last_act(i, row)                                    # the base h is activated
        # restricted output: the base output of the step at m_k = m, with the changed row replaced
        rows = tuple(ps[:nrow])                                             # row axes sizes (m_k among them)
        mpos = {"first": 1, "right": 0, "left": 1}[st.side]                 # position of m_k in the row axes
        full = (lc.states[s + 1] if s + 1 < len(steps) else lc.h).reshape((st.P,) + rows + (CB,))
        rest = rows[:mpos] + rows[mpos + 1:]
        R1 = int(np.prod(rest, dtype=np.int64))
        ridx = [pidx[j] for j in range(nrow) if j != mpos]
        rho1 = np.ravel_multi_index(ridx, rest) if rest else np.zeros(Q, np.int64)
        qi = np.arange(Q)

        def restricted_base() -> np.ndarray:  # (Q, P, rows without m_k, CB): the base output at m_k = m
            return np.moveaxis(full, 1 + mpos, 0)[m].reshape(Q, st.P, R1, CB)

        if s == len(steps) - 1:
            state = restricted_base()
            state[qi, :, rho1] = row
            return state.reshape(Q, -1, B), m
        rplan = self._restricted_plan(i, k)
        cores, bias = params[i]
        nxt = steps[s + 1]
        start = s + 1
        if self.delta_exact and st.side == nxt.side and st.side in ("right", "left"):
            # the next step contracts the changed rank row: add core[rank] @ (row change) to its
            # cached accumulator (n_{k+-1} terms instead of r*n_{k+-1}), exact in integers
            rst = rplan[s + 1]
            A = core_matrix(cores[nxt.core], rst, self._rq[i][s + 1][0] if self.fixed else 1.0)
            n = shape.in_modes[nxt.core]
            if st.side == "right":     # K = (r_{k+1}, n_{k+1}); row (P, n_{k+1}, C'B)
                Av = A.reshape(rst.R, -1, n)[:, rho1, :].transpose(1, 0, 2)
            else:                      # K = (n_{k-1}, r_k);     row (P', n_{k-1}, C'B)
                Av = A.reshape(rst.R, n, -1)[:, :, rho1].transpose(2, 0, 1)
            mr = (m, rho1) if st.side == "right" else (rho1, m)         # rows (m_k, r_k+1) / (r_k, m_k)
            d = (row - full[(slice(None),) + mr].transpose(1, 0, 2)).reshape(Q, rst.P, n, rst.C * B)
            acc = np.matmul(Av[:, None], d).reshape(Q, -1)
            acc += restrict(lc.accs[s + 1], state_axes(shape, spec.contraction, s + 2), {f"m{k}": m})
            state = self._finish(i, acc, s + 1)
            start = s + 2
        else:
            state = restricted_base()
            state[qi, :, rho1] = row
        for j in range(start, len(steps)):
            rst = rplan[j]
            a2 = absorb(core_matrix(cores[rst.core], rst, self._rq[i][j][0] if self.fixed else 1.0), state, rst, B)
            if j == len(steps) - 1:
                a2 = a2.reshape(Q, -1, B)
                bsl = np.moveaxis(bias.reshape(shape.out_modes), k, 0)[m].reshape(Q, -1)
                a2 += (bsl * (self._bias_scale[i] if self.fixed else 1.0))[:, :, None]
            state = self._finish(i, a2, j)
        y = self._last_act(i, state.reshape(Q, -1, B))
        return y.reshape(Q, -1, B), m                                       # outputs at m_k = m
