"""Golden TTNet + FixedConfig -> the TT engine's program: step descriptors and memory images.

This is the ONE place where the golden model is translated for the hardware (docs/rtl.md).

The engine (rtl/tt_engine.py) runs a *program*: a header (how to scatter the input stream
into the first layer's state layout, how many outputs to stream back) and one descriptor per
absorption step of every layer.  Every step is the same computation:

    for each group g of P state rows f (one per lane), for each core column c,
        acc[lane] = sum over kk < K of S[f, kk] * G[gaddr(c, kk)]       (exact)
        result    = sat(round_half_up((acc [+ bias << bshift]) >> shift)) [-> activation]
        written to the next step's layout at (f', kk') = linear functions of (f, c)

A state buffer holds a logical matrix S[F, K] (K = the next step's contracted axes, k1-major)
in wide words of P lanes: element (f, kk) lives in word (f >> log2 P) * K + kk, lane f % P.
All index arithmetic is "odometers": nested counters whose per-level *deltas* (precomputed
here from strides) are added to running sums, so the hardware needs adders only, plus one
multiply by K' when writing.  Shapes, orders, shifts and saturation bounds are run-time
data; widths and maxima (EngineParams) are elaboration-time.

`emulate()` executes a program with exactly the hardware's address arithmetic in numpy; the
tests check it (fast) and the RTL (cocotb) against golden's fixed-point forward.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from math import prod
from typing import Sequence

import numpy as np
from amaranth.hdl import signed, unsigned
from amaranth.lib import data

from ..golden.activations import sine_constant, sine_table
from ..golden.fixed import FormatError, QFormat, accumulator_bits
from ..golden.formats import FixedConfig
from ..golden.network import Params, TTNet

# Buffer codes used in the `src`/`dst` descriptor fields.
BUF_IN, BUF_A, BUF_B, BUF_OUT = 0, 1, 2, 3
ACT_CODES = {"identity": 0, "relu": 1, "sine": 2}
SINE_SHIFT = 24
#: Odometer sums of the MAC loop: state word offset, core address, write f', write kk', bias index.
MAC_SUMS = ("s", "g", "wf", "wk", "wb")
#: Levels of the MAC odometer: k2 (inner), k1, then up to 4 core-column levels.
K_LEVELS = 2


# ------------------------------------------------------------------------------------------------
# Elaboration-time parameters and the descriptor layouts they imply
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EngineParams:
    """Elaboration-time widths and maxima of the engine (one bitstream = one EngineParams)."""

    lanes: int = 1              # P MAC lanes (power of two)
    data_bits: int = 20         # signed width of every state/activation/input code in the buffers
    weight_bits: int = 16       # signed TT-core code width
    bias_bits: int = 16         # signed bias code width
    acc_bits: int = 48          # exact accumulator width
    buf_elems: int = 16384      # elements of each ping-pong state buffer (A, B), lane padding included
    in_elems: int = 1024        # elements of the input buffer (layer-0 input)
    out_elems: int = 1024       # elements of the output buffer
    core_words: int = 8192      # TT-core codes, all layers
    bias_words: int = 2048      # bias codes, all layers
    sine_bits: int = 12         # largest sine phase width (table of 2**sine_bits codes)
    max_steps: int = 16         # absorption steps of the whole program (all layers)
    c_levels: int = 4           # core-column odometer levels
    f_levels: int = 6           # state-row odometer levels (write scatter)
    x_levels: int = 6           # input-scatter odometer levels
    addr_bits: int = 20         # signed width of odometer deltas/sums
    count_bits: int = 16        # width of odometer level counts and sizes
    drains: int = 1             # results the drain writes per cycle (1, or 2: two write ports per buffer)
    sine_interp_bits: int = 0   # E > 0: the drain can also interpolate the sine table (golden hjb.sine_fixed_interp,
                                # E extra phase bits; a second sine read port, one multiply); 0: table sine only

    def __post_init__(self) -> None:
        if self.lanes < 1 or self.lanes & (self.lanes - 1):
            raise ValueError(f"lanes={self.lanes}: must be a power of two")
        if self.drains not in (1, 2) or self.lanes % self.drains:
            raise ValueError(f"drains={self.drains}: must be 1 or 2 and divide lanes={self.lanes}")
        for name in ("buf_elems", "in_elems", "out_elems"):
            if getattr(self, name) % self.lanes:
                raise ValueError(f"{name}={getattr(self, name)} must be a multiple of lanes={self.lanes}")

    @property
    def lane_bits(self) -> int:
        return (self.lanes - 1).bit_length()

    @property
    def mac_levels(self) -> int:
        return K_LEVELS + self.c_levels

    def step_layout(self) -> data.StructLayout:
        a, c = signed(self.addr_bits), unsigned(self.count_bits)
        return data.StructLayout({
            "src": unsigned(2), "dst": unsigned(2), "last": unsigned(1), "act": unsigned(2),
            "n_groups": c, "n_f": c, "k_len": c, "knext": c,
            "gbase": unsigned(16), "bbase": unsigned(16),
            "shift": unsigned(6), "bshift": unsigned(6),
            "sat_lo": signed(self.data_bits), "sat_hi": signed(self.data_bits),
            "sine_c": unsigned(40), "sine_mask": unsigned(16),
            "mac_count": data.ArrayLayout(c, self.mac_levels),
            "mac_delta": data.ArrayLayout(data.ArrayLayout(a, len(MAC_SUMS)), self.mac_levels),
            "f_count": data.ArrayLayout(c, self.f_levels),
            "f_delta": data.ArrayLayout(data.ArrayLayout(a, 3), self.f_levels),
            # interpolating builds only (the default layout is unchanged): phase shift S' - E, 0 = table sine
            **({"sine_shift": unsigned(6)} if self.sine_interp_bits else {}),
        })

    def header_layout(self) -> data.StructLayout:
        a, c = signed(self.addr_bits), unsigned(self.count_bits)
        return data.StructLayout({
            "n_steps": unsigned(8), "n_in": c, "n_out": c, "x_knext": c,
            "x_count": data.ArrayLayout(c, self.x_levels),
            "x_delta": data.ArrayLayout(data.ArrayLayout(a, 2), self.x_levels),
        })

    @staticmethod
    def chunks(layout: data.Layout) -> int:
        """32-bit bus words one record occupies."""
        return (layout.size + 31) // 32

    @property
    def step_stride_bits(self) -> int:
        """Step s occupies bus words s << step_stride_bits .. (+ chunks - 1) of the step region."""
        return (self.chunks(self.step_layout()) - 1).bit_length()


# ------------------------------------------------------------------------------------------------
# Axes, strides and odometer deltas
# ------------------------------------------------------------------------------------------------

@dataclass
class Axis:
    """One loop level: its size and its stride into each address it drives."""

    name: str
    size: int
    strides: dict[str, int] = field(default_factory=dict)

    def st(self, key: str) -> int:
        return self.strides.get(key, 0)


def merge_axes(axes: list[Axis], keys: Sequence[str]) -> list[Axis]:
    """Merge neighbours (outer a, inner b) whose strides satisfy a = b * size(b) for every key."""
    out: list[Axis] = []
    for ax in axes:
        if ax.size == 1:
            continue
        if out and all(out[-1].st(k) == ax.st(k) * ax.size for k in keys):
            prev = out.pop()
            ax = Axis(f"{prev.name}*{ax.name}", prev.size * ax.size, dict(ax.strides))
        out.append(ax)
    return out


def deltas(axes_outer_to_inner: list[Axis], keys: Sequence[str], levels: int, what: str
           ) -> tuple[list[int], list[list[int]]]:
    """Odometer counts and deltas, level 0 innermost, padded to `levels` with count-1 levels."""
    inner = list(reversed(axes_outer_to_inner))
    if len(inner) > levels:
        raise FormatError(f"{what}: needs {len(inner)} loop levels, the engine has {levels} "
                          f"(EngineParams)")
    counts, dl = [], []
    for i, ax in enumerate(inner):
        counts.append(ax.size)
        dl.append([ax.st(k) - sum((b.size - 1) * b.st(k) for b in inner[:i]) for k in keys])
    while len(counts) < levels:
        counts.append(1)
        dl.append([0] * len(keys))
    return counts, dl


def refine(outer: Sequence[int], inner: Sequence[int], what: str) -> list[int]:
    """Common refinement of two row-major foldings of the same size (fine sizes, outer first)."""
    def strides(modes: Sequence[int]) -> set[int]:
        return {prod(modes[i:]) for i in range(len(modes) + 1)}
    u = sorted(strides(outer) | strides(inner), reverse=True)
    for a, b in zip(u, u[1:]):
        if a % b:
            raise FormatError(f"{what}: foldings {tuple(outer)} and {tuple(inner)} have no common "
                              "refinement; the engine needs every boundary of one to divide the other")
    return [a // b for a, b in zip(u, u[1:])]


def split_axis(ax: Axis, sizes: list[int], names: list[str]) -> list[Axis]:
    """Split an axis into sub-axes (outer first) of the given sizes, scaling its strides."""
    out = []
    for i, (s, nm) in enumerate(zip(sizes, names)):
        inner = prod(sizes[i + 1:])
        out.append(Axis(nm, s, {k: v * inner for k, v in ax.strides.items()}))
    return out


# ------------------------------------------------------------------------------------------------
# The program
# ------------------------------------------------------------------------------------------------

@dataclass
class StepDesc:
    """One absorption step as run-time fields (see docs/rtl.md, "Descriptor format")."""

    src: int
    dst: int
    last: int
    act: int
    n_groups: int
    n_f: int
    k_len: int
    knext: int
    gbase: int
    bbase: int
    shift: int
    bshift: int
    sat_lo: int
    sat_hi: int
    sine_c: int
    sine_mask: int
    mac_count: list[int]
    mac_delta: list[list[int]]
    f_count: list[int]
    f_delta: list[list[int]]
    # documentation only (not written to hardware)
    note: str = ""
    macs: int = 0
    sine_shift: int = 0     # interpolated sine: round-half-up shift of the phase product (0: table sine)

    def fields(self) -> dict:
        out = {k: getattr(self, k) for k in ("src", "dst", "last", "act", "n_groups", "n_f", "k_len", "knext",
                                             "gbase", "bbase", "shift", "bshift", "sat_lo", "sat_hi",
                                             "sine_c", "sine_mask", "mac_count", "mac_delta", "f_count",
                                             "f_delta")}
        if self.sine_shift:   # only interpolating builds have the field
            out["sine_shift"] = self.sine_shift
        return out


@dataclass
class Program:
    """Everything the engine needs for one network: header, steps, memory images."""

    params: EngineParams
    header: dict
    steps: list[StepDesc]
    cores: np.ndarray      # int64 core codes, flat order, all layers
    biases: np.ndarray     # int64 bias codes, all layers
    sine: np.ndarray       # int64 sine table codes (may be empty)
    in_features: int
    out_features: int
    macs_per_sample: int

    # --- bus images: (address, 32-bit word) pairs ------------------------------------------------
    def bus_writes(self) -> list[tuple[int, int]]:
        """Every configuration write (docs/rtl.md, "Memory map") as (address, data) pairs."""
        p = self.params
        w: list[tuple[int, int]] = []
        hl, sl = p.header_layout(), p.step_layout()
        w += [(region_addr(REGION_HEADER, i), v) for i, v in enumerate(pack_words(hl, self.header))]
        for s, st in enumerate(self.steps):
            w += [(region_addr(REGION_STEPS, (s << p.step_stride_bits) + i), v)
                  for i, v in enumerate(pack_words(sl, st.fields()))]
        w += _mem_writes(REGION_CORES, self.cores, p.weight_bits)
        w += _mem_writes(REGION_BIASES, self.biases, p.bias_bits)
        w += _mem_writes(REGION_SINE, self.sine, p.data_bits)
        return w


REGION_HEADER, REGION_STEPS, REGION_CORES, REGION_BIASES, REGION_SINE = 0, 1, 2, 3, 4
REGION_SHIFT = 20


def _sine_mode(cfg: FixedConfig, params: EngineParams, sine: str) -> tuple[int, int]:
    """(sine_c, sine_shift) of the sine steps: the table sine's constant and 0, or the interpolated sine's."""
    if sine == "table":
        return sine_constant(cfg.act.frac, cfg.sine_bits), 0
    if sine != "interp":
        raise ValueError(f"sine mode {sine!r}: choose 'table' or 'interp'")
    from ..golden.hjb import INTERP_BITS, interp_phase_shift
    if params.sine_interp_bits != INTERP_BITS:
        raise FormatError(f"the interpolated sine needs an engine built with sine_interp_bits={INTERP_BITS} "
                          f"(this one has {params.sine_interp_bits})")
    shift = interp_phase_shift(cfg.act.frac, cfg.sine_bits)
    c = int(np.floor(2.0 ** (shift + cfg.sine_bits - cfg.act.frac) / (2 * np.pi) + 0.5))
    if not 1 <= shift - INTERP_BITS < 64:
        raise FormatError(f"interpolated sine: phase shift {shift - INTERP_BITS} outside 1..63 for act {cfg.act}")
    return c, shift - INTERP_BITS


def region_addr(region: int, offset: int) -> int:
    return (region << REGION_SHIFT) | offset


def _mem_writes(region: int, codes: np.ndarray, bits: int) -> list[tuple[int, int]]:
    mask = (1 << bits) - 1
    return [(region_addr(region, i), int(v) & mask) for i, v in enumerate(np.asarray(codes).reshape(-1))]


def pack_words(layout: data.StructLayout, values: dict) -> list[int]:
    """A record as 32-bit little-endian chunks (the bus write order)."""
    raw = layout.const(values).as_value().value
    return [(raw >> (32 * i)) & 0xFFFFFFFF for i in range(EngineParams.chunks(layout))]


def _check_fits(value: int, bits: int, is_signed: bool, what: str) -> None:
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if is_signed else (0, (1 << bits) - 1)
    if not lo <= value <= hi:
        raise FormatError(f"{what}={value} does not fit the engine's {bits}-bit field (EngineParams)")


def _check_format(fmt: QFormat, bits: int, what: str) -> None:
    if fmt.signed and fmt.bits > bits or not fmt.signed and fmt.bits > bits - 1:
        raise FormatError(f"{what} format {fmt} does not fit the engine's {bits}-bit signed codes")


def compile_network(net: TTNet, codes: Params, cfg: FixedConfig, params: EngineParams, sine: str = "table"
                    ) -> Program:
    """Translate a golden network (with quantised parameters) into an engine program.

    `sine` "table" is the contract's table sine (golden/activations.py); "interp" the interpolated
    table sine of the PINN path (golden/hjb.sine_fixed_interp), for builds with sine_interp_bits.
    """
    sine_c_of, sine_shift = _sine_mode(cfg, params, sine)
    P = params.lanes
    _check_format(cfg.input, params.data_bits, "input")
    _check_format(cfg.state, params.data_bits, "state")
    _check_format(cfg.act, params.data_bits, "act")
    _check_format(cfg.weight, params.weight_bits, "weight")
    _check_format(cfg.bias, params.bias_bits, "bias")
    if any(spec.activation == "sine" for spec in net.layers):
        if cfg.sine_bits > params.sine_bits:
            raise FormatError(f"sine_bits={cfg.sine_bits} exceeds the engine's table of 2**{params.sine_bits}")
        sine = np.asarray(sine_table(cfg.act.frac, cfg.sine_bits), dtype=np.int64)
    else:
        sine = np.zeros(0, dtype=np.int64)

    steps: list[StepDesc] = []
    core_codes: list[np.ndarray] = []
    bias_codes: list[np.ndarray] = []
    gpos = bpos = 0
    header: dict = {}
    buf = BUF_IN
    n_layers = len(net.layers)
    for li, (spec, (cores, bias)) in enumerate(zip(net.layers, codes)):
        shape, order = spec.shape, spec.contraction
        L = shape.L
        fmt_in = cfg.input if li == 0 else cfg.act
        sizes = {f"n{j}": shape.in_modes[j] for j in range(L)}
        layer_steps = shape.steps(order)
        # layout of the state before step 0: K = the first core's n-axis, F = the others
        k0 = order[0]
        f_axes = [f"n{j}" for j in range(L) if j != k0]
        k_axes = [f"n{k0}"]
        if li == 0:
            x_axes = [Axis(f"n{j}", shape.in_modes[j]) for j in range(L)]
            _set_write_strides(x_axes, f_axes, k_axes, sizes)
            xc, xd = deltas(merge_axes(x_axes, ("wf", "wk")), ("wf", "wk"), params.x_levels, "input scatter")
            if shape.in_features > params.in_elems:
                raise FormatError(f"input of {shape.in_features} features exceeds in_elems={params.in_elems}")
            header = {"n_in": shape.in_features, "x_count": xc, "x_delta": xd, "x_knext": sizes[f"n{k0}"]}
        base_g = gpos
        for c in cores:
            core_codes.append(np.asarray(c, dtype=np.int64).reshape(-1))
        offs = np.cumsum([0] + [int(np.prod(cs)) for cs in shape.core_shapes])
        gpos += int(offs[-1])
        bias_codes.append(np.asarray(bias, dtype=np.int64).reshape(-1))
        base_b = bpos
        bpos += shape.out_features

        frac_in = fmt_in.frac
        for si, step in enumerate(layer_steps):
            k = step.core
            last = si == len(layer_steps) - 1
            r0, n, m, r1 = shape.core_shapes[k]
            sG = {"r": n * m * r1, "n": m * r1, "m": r1, "r'": 1}
            # contracted axes (k1 outer, k2 inner) and their core strides; new axes and core strides
            if step.side == "first":
                con = [(f"n{k}", sG["n"])]
                new = [("rl", r0, sG["r"]), (f"m{k}", m, sG["m"]), ("rr", r1, sG["r'"])]
            elif step.side == "right":
                con = [(f"n{k}", sG["n"]), ("rr", sG["r"])]
                new = [(f"m{k}", m, sG["m"]), ("rr", r1, sG["r'"])]
            else:
                con = [(f"n{k}", sG["n"]), ("rl", sG["r'"])]
                new = [("rl", r0, sG["r"]), (f"m{k}", m, sG["m"])]
            if [a for a, _ in con] != list(k_axes):
                raise AssertionError(f"layout mismatch: state K axes {k_axes}, step contracts {con}")
            K = prod(sizes[a] for a in k_axes)
            F = prod(sizes[a] for a in f_axes)
            # sizes after the step
            new_sizes = {a: s for a, s in sizes.items() if a not in k_axes}
            for a, s, _ in new:
                new_sizes[a] = s
            out_axes_names = list(f_axes) + [a for a, _, _ in new]
            # the next layout (or the output / next layer's input layout)
            mac_c_axes = [Axis(a, s, {"g": g}) for a, s, g in new]
            f_ax = [Axis(a, sizes[a]) for a in f_axes]
            if not last:
                nxt = layer_steps[si + 1]
                kk = nxt.core
                nk_axes = [f"n{kk}", "rr" if nxt.side == "right" else "rl"]
                nf_axes = [a for a in out_axes_names if a not in nk_axes]
                _set_write_strides(f_ax + mac_c_axes, nf_axes, nk_axes, new_sizes)
                knext = prod(new_sizes[a] for a in nk_axes)
                fnext = prod(new_sizes[a] for a in nf_axes)
                dst = BUF_A if buf != BUF_A else BUF_B
                cap = params.buf_elems // P
            else:
                # output y: row-major over m-axes (ranks are 1 now); bias index = y
                m_sizes = list(shape.out_modes)
                ystr = {f"m{j}": prod(m_sizes[j + 1:]) for j in range(L)}
                for ax in f_ax + mac_c_axes:
                    ax.strides["wb"] = ystr.get(ax.name, 0)
                if li == n_layers - 1:
                    for ax in f_ax + mac_c_axes:
                        ax.strides["wf"] = ystr.get(ax.name, 0)
                    knext, fnext, dst, cap = 1, shape.out_features, BUF_OUT, params.out_elems // P
                    nk_axes, nf_axes = [], []
                else:
                    nshape = net.layers[li + 1].shape
                    nk0 = net.layers[li + 1].contraction[0]
                    fine = refine(shape.out_modes, nshape.in_modes, f"layer {li}->{li + 1}")
                    f_ax, mac_c_axes = _split_to_fine(f_ax, mac_c_axes, m_sizes, fine)
                    nsz = {f"n{j}": nshape.in_modes[j] for j in range(nshape.L)}
                    nk_axes = [f"n{nk0}"]
                    nf_axes = [f"n{j}" for j in range(nshape.L) if j != nk0]
                    nstr_f = {a: prod(nsz[b] for b in nf_axes[i + 1:]) for i, a in enumerate(nf_axes)}
                    fine_str = [prod(fine[i + 1:]) for i in range(len(fine))]
                    nmodes = list(nshape.in_modes)
                    n_str = [prod(nmodes[j + 1:]) for j in range(nshape.L)]
                    for ax in f_ax + mac_c_axes:
                        i = int(ax.name.split("#")[1])
                        j = _owner(fine, nmodes, i)
                        scale = fine_str[i] // n_str[j]
                        nm = f"n{j}"
                        ax.strides["wf"] = scale * nstr_f[nm] if nm in nstr_f else 0
                        ax.strides["wk"] = scale if nm in nk_axes else 0
                    knext = nsz[f"n{nk0}"]
                    fnext = prod(nsz[a] for a in nf_axes)
                    dst = BUF_A if buf != BUF_A else BUF_B
                    cap = params.buf_elems // P
            keys_w = ("wf", "wk", "wb")
            groups = -(-F // P)
            words_in = groups * K
            need = -(-fnext // P) * knext
            if need > cap:
                raise FormatError(f"layer {li} step {si}: result needs {need} words of {P} lanes, "
                                  f"the buffer holds {cap}")
            # MAC odometer: outer..inner = c axes, k1, k2
            k_list = [Axis(a, sizes[a], {"g": g}) for a, g in con]
            kstr = [prod(sizes[b] for b in k_axes[i + 1:]) for i in range(len(k_axes))]
            for ax, s in zip(k_list, kstr):
                ax.strides["s"] = s
            while len(k_list) < K_LEVELS:
                k_list.append(Axis("one", 1))
            c_merged = merge_axes(mac_c_axes, ("g",) + keys_w)
            if len(c_merged) > params.c_levels:
                raise FormatError(f"layer {li} step {si}: {len(c_merged)} core-column levels > "
                                  f"c_levels={params.c_levels}")
            c_pad = [Axis("one", 1)] * (params.c_levels - len(c_merged)) + c_merged
            # k axes keep count-1 padding explicitly so 'first'/'last' detection sees exactly 2 levels
            mc, md = deltas(c_pad + k_list, MAC_SUMS, params.mac_levels, f"layer {li} step {si} MAC loop")
            fc, fd = deltas(merge_axes(f_ax, keys_w), keys_w, params.f_levels, f"layer {li} step {si} rows")
            acc_frac = frac_in + cfg.weight.frac
            fmt_in_step = fmt_in if si == 0 else cfg.state
            acc_need = accumulator_bits(fmt_in_step, cfg.weight, K, cfg.bias.bits + acc_frac - cfg.bias.frac
                                        if last else 0)
            if acc_need > params.acc_bits:
                raise FormatError(f"layer {li} step {si}: exact accumulation needs {acc_need} bits, "
                                  f"acc_bits={params.acc_bits}")
            out_fmt = cfg.act if last else cfg.state
            shift = acc_frac - out_fmt.frac
            bshift = acc_frac - cfg.bias.frac if last else 0
            if shift < 0 or bshift < 0:
                raise FormatError(f"layer {li} step {si}: negative shift (acc frac {acc_frac})")
            act = ACT_CODES[spec.activation] if last else 0
            sc = sine_c_of if (last and spec.activation == "sine") else 0
            sd = StepDesc(src=buf, dst=dst, last=int(last), act=act, n_groups=groups, n_f=F, k_len=K,
                          knext=knext, gbase=base_g + int(offs[k]), bbase=base_b, shift=shift, bshift=bshift,
                          sat_lo=out_fmt.min_code, sat_hi=out_fmt.max_code, sine_c=sc,
                          sine_mask=(1 << cfg.sine_bits) - 1 if sc else 0,
                          mac_count=mc, mac_delta=md, f_count=fc, f_delta=fd, sine_shift=sine_shift if sc else 0,
                          note=f"layer {li} step {si}: core {k} {step.side} K={K} F={F} C={step.outputs // F}",
                          macs=step.inner * step.outputs)
            if words_in > (params.in_elems if buf == BUF_IN else params.buf_elems) // P:
                raise FormatError(f"layer {li} step {si}: state of {words_in} words exceeds its buffer")
            for name, bits, sg in (("n_groups", params.count_bits, False), ("n_f", params.count_bits, False),
                                   ("k_len", params.count_bits, False), ("knext", params.count_bits, False),
                                   ("gbase", 16, False), ("bbase", 16, False), ("shift", 6, False),
                                   ("bshift", 6, False)):
                _check_fits(getattr(sd, name), bits, sg, f"layer {li} step {si} {name}")
            for lst in (md, fd):
                for row in lst:
                    for v in row:
                        _check_fits(v, params.addr_bits, True, f"layer {li} step {si} odometer delta")
            for v in mc + fc:
                _check_fits(v, params.count_bits, False, f"layer {li} step {si} level count")
            steps.append(sd)
            buf = dst
            sizes = new_sizes
            f_axes, k_axes = nf_axes, nk_axes
            frac_in = cfg.state.frac
            if last and li < n_layers - 1:
                nshape = net.layers[li + 1].shape
                sizes = {f"n{j}": nshape.in_modes[j] for j in range(nshape.L)}
    if len(steps) > params.max_steps:
        raise FormatError(f"the network has {len(steps)} steps, the engine holds {params.max_steps}")
    cores_all = np.concatenate(core_codes) if core_codes else np.zeros(0, np.int64)
    biases_all = np.concatenate(bias_codes) if bias_codes else np.zeros(0, np.int64)
    if cores_all.size > params.core_words:
        raise FormatError(f"{cores_all.size} core codes exceed core_words={params.core_words}")
    if biases_all.size > params.bias_words:
        raise FormatError(f"{biases_all.size} bias codes exceed bias_words={params.bias_words}")
    if net.out_features > params.out_elems:
        raise FormatError(f"{net.out_features} outputs exceed out_elems={params.out_elems}")
    header["n_steps"] = len(steps)
    header["n_out"] = net.out_features
    return Program(params, header, steps, cores_all, biases_all, sine, net.in_features, net.out_features,
                   net.macs("chosen"))


def _owner(fine: list[int], modes: list[int], i: int) -> int:
    """Index of the coarse mode (row-major `modes`) that fine axis i (row-major `fine`) lies in."""
    outer = prod(fine[:i + 1])  # product of sizes up to and including axis i
    acc = 1
    for j, s in enumerate(modes):
        acc *= s
        if outer <= acc:
            return j
    raise AssertionError("refinement inconsistent")


def _split_to_fine(f_ax: list[Axis], c_ax: list[Axis], m_sizes: list[int], fine: list[int]
                   ) -> tuple[list[Axis], list[Axis]]:
    """Split every m-axis into the fine axes of the refinement; names become 'm{j}#{fine index}'."""
    def split(axes: list[Axis]) -> list[Axis]:
        out: list[Axis] = []
        for ax in axes:
            if ax.size == 1:
                continue
            j = int(ax.name[1:])
            start = prod(m_sizes[:j])
            # fine axes covering this m-axis: those whose outer product lies in (start, start*m_j]
            idx = [i for i in range(len(fine)) if start < prod(fine[:i + 1]) <= start * m_sizes[j]]
            out += split_axis(ax, [fine[i] for i in idx], [f"{ax.name}#{i}" for i in idx])
        return out
    return split(f_ax), split(c_ax)


def _set_write_strides(axes: list[Axis], f_names: list[str], k_names: list[str], sizes: dict[str, int]) -> None:
    """Strides of each axis into the next layout's row index f' and column index kk'."""
    for ax in axes:
        if ax.name in k_names:
            i = k_names.index(ax.name)
            ax.strides["wk"] = prod(sizes[b] for b in k_names[i + 1:])
        elif ax.name in f_names:
            i = f_names.index(ax.name)
            ax.strides["wf"] = prod(sizes[b] for b in f_names[i + 1:])
        elif ax.size > 1:
            raise AssertionError(f"axis {ax.name} in neither the next rows nor columns")


# ------------------------------------------------------------------------------------------------
# Reference execution with the hardware's arithmetic
# ------------------------------------------------------------------------------------------------

def odometer(counts: list[int], dl: list[list[int]]):
    """Yield (sums, level index values) in hardware order (level 0 innermost), as the RTL steps."""
    idx = [0] * len(counts)
    sums = [0] * len(dl[0])
    while True:
        yield list(sums), list(idx)
        for i in range(len(counts)):
            if idx[i] != counts[i] - 1:
                idx[i] += 1
                for j in range(i):
                    idx[j] = 0
                sums = [s + d for s, d in zip(sums, dl[i])]
                break
        else:
            return


def _rq(acc: int, shift: int, lo: int, hi: int) -> int:
    v = (acc + (1 << (shift - 1))) >> shift if shift > 0 else acc
    return min(max(v, lo), hi)


def emulate(prog: Program, x: np.ndarray) -> np.ndarray:
    """Run `prog` on input codes x (B, N) with the engine's address arithmetic; returns (B, M) codes."""
    p = prog.params
    P = p.lanes
    out = np.zeros((len(x), prog.out_features), dtype=np.int64)
    for b, xs in enumerate(np.asarray(x, dtype=np.int64)):
        bufs = {BUF_IN: {}, BUF_A: {}, BUF_B: {}, BUF_OUT: {}}
        h = prog.header
        for v, (sums, _) in zip(xs, odometer(h["x_count"], h["x_delta"])):
            f, kk = sums
            bufs[BUF_IN][((f >> p.lane_bits) * h["x_knext"] + kk, f & (P - 1))] = int(v)
        for st in prog.steps:
            src, dst = bufs[st.src], bufs[st.dst]
            rows = list(odometer(st.f_count, st.f_delta))
            for g in range(st.n_groups):
                accs: list[int] = []
                cur = None
                for sums, idx in odometer(st.mac_count, st.mac_delta):
                    s_off, gaddr, wf, wk, wb = sums
                    first = idx[0] == 0 and idx[1] == 0
                    if first:
                        accs = [0] * P
                    gv = int(prog.cores[st.gbase + gaddr])
                    for lane in range(P):
                        accs[lane] += src.get((g * st.k_len + s_off, lane), 0) * gv
                    if idx[0] == st.mac_count[0] - 1 and idx[1] == st.mac_count[1] - 1:
                        for lane in range(P):
                            f = g * P + lane
                            if f >= st.n_f:
                                break
                            rf, rk, rb = rows[f][0]
                            fp, kp, bi = rf + wf, rk + wk, rb + wb
                            a = accs[lane]
                            if st.last:
                                a += int(prog.biases[st.bbase + bi]) << st.bshift
                            v = _rq(a, st.shift, st.sat_lo, st.sat_hi)
                            if st.act == 1:
                                v = max(v, 0)
                            elif st.act == 2 and st.sine_shift:
                                E = p.sine_interp_bits
                                ph = (v * st.sine_c + (1 << (st.sine_shift - 1))) >> st.sine_shift
                                i0 = (ph >> E) & st.sine_mask
                                lo, hi = int(prog.sine[i0]), int(prog.sine[(i0 + 1) & st.sine_mask])
                                r = lo + (((hi - lo) * (ph & ((1 << E) - 1)) + (1 << (E - 1))) >> E)
                                v = min(max(r, st.sat_lo), st.sat_hi)
                            elif st.act == 2:
                                ph = ((v * st.sine_c + (1 << (SINE_SHIFT - 1))) >> SINE_SHIFT) & st.sine_mask
                                v = min(max(int(prog.sine[ph]), st.sat_lo), st.sat_hi)
                            dst[((fp >> p.lane_bits) * st.knext + kp, fp & (P - 1))] = v
        for y in range(prog.out_features):
            out[b, y] = bufs[BUF_OUT][(y >> p.lane_bits, y & (P - 1))]
    return out


def step_cycles_model(prog: Program) -> int:
    """Cycles per sample of the datapath alone: per (row group, column) max(K, rows / drains).

    The lanes need K cycles per (group, column); the drain needs ceil(rows / drains) for the
    group's real rows.  Per-step overheads (descriptor fetch, pipeline fill) are not counted.
    """
    p = prog.params
    total = 0
    for st in prog.steps:
        cols = prod(st.mac_count[K_LEVELS:])
        for g in range(st.n_groups):
            rows = min(p.lanes, st.n_f - g * p.lanes)
            total += cols * max(st.k_len, -(-rows // p.drains))
    return total
