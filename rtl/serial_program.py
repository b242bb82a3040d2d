"""Golden TTNet + FixedConfig -> the serial engine's program: constant loop nests, one MAC a cycle.

The serial design (docs/rtl-serial.md) fixes every loop bound at elaboration time, so the
network is compiled here into a list of absorption *steps*, each one odometer (mixed-radix
counter) whose levels are, innermost first, two contracted levels (the inner product of
length K, padded with count-1 levels) and the output levels.  Every level adds a constant
delta to two running addresses: the operand (state element, or pixel index on the first
step) and the flat parameter index of the TT-core entry.  Outputs are produced, and written,
in loop order: the destination address is a plain counter, so each step's output layout is
the order its loops run in (chosen here, per layer, to need the fewest levels); a layer's last
step runs over (m_1..m_L) row-major, so its outputs are the natural y order (bias index = counter).

Arithmetic (docs/fixed-point.md sections 2 and 5, bit for bit): the accumulator starts at the
rounding constant 2^(shift-1); a layer's last step adds the bias as one more product
(bias * 2^a_shift, shifted left by bshift - a_shift) before its K MACs; the result is
clamp(acc >> shift, lo, hi) with lo = 0 for ReLU layers.  `emulate` runs a program in numpy
with exactly this addressing and arithmetic.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import permutations
from math import prod

import numpy as np

from ..golden.fixed import FormatError, QFormat, accumulator_bits
from ..golden.formats import FixedConfig
from ..golden.network import TTNet

#: Largest power-of-two bias multiplier that is a signed 16-bit operand.
MAX_A_SHIFT = 14
#: Odometer levels of the inner product (levels 0 and 1).
K_LEVELS = 2
#: Output orders tried per step (permutations of up to this many output axes).
MAX_PERM_AXES = 6


@dataclass(frozen=True)
class SerialStep:
    """One absorption step: an odometer (level 0 innermost) and its per-step constants."""

    layer: int
    src: str                 # "pixels", "a" or "b"
    dst: str                 # "a", "b" or "out"
    last: bool               # a layer's last step: bias term first, result in `act`
    counts: tuple[int, ...]  # per level; levels 0, 1 are the inner product
    src_delta: tuple[int, ...]
    w_delta: tuple[int, ...]
    w_base: int              # flat index of the core's first entry
    b_base: int              # flat index of the layer's bias (last steps)
    shift: int               # accumulator fraction - output fraction
    a_shift: int             # bias term: bias * 2^a_shift through the multiplier ...
    b_extra: int             # ... then shifted left by bshift - a_shift
    lo: int                  # clamp bounds of the result (lo = 0 after a ReLU)
    hi: int
    note: str = ""

    @property
    def k_len(self) -> int:
        return self.counts[0] * self.counts[1]

    @property
    def n_out(self) -> int:
        return prod(self.counts) // self.k_len

    @property
    def round_const(self) -> int:
        return 1 << (self.shift - 1) if self.shift > 0 else 0

    @property
    def macs(self) -> int:
        return prod(self.counts)


@dataclass(frozen=True)
class SerialProgram:
    steps: tuple[SerialStep, ...]
    n_params: int
    n_in: int
    out_features: int
    acc_bits: int            # exact accumulator width (signed), rounding constant included

    @property
    def levels(self) -> int:
        return len(self.steps[0].counts)

    @property
    def state_depth(self) -> int:
        """Largest state buffer (elements one step writes to a or b)."""
        return max([s.n_out for s in self.steps if s.dst != "out"], default=1)

    @property
    def macs(self) -> int:
        """Multiply-accumulates per sample (bias terms not counted)."""
        return sum(s.macs for s in self.steps)

    def cycles(self) -> int:
        """Engine cycles per sample while busy, o.ready high whenever o.valid (rtl/serial_engine.py):

            sum over steps s of (1 + n_out_s * (K_s + last_s)) + 6 * (n_steps - 1) + 6 * out_features

        one set-up cycle a step, one cycle a MAC, one bias term per output of a layer's last step,
        a 6-cycle pipeline drain after every step but the final one, and one after every logit
        (each logit is accepted before the next one's terms are issued).  mnist_tt(6): 367,192.
        """
        body = sum(1 + s.n_out * (s.k_len + int(s.last)) for s in self.steps)
        return body + 6 * (len(self.steps) - 1) + 6 * self.out_features


# ------------------------------------------------------------------------------------------------
# Compilation
# ------------------------------------------------------------------------------------------------

def check_config(net: TTNet, cfg: FixedConfig) -> None:
    """Refuse what the serial datapath cannot compute exactly (FormatError with the reason)."""
    inp = cfg.input
    if inp.signed or inp.bits != 8:
        raise FormatError(f"serial engine: input format {inp} must be u8.F (pixel bytes, zero-extended)")
    for name in ("weight", "bias", "state", "act"):
        f: QFormat = getattr(cfg, name)
        if not f.signed or f.bits > 16:
            raise FormatError(f"serial engine: {name} format {f} must be signed and at most 16 bits "
                              "(16-bit memories, one 16 x 16 signed multiplier)")
    for i, spec in enumerate(net.layers):
        if spec.activation not in ("identity", "relu"):
            raise FormatError(f"serial engine: layer {i} activation {spec.activation!r} is not supported "
                              "(identity or relu only; no sine table)")


def _deltas(counts: list[int], strides: list[int]) -> list[int]:
    """Odometer delta of each level (0 innermost): its stride minus the lower levels' wrap-around."""
    return [strides[i] - sum((counts[j] - 1) * strides[j] for j in range(i)) for i in range(len(counts))]


def _merge(axes: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """Merge neighbours (outer first) of (size, src stride, w stride) that form one longer axis."""
    out: list[tuple[int, int, int]] = []
    for ax in axes:
        if ax[0] == 1:
            continue
        if out and out[-1][1] == ax[1] * ax[0] and out[-1][2] == ax[2] * ax[0]:
            prev = out.pop()
            ax = (prev[0] * ax[0], ax[1], ax[2])
        out.append(ax)
    return out


def _strides(layout: list[tuple[str, int]]) -> dict[str, int]:
    return {name: prod(s for _, s in layout[i + 1:]) for i, (name, _) in enumerate(layout)}


def _layer_plan(shape, order) -> list[dict]:
    """Per step: contracted axis names, new axes {name: (size, core stride)}, and the axis sizes."""
    r, n, m = shape.ranks, shape.in_modes, shape.out_modes
    plan = []
    for step in shape.steps(order):
        k = step.core
        cs = {"r": n[k] * m[k] * r[k + 1], "n": m[k] * r[k + 1], "m": r[k + 1], "r'": 1}
        if step.side == "first":
            con = {f"n{k}": cs["n"]}
            new = {"rl": (r[k], cs["r"]), f"m{k}": (m[k], cs["m"]), "rr": (r[k + 1], cs["r'"])}
        elif step.side == "right":
            con = {f"n{k}": cs["n"], "rr": cs["r"]}
            new = {f"m{k}": (m[k], cs["m"]), "rr": (r[k + 1], cs["r'"])}
        else:
            con = {f"n{k}": cs["n"], "rl": cs["r'"]}
            new = {"rl": (r[k], cs["r"]), f"m{k}": (m[k], cs["m"])}
        plan.append({"core": k, "con": con, "new": new})
    return plan


def _levels(in_layout: list[tuple[str, int]], con: dict[str, int], new: dict[str, tuple[int, int]],
            out_order: list[tuple[str, int]]) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
    """Merged (output levels, contracted levels), outer first, as (size, src stride, w stride)."""
    st = _strides(in_layout)
    sizes = dict(in_layout)
    outs = [(s, 0, new[a][1]) if a in new else (s, st[a], 0) for a, s in out_order]
    best = None
    for perm in permutations(con):
        ks = _merge([(sizes.get(a, 1), st.get(a, 0), con[a]) for a in perm])   # size-1 axes are not laid out
        if best is None or len(ks) < len(best):
            best = ks
    return _merge(outs), best


def _choose_orders(plan: list[dict], in_layout: list[tuple[str, int]], final: list[tuple[str, int]]
                   ) -> list[list[tuple[str, int]]]:
    """Output order of every step of a layer (the last one is `final`) with the fewest output levels
    (smallest maximum, then smallest sum), by dynamic programming over the steps."""
    # candidates per step: permutations of its output axes (size > 1)
    cand: list[list[list[tuple[str, int]]]] = []
    sizes = dict(in_layout)
    for i, st in enumerate(plan):
        kept = [(a, s) for a, s in sizes.items() if a not in st["con"]]
        outs = [(a, s) for a, s in kept if s > 1] + [(a, v[0]) for a, v in st["new"].items() if v[0] > 1]
        if i == len(plan) - 1:
            cand.append([final])
        elif len(outs) <= MAX_PERM_AXES:
            cand.append([list(p) for p in permutations(outs)])
        else:
            cand.append([outs])
        sizes = {a: s for a, s in kept}
        sizes.update({a: v[0] for a, v in st["new"].items()})
    # best[j] = ((max, sum), chain of layouts) for candidate j of the current step
    prev = [((0, 0), [])]
    prev_layouts = [in_layout]
    for i, st in enumerate(plan):
        cur = []
        for out in cand[i]:
            best = None
            for (cost, chain), lay in zip(prev, prev_layouts):
                o, _ = _levels(lay, st["con"], st["new"], out)
                c = (max(cost[0], len(o)), cost[1] + len(o))
                if best is None or c < best[0]:
                    best = (c, chain + [out])
            cur.append(best)
        prev, prev_layouts = cur, cand[i]
    return min(prev, key=lambda t: t[0])[1]


def compile_serial(net: TTNet, cfg: FixedConfig) -> SerialProgram:
    """The serial engine's program for `net` with formats `cfg` (see module docstring)."""
    check_config(net, cfg)
    offs = np.cumsum([0] + net.param_sizes())
    raw: list[dict] = []
    block = 0
    acc_bits = 2
    for li, spec in enumerate(net.layers):
        shape = spec.shape
        L = shape.L
        natural = [(f"n{j}", s) for j, s in enumerate(shape.in_modes)]
        final = [(f"m{j}", s) for j, s in enumerate(shape.out_modes) if s > 1]
        plan = _layer_plan(shape, spec.contraction)
        orders = _choose_orders(plan, [(a, s) for a, s in natural], final)
        layout = [(a, s) for a, s in natural]
        b_base = int(offs[block + L])
        fmt_in = cfg.input if li == 0 else cfg.act
        for si, (st, out) in enumerate(zip(plan, orders)):
            last = si == len(plan) - 1
            o_lv, k_lv = _levels(layout, st["con"], st["new"], out)
            k_lv = [(1, 0, 0)] * (K_LEVELS - len(k_lv)) + k_lv
            lv = list(reversed(o_lv + k_lv))   # level 0 innermost
            acc_frac = fmt_in.frac + cfg.weight.frac
            out_fmt = cfg.act if last else cfg.state
            shift = acc_frac - out_fmt.frac
            bshift = acc_frac - cfg.bias.frac if last else 0
            if shift < 0 or bshift < 0:
                raise FormatError(f"layer {li} step {si}: negative shift (accumulator fraction {acc_frac})")
            K = lv[0][0] * lv[1][0]
            extra = cfg.bias.magnitude_bits + bshift if last else 0
            acc_bits = max(acc_bits, max(accumulator_bits(fmt_in, cfg.weight, K, extra), shift + 1) + 1)
            lo = 0 if last and spec.activation == "relu" else out_fmt.min_code
            raw.append(dict(layer=li, last=last, levels=lv, w_base=int(offs[block + st["core"]]), b_base=b_base,
                            shift=shift, a_shift=min(bshift, MAX_A_SHIFT), b_extra=max(bshift - MAX_A_SHIFT, 0),
                            lo=lo, hi=out_fmt.max_code,
                            note=f"layer {li} step {si}: core {st['core']} K={K} outputs={prod(s for _, s in out)}"))
            layout = out
            fmt_in = cfg.state
        block += L + 1
    n_levels = max(len(r["levels"]) for r in raw)
    steps = []
    src = "pixels"
    for i, r in enumerate(raw):
        lv = r.pop("levels")
        lv = lv + [(1, 0, 0)] * (n_levels - len(lv))
        counts = [a[0] for a in lv]
        dst = "out" if i == len(raw) - 1 else ("a" if src != "a" else "b")
        steps.append(SerialStep(src=src, dst=dst, counts=tuple(counts),
                                src_delta=tuple(_deltas(counts, [a[1] for a in lv])),
                                w_delta=tuple(_deltas(counts, [a[2] for a in lv])), **r))
        src = dst
    return SerialProgram(tuple(steps), net.n_params, net.in_features, net.out_features, acc_bits)


# ------------------------------------------------------------------------------------------------
# Reference execution with the engine's addressing and arithmetic
# ------------------------------------------------------------------------------------------------

def addresses(step: SerialStep, delta: tuple[int, ...]) -> np.ndarray:
    """The running address of every MAC of `step`: the odometer adds delta[level incremented]."""
    n = step.macs
    t = np.arange(1, n)
    level = np.zeros(n - 1, dtype=np.int64)
    radix = 1
    for c in step.counts[:-1]:
        radix *= c
        level += (t % radix == 0)
    d = np.asarray(delta, dtype=np.int64)
    return np.concatenate([[0], np.cumsum(d[level])])


def pack_pixels(pixels: np.ndarray) -> np.ndarray:
    """u8 pixels -> 16-bit bulk words, pixel i in byte i % 2 (low byte first) of word i // 2."""
    p = np.asarray(pixels, dtype=np.int64)
    p = np.concatenate([p, np.zeros(len(p) % 2, np.int64)])
    return p[0::2] | (p[1::2] << 8)


def emulate(prog: SerialProgram, work_codes: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """Logits (act codes) of one sample (pixels: n_in u8 codes) or a batch (B, n_in)."""
    px = np.asarray(pixels, dtype=np.int64)
    if px.ndim == 2:
        return np.stack([emulate(prog, work_codes, row) for row in px])
    work = np.asarray(work_codes, dtype=np.int64)
    if work.shape != (prog.n_params,) or px.shape != (prog.n_in,):
        raise ValueError(f"need {prog.n_params} parameter codes and {prog.n_in} pixels")
    if px.min() < 0 or px.max() > 255:
        raise ValueError("pixels must be u8 codes")
    words = pack_pixels(px)
    bufs: dict[str, np.ndarray] = {}
    for st in prog.steps:
        sa = addresses(st, st.src_delta)
        wa = st.w_base + addresses(st, st.w_delta)
        if st.src == "pixels":
            a = (words[sa >> 1] >> (8 * (sa & 1))) & 0xFF
        else:
            a = bufs[st.src][sa]
        acc = (a * work[wa]).reshape(st.n_out, st.k_len).sum(axis=1) + st.round_const
        if st.last:
            bias = work[st.b_base:st.b_base + st.n_out]
            acc = acc + ((bias * (1 << st.a_shift)) << st.b_extra)
        bufs[st.dst] = np.clip(acc >> st.shift, st.lo, st.hi)
    return bufs["out"]
