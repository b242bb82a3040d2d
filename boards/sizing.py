"""On-chip memory plan of a ZO training design and its mapping onto a board's block RAMs.

The plan lists the regions a whole-network signRGE/CGE training step keeps on chip
(docs/boards.md, "Sizing model"):

- params:   every core entry and bias (weight format), split into P banks so each MAC lane reads
            its own word per cycle;
- momentum: one word per parameter (CGE with momentum; signRGE needs no per-parameter buffer
            because the N losses are kept and xi is regenerated from the seed during the update);
- batch:    the training batch (input format) and its labels;
- state_a, state_b: ping-pong buffers of the TT contraction state, each as large as the largest
            intermediate (or layer output) of any absorption step;
- exp2, log2: the loss unit's tables (golden/loss.py: 1024 x 31 and 1025 x 17 bits); they share
            state A's blocks, as the loss of a sample is evaluated between forward passes;
- losses:   N + 1 loss words (registers, not counted in RAM).

Regions in the same *group* are never accessed in the same cycle, so they may share blocks
(batch and momentum: the update phase does not read the batch).  Each group is mapped onto
whole blocks: iCE40 UltraPlus SPRAM (16K x 16) for groups of at least 64 Kbit while SPRAMs are
left, shallow banks (<= 64 words) to LUT RAM on ECP5 and 7-series, else block RAM in the aspect
ratio that needs the fewest blocks.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ttzo.golden.formats import DEFAULT_CONFIG, FixedConfig
from ttzo.golden.loss import EXP_BITS, LOG_BITS, SUM_FRAC
from ttzo.golden.network import TTNet, mnist_tt

from .profiles import BoardProfile

#: (depth, width) aspect ratios of one block RAM per family.
BRAM_SHAPES = {
    "ice40": [(256, 16), (512, 8), (1024, 4), (2048, 2)],
    "ecp5": [(512, 36), (1024, 18), (2048, 9), (4096, 4), (8192, 2), (16384, 1)],
    "xc7": [(512, 72), (1024, 36), (2048, 18), (4096, 9), (8192, 4), (16384, 2), (32768, 1)],
}
#: Banks this shallow go to distributed (LUT) RAM where the family has it (ECP5 DPR16X4, 7-series RAM64M).
LUTRAM_MAX_DEPTH = {"ecp5": 64, "xc7": 64}
SPRAM_WORDS, SPRAM_WIDTH = 16384, 16
SPRAM_MIN_BITS = 64 * 1024


@dataclass(frozen=True)
class Region:
    name: str
    depth: int      # words per bank
    width: int      # bits per word
    banks: int = 1
    group: str = ""

    @property
    def bits(self) -> int:
        return self.depth * self.width * self.banks

    @property
    def words16(self) -> int:
        """16-bit words it takes in a 16-bit-wide RAM (narrow words packed, wide words split)."""
        if self.width <= 16:
            return math.ceil(self.depth * self.width * self.banks / 16)
        return self.depth * math.ceil(self.width / 16) * self.banks


@dataclass(frozen=True)
class MemoryPlan:
    """The regions of one design point (network, formats, batch, lanes)."""

    net_name: str
    lanes: int
    batch: int
    regions: tuple[Region, ...]

    def group_words16(self, group: str) -> int:
        """16-bit words of all regions in `group` (the depth of one 16-bit RAM holding them)."""
        return sum(r.words16 for r in self.regions if (r.group or r.name) == group)

    def region(self, name: str) -> Region:
        for r in self.regions:
            if r.name == name:
                return r
        raise KeyError(name)

    @property
    def bits(self) -> int:
        return sum(r.bits for r in self.regions)

    def to_dict(self) -> dict:
        return {"net": self.net_name, "lanes": self.lanes, "batch": self.batch, "bits": self.bits,
                "regions": [asdict(r) | {"bits": r.bits} for r in self.regions]}


def max_state_words(net: TTNet) -> int:
    """Largest TT contraction state or layer output of any step of any layer (words)."""
    words = net.in_features
    for spec in net.layers:
        for step in spec.shape.steps(spec.contraction):
            words = max(words, step.outputs)
        words = max(words, spec.shape.out_features)
    return words


def memory_plan(net: TTNet, lanes: int, batch: int = 64, cfg: FixedConfig = DEFAULT_CONFIG,
                momentum: bool = True) -> MemoryPlan:
    if lanes < 1 or batch < 1:
        raise ValueError(f"lanes ({lanes}) and batch ({batch}) must be >= 1")
    n = net.n_params
    state = max_state_words(net)
    label_bits = max(1, math.ceil(math.log2(max(2, net.out_features))))
    regions = [
        Region("params", math.ceil(n / lanes), cfg.weight.bits, lanes, "params"),
        Region("batch", batch * net.in_features, cfg.input.bits, 1, "batch"),
        Region("labels", batch, label_bits, 1, "batch"),
        Region("state_a", state, cfg.state.bits, 1, "state_a"),
        Region("state_b", state, max(cfg.state.bits, cfg.act.bits), 1, "state_b"),
        Region("exp2", 1 << EXP_BITS, SUM_FRAC + 1, 1, "state_a"),
        Region("log2", (1 << LOG_BITS) + 1, 17, 1, "state_a"),
    ]
    if momentum:
        regions.append(Region("momentum", n, cfg.weight.bits, 1, "batch"))
    return MemoryPlan(net.name, lanes, batch, tuple(regions))


def bram_blocks(family: str, depth: int, width: int) -> int:
    """Fewest block RAMs that hold depth x width (one bank)."""
    return min(math.ceil(depth / d) * math.ceil(width / w) for d, w in BRAM_SHAPES[family])


@dataclass(frozen=True)
class Fit:
    """Blocks the plan needs on a board, and whether it fits (RAM and multipliers)."""

    bram: int
    spram: int
    dsp: int
    bram_available: int
    spram_available: int
    dsp_available: int
    placement: dict

    @property
    def fits(self) -> bool:
        return self.bram <= self.bram_available and self.spram <= self.spram_available \
            and self.dsp <= self.dsp_available

    def to_dict(self) -> dict:
        return asdict(self) | {"fits": self.fits}


def map_plan(plan: MemoryPlan, profile: BoardProfile) -> Fit:
    family, cap = profile.family, profile.capacity
    groups: dict[str, list[Region]] = {}
    for r in plan.regions:
        groups.setdefault(r.group or r.name, []).append(r)
    spram_left = cap.spram
    bram = spram = 0
    placement: dict[str, str] = {}
    for g, regs in sorted(groups.items(), key=lambda kv: -sum(r.bits for r in kv[1])):
        bits = sum(r.bits for r in regs)
        banked = any(r.banks > 1 for r in regs)
        need_sp = math.ceil(sum(r.words16 for r in regs) / SPRAM_WORDS)
        if not banked and bits >= SPRAM_MIN_BITS and need_sp <= spram_left:
            spram_left -= need_sp
            spram += need_sp
            placement[g] = f"{need_sp} SPRAM"
            continue
        if family in LUTRAM_MAX_DEPTH and all(r.depth <= LUTRAM_MAX_DEPTH[family] for r in regs):
            placement[g] = f"LUTRAM ({bits} bits)"
            continue
        blocks = sum(r.banks * bram_blocks(family, r.depth, r.width) for r in regs)
        bram += blocks
        placement[g] = f"{blocks} BRAM"
    return Fit(bram, spram, plan.lanes, cap.bram, cap.spram, cap.dsp, placement)


def largest_rank(profile: BoardProfile, lanes: int | None = None, max_rank: int = 64,
                 cfg: FixedConfig = DEFAULT_CONFIG) -> int:
    """Largest MNIST TT rank r whose training plan fits the board's RAM (0 if none)."""
    best = 0
    for r in range(1, max_rank + 1):
        plan = memory_plan(mnist_tt(r), lanes or profile.lanes, profile.batch, cfg)
        if map_plan(plan, profile).fits:
            best = r
    return best
