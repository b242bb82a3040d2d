"""The board's top level: command processor + ZO trainer around the TT engine, behind a stream or UART PHY.

    top = BoardTop(PROFILES["ttzo-small"], phy="stream")     # ports i/o (byte streams) or rx/tx, idle, busy

E's :class:`~ttzo.rtl.cmdproc.CommandProcessor` speaks the protocol (golden/protocol_spec.py); H's
:class:`~ttzo.rtl.zo_trainer.ZoTrainer` holds the master parameters, the batch and the labels and
drives D's :class:`~ttzo.rtl.tt_engine.TTEngine`.  The protocol's regions ARE the trainer's memories
(no copies): region writes go through the trainer's host write port, region reads through extra
read ports on the same memories (lib.memory: one more read port each).

Regions (ids; protocol_spec.Region for 0-2, this module for the rest):
  0 params   16-bit codes, flat golden order               -> trainer parameter memory
  1 batch    8-bit pixels, sample-major                     -> trainer input memory
  2 labels   8-bit class labels                             -> trainer label memory
  6 program  32-bit engine bus words, write-only; word address = engine cfg address
             (rtl/descriptors.py memory map: header, steps, sine; cores/biases are loaded by the
             trainer's load pass from `params`, so the host never writes them)
  8 log      read-only, 4 words per forward pass: batch loss (48-bit, lo/hi), correct count, 0
  9 batch_next, 10 labels_next (BoardParams.batch_banks = 2, the MNIST profiles): the bank of the
             double-buffered input/label memories the trainer does NOT read; write-only, and writable
             while an operation runs, so the host uploads batch k+1 during step k.  The bank the
             trainer reads (and batch/labels address) is bit 0 of config register bp.bank_config.
Configuration registers (CONFIGURE; see CFG_* below) hold the optimizer's integer constants and the
segment table; result registers (READ_RESULTS; RES_*) the counters and the last unperturbed loss.

Operations: RUN_STEPS K runs K training steps (signRGE or CGE, config register `optimizer`) from
step index `step0`; RUN_INFERENCE runs one signRGE step with N = 0 and alpha = 0, i.e. one forward
pass of the batch that changes no parameter, and reports its loss and correct count.  RESET aborts
an operation by resetting the trainer's and engine's registers (memories keep their contents).

PINN designs (``BoardParams.pinn``, profiles "ttzo-hjb-small", "ttzo-hjb"): the forward engine is
rtl/pinn_loss.PinnLoss around the TT engine, so a forward pass is the HJB residual loss over the
collocation points (golden/stein_fixed.py).  The batch/labels regions do not exist; instead
  0 params   32-bit words holding the 20-bit codes (sign-extended on read)
  3 nodes    32-bit node-table body words (golden/nodetable.py), write-only -> PinnLoss bus region 8
  4 colloc   32-bit collocation-point input codes, point p coordinate i at p*D + i, write-only -> region 9
  5 outputs  read-only per-point results of the last forward pass (PinnLoss.rd_*): point p at 64-bit word
             p*(max_dim+3): grad_0..grad_{D-1}, lap, r, r^2, each as 32-bit lo, hi
three more configuration registers (CFG_SEGMENTS + max_segments + 0/1/2: n_nodes, n_points, dim), copied
into PinnLoss's registers before every operation, and three constant result registers (RES_MAX_NODES,
RES_MAX_POINTS, RES_MAX_DIM) next to the CAP_PINN capability so the host can tell the design's maxima.

Sizing (BoardParams) is elaboration-time: `PROFILES["ttzo-small"]` simulates in seconds; the
identify record's 16-byte name is the profile name, which is how the host finds the engine
parameters it compiles the network program for (ttzo.host.backend_board).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

from amaranth.hdl import (Array, Cat, ClockDomain, ClockSignal, Const, DomainRenamer, Module, Mux, ResetSignal,
                          Signal, Value)
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ttzo.golden import protocol_spec as P
from ttzo.golden.protocol_spec import CAP_PINN
from ttzo.golden.formats import DEFAULT_CONFIG, FixedConfig
from ttzo.golden.network import TTNet
from ttzo.golden.stein_fixed import DEFAULT_STEIN_FORMATS, SteinFormats
from ttzo.golden.zo_fixed import K_BITS, M_FRAC

from .banked_memory import BankedMemory
from .cmdproc import CommandProcessor
from .descriptors import EngineParams
from .framing import FrameByte
from .tt_engine import CFG_ADDR_BITS, TTEngine
from .uart import UartRx, UartTx
from .zo_trainer import HostTarget, Optimizer, ZoTrainer

#: Region ids beyond protocol_spec.Region (which now lists them as PROGRAM, LOG).
REGION_PROGRAM = 6
REGION_LOG = 8
LOG_WORDS = 4            # words per log entry: loss lo, loss hi, correct, 0

# --- configuration registers -------------------------------------------------------------------------
CFG_OPTIMIZER, CFG_KIND, CFG_N_QUERIES, CFG_MU_W, CFG_MU_B, CFG_ALPHA_W, CFG_ALPHA_B, CFG_SEED, CFG_STEP0, \
    CFG_N_SAMPLES, CFG_M_CODE, CFG_K_CODE_W, CFG_K_SHIFT_W, CFG_K_CODE_B, CFG_K_SHIFT_B, CFG_CGE_THRESHOLD, \
    CFG_CGE_ALL, CFG_N_SEGMENTS = range(18)
#: Segment k of the flat parameter order is register CFG_SEGMENTS + k: flat start | is_bias << 31.
CFG_SEGMENTS = 18
CFG_NAMES = ("optimizer", "kind", "n_queries", "mu_w", "mu_b", "alpha_w", "alpha_b", "seed", "step0",
             "n_samples", "m_code", "k_code_w", "k_shift_w", "k_code_b", "k_shift_b", "cge_threshold",
             "cge_all", "n_segments")

# --- result registers ----------------------------------------------------------------------------------
RES_STEPS, RES_FORWARDS, RES_L0_LO, RES_L0_HI, RES_CORRECT, RES_CHANGED, RES_CYCLES_LO, RES_CYCLES_HI, \
    RES_OPS = range(9)
N_RESULTS = 9
#: PINN designs only: constant result registers with the design's maxima (after the 9 above).
RES_MAX_NODES, RES_MAX_POINTS, RES_MAX_DIM = range(N_RESULTS, N_RESULTS + 3)
N_RESULTS_PINN = N_RESULTS + 3
#: PINN designs only: configuration registers after the segment table (offsets from BoardParams.pinn_config0).
PINN_CFG_NAMES = ("n_nodes", "n_points", "dim")

#: op_error codes
ERR_ARG = 1              # RUN_STEPS K outside 0..65535 (the trainer's step counter)
ERR_CONFIG = 2           # a configuration the design cannot run (see `runnable`: sizes, field ranges, segment table)


@dataclass(frozen=True)
class BoardParams:
    """Elaboration-time sizes of one board design (one bitstream)."""

    name: str
    net: TTNet                       # the network shape the memories are sized for (n_params, in, out)
    engine: EngineParams
    max_samples: int = 8
    n_max: int = 4                   # most signRGE queries per step
    max_segments: int = 16
    log_depth: int = 64
    max_payload: int = 1024
    uart_divisor: int = 8
    clock_hz: int = 100_000_000
    cfg: FixedConfig = field(default=DEFAULT_CONFIG)
    pinn: "PinnSizes | None" = None  # set: the HJB loss design (PinnLoss around the engine, no batch/labels)
    batch_banks: int = 1             # 2: double-buffered batch/labels (regions BATCH_NEXT/LABELS_NEXT, CFG bank)
    serial: bool = False             # rtl/serial_top.SerialTop: program fixed in the gateware (no PROGRAM region),
                                     # signRGE only, one MAC (docs/rtl-serial.md)

    def __post_init__(self) -> None:
        if len(self.name.encode("ascii")) > P.Identify.NAME_BYTES:
            raise ValueError(f"board name {self.name!r} longer than {P.Identify.NAME_BYTES} bytes")
        if self.serial and (self.pinn or self.batch_banks != 1):
            raise ValueError("the serial design has one batch bank and no PINN loss")
        if self.batch_banks not in (1, 2) or (self.pinn and self.batch_banks != 1):
            raise ValueError(f"batch_banks must be 1 or 2 (1 on HJB designs), got {self.batch_banks}")
        if len(self.net.param_sizes()) > self.max_segments:
            raise ValueError(f"{self.net.name}: {len(self.net.param_sizes())} parameter segments exceed "
                             f"max_segments={self.max_segments}")

    @property
    def region_read_latency(self) -> int:
        """Cycles from a region read address to its data (CommandProcessor read_latency): the batch is
        read through the trainer's BankedMemory pipelined port (a registered bank select, not a 49:1
        multiplexer behind the block RAMs); the PINN designs' regions are plain one-cycle memory ports."""
        return 1 if self.pinn else BankedMemory.LATENCY

    @property
    def n_config(self) -> int:
        return CFG_SEGMENTS + self.max_segments + (len(PINN_CFG_NAMES) if self.pinn else 0) + (self.batch_banks > 1)

    @property
    def bank_config(self) -> int:
        """Index of the batch-bank register of a double-buffered design (after the segment table): bit 0
        selects the bank the trainer reads, which regions BATCH/LABELS address; BATCH_NEXT/LABELS_NEXT
        address the other one."""
        if self.batch_banks < 2:
            raise ValueError(f"design {self.name} has one batch bank (no bank register)")
        return CFG_SEGMENTS + self.max_segments

    @property
    def pinn_config0(self) -> int:
        """Index of the first PINN configuration register (n_nodes; then n_points, dim)."""
        return CFG_SEGMENTS + self.max_segments

    @property
    def n_results(self) -> int:
        return N_RESULTS_PINN if self.pinn else N_RESULTS

    @property
    def param_width(self) -> int:
        """Bits per PARAMS region word: 16 when the codes fit, else 32 (PINN's 20-bit codes)."""
        return 16 if max(self.cfg.weight.bits, self.cfg.bias.bits) <= 16 else 32

    def identify(self, phy: str = "stream") -> P.Identify:
        """The identify record of this design (region sizes, formats, capabilities)."""
        fmts, sine = P.formats_of(self.cfg)
        net = self.net
        ro = P.REGION_FLAG_READABLE
        if self.pinn:
            return self._identify_pinn(phy)
        regions = (P.RegionInfo(P.Region.PARAMS, 16, net.n_params),
                   P.RegionInfo(P.Region.BATCH, 8, self.max_samples * net.in_features),
                   P.RegionInfo(P.Region.LABELS, 8, self.max_samples))
        if not self.serial:
            regions += (P.RegionInfo(REGION_PROGRAM, 32, 1 << CFG_ADDR_BITS, P.REGION_FLAG_WRITABLE),)
        regions += (P.RegionInfo(REGION_LOG, 32, LOG_WORDS * self.log_depth, ro),)
        if self.batch_banks > 1:     # the idle bank: write-only, writable while an operation runs
            nxt = P.REGION_FLAG_WRITABLE | P.REGION_FLAG_BUSY_WRITABLE
            regions += (P.RegionInfo(P.Region.BATCH_NEXT, 8, self.max_samples * net.in_features, nxt),
                        P.RegionInfo(P.Region.LABELS_NEXT, 8, self.max_samples, nxt))
        caps = P.CAP_INFERENCE | P.CAP_STEPS | (P.CAP_UART if phy == "uart" else P.CAP_STREAM)
        return P.Identify(P.VERSION, caps, self.max_payload, self.clock_hz,
                          self.uart_divisor if phy == "uart" else 0, self.n_config, N_RESULTS, fmts, sine,
                          self.name, regions)

    def _identify_pinn(self, phy: str) -> P.Identify:
        pz = self.pinn
        fmts, sine = P.formats_of(replace(self.cfg, loss=pz.fmts.loss))   # the log holds r^2 sums
        wo, ro = P.REGION_FLAG_WRITABLE, P.REGION_FLAG_READABLE
        regions = (P.RegionInfo(P.Region.PARAMS, self.param_width, self.net.n_params),
                   P.RegionInfo(P.Region.NODES, 32, pz.max_nodes * pz.rec_max, wo),
                   P.RegionInfo(P.Region.COLLOC, 32, pz.max_points * pz.max_dim, wo),
                   P.RegionInfo(P.Region.OUTPUTS, 32, 2 * pz.max_points * pz.stride, ro),
                   P.RegionInfo(REGION_PROGRAM, 32, 1 << CFG_ADDR_BITS, wo),
                   P.RegionInfo(REGION_LOG, 32, LOG_WORDS * self.log_depth, ro))
        caps = P.CAP_INFERENCE | P.CAP_STEPS | CAP_PINN | (P.CAP_UART if phy == "uart" else P.CAP_STREAM)
        return P.Identify(P.VERSION, caps, self.max_payload, self.clock_hz,
                          self.uart_divisor if phy == "uart" else 0, self.n_config, self.n_results, fmts, sine,
                          self.name, regions)


@dataclass(frozen=True)
class PinnSizes:
    """Elaboration-time maxima of a PINN design's loss block (rtl/pinn_loss.PinnLoss)."""

    max_dim: int
    max_nodes: int
    max_points: int
    fmts: SteinFormats = field(default=DEFAULT_STEIN_FORMATS)

    @property
    def stride(self) -> int:
        """64-bit result words per point in `outputs`: grad_0..grad_{max_dim-1}, lap, r, r^2."""
        return self.max_dim + 3

    @property
    def rec_max(self) -> int:
        """Words per node-table record at max_dim: [delta_1..D, w, a_1..D, b]."""
        return 2 * self.max_dim + 2


def small_profile() -> BoardParams:
    """784 -> 16 -> 10 TT-MLP (rank 2, 210 parameters), batch <= 8, 4 MAC lanes: simulates in seconds."""
    from ttzo.sim.tb_zo_nets import small_mnist_net
    eng = EngineParams(lanes=4, buf_elems=1024, in_elems=1024, out_elems=64, core_words=512, bias_words=64,
                       max_steps=8, sine_bits=4)
    return BoardParams("ttzo-small", small_mnist_net(), eng, max_samples=8, n_max=4, batch_banks=2)


def mnist_profile(rank: int = 6, batch: int = 64) -> BoardParams:
    """The paper's TT-MLP (784 -> 1024 -> 10) at `rank`, batch 64, N <= 10, 16 lanes."""
    from ttzo.golden.network import mnist_tt
    return BoardParams(f"ttzo-mnist-r{rank}", mnist_tt(rank), EngineParams(lanes=16), max_samples=batch,
                       n_max=10, log_depth=1024, batch_banks=2)


def serial_profile(rank: int = 6, batch: int = 64) -> BoardParams:
    """The serial design (rtl/serial_top.SerialTop, docs/rtl-serial.md) for the paper's TT-MLP at `rank`:
    one MAC, batch 64, N <= 10, 512 log entries, 16-bit state buffers, signRGE only."""
    from ttzo.golden.network import mnist_tt
    return BoardParams(f"ttzo-serial-r{rank}", mnist_tt(rank), EngineParams(lanes=1, data_bits=16), max_samples=batch,
                       n_max=10, log_depth=512, max_payload=512, serial=True)


def serial_tiny_profile() -> BoardParams:
    """The serial design around small_profile's 784 -> 16 -> 10 net (210 parameters), batch <= 8, N <= 4:
    simulates in seconds."""
    from ttzo.sim.tb_zo_nets import small_mnist_net
    return BoardParams("ttzo-serial-tiny", small_mnist_net(), EngineParams(lanes=1, data_bits=16), max_samples=8,
                       n_max=4, log_depth=64, max_payload=512, serial=True)


def hjb_small_profile() -> BoardParams:
    """The HJB loss on the tiny sine TT net (3 -> 8 -> 4 -> 1, sim/pinn_cosim.tiny_pinn_net) with
    sim/pinn_cosim.SMALL_SPEC's engine: D <= 4, <= 64 nodes, <= 8 collocation points; simulates in seconds."""
    from ttzo.sim.pinn_cosim import SMALL_SPEC, tiny_pinn_net
    s = SMALL_SPEC
    return BoardParams("ttzo-hjb-small", tiny_pinn_net(3), s.engine, max_samples=1, n_max=4, cfg=s.cfg,
                       pinn=PinnSizes(s.max_dim, s.max_nodes, s.max_points, s.fmts))


def hjb_profile() -> BoardParams:
    """The paper's HJB-20 network (21 -> 768 -> 768 -> 1) with the D = 21 level-3 table (925 nodes),
    sim/pinn_cosim.HJB_SPEC's engine, <= 16 collocation points per batch, N <= 10."""
    from ttzo.golden.hjb import hjb_tt_net
    from ttzo.sim.pinn_cosim import HJB_SPEC
    s = HJB_SPEC
    return BoardParams("ttzo-hjb", hjb_tt_net(), s.engine, max_samples=1, n_max=10, log_depth=1024, cfg=s.cfg,
                       pinn=PinnSizes(s.max_dim, s.max_nodes, s.max_points, s.fmts))


def profile(name: str) -> BoardParams:
    """The BoardParams a board reports by name in IDENTIFY ("ttzo-small", "ttzo-mnist-rR", "ttzo-serial-rR",
    "ttzo-serial-tiny", "ttzo-hjb-small", "ttzo-hjb"); ValueError otherwise."""
    if name == "ttzo-small":
        return small_profile()
    if name.startswith("ttzo-serial-r") and name[13:].isdigit():
        return serial_profile(int(name[13:]))
    if name == "ttzo-serial-tiny":
        return serial_tiny_profile()
    if name.startswith("ttzo-mnist-r") and name[12:].isdigit():
        return mnist_profile(int(name[12:]))
    if name == "ttzo-hjb-small":
        return hjb_small_profile()
    if name == "ttzo-hjb":
        return hjb_profile()
    raise ValueError(f"unknown board design {name!r}: this host knows 'ttzo-small', 'ttzo-mnist-rR', "
                     "'ttzo-serial-rR', 'ttzo-serial-tiny', 'ttzo-hjb-small' and 'ttzo-hjb'")


def runnable(c, bp: BoardParams) -> Value:
    """High when configuration registers `c` can be run (else op error ERR_CONFIG, nothing starts):
    the AND of :func:`runnable_terms` (combinational; the board registers it, :func:`registered_runnable`).

    Every value must fit its trainer field unchanged (no silent truncation): flags 0/1, 1 <= samples
    <= max_samples, queries <= n_max, 1 <= segments <= max_segments, step/momentum codes in their
    golden ranges; and the first n_segments entries of the segment table must start at 0 and
    increase strictly below n_params (otherwise the trainer's load pass never ends).  PINN designs
    also need 1 <= n_nodes <= max_nodes, 1 <= n_points <= max_points and 1 <= dim <= max_dim (the
    loss block's sequencer counts up to them).
    """
    ok = Const(1)
    for t in runnable_terms(c, bp):
        ok &= t
    return ok


def runnable_terms(c, bp: BoardParams) -> list[Value]:
    """The checks of :func:`runnable`, one 1-bit value per register range or segment-table entry."""
    terms = []
    for idx, lo, hi in ((CFG_OPTIMIZER, 0, 1), (CFG_KIND, 0, 1), (CFG_CGE_ALL, 0, 1),
                        (CFG_N_QUERIES, 0, bp.n_max), (CFG_N_SAMPLES, 1, bp.max_samples),
                        (CFG_N_SEGMENTS, 1, bp.max_segments), (CFG_M_CODE, 0, 1 << M_FRAC),
                        (CFG_K_CODE_W, 0, (1 << K_BITS) - 1), (CFG_K_CODE_B, 0, (1 << K_BITS) - 1),
                        (CFG_K_SHIFT_W, 0, 63), (CFG_K_SHIFT_B, 0, 63)):
        terms.append((c[idx] <= hi) if lo == 0 else (c[idx] >= lo) & (c[idx] <= hi))
    for idx, bits in ((CFG_MU_W, bp.cfg.weight.bits), (CFG_MU_B, bp.cfg.bias.bits),
                      (CFG_ALPHA_W, bp.cfg.weight.bits), (CFG_ALPHA_B, bp.cfg.bias.bits)):   # the trainer's code widths
        v = c[idx].as_signed()
        terms.append((v >= -(1 << (bits - 1))) & (v < (1 << (bits - 1))))
    starts = [c[CFG_SEGMENTS + k][:31] for k in range(bp.max_segments)]
    terms.append(starts[0] == 0)
    for k in range(bp.max_segments):
        good = starts[k] < bp.net.n_params
        if k:
            good &= starts[k] > starts[k - 1]
        terms.append((c[CFG_N_SEGMENTS] <= k) | good)
    if bp.batch_banks > 1:
        terms.append(c[bp.bank_config] <= 1)
    if bp.pinn:
        pz, c0 = bp.pinn, bp.pinn_config0
        for k, hi in enumerate((pz.max_nodes, pz.max_points, pz.max_dim)):
            terms.append((c[c0 + k] >= 1) & (c[c0 + k] <= hi))
    return terms


#: Cycles from a configuration register's value to :func:`registered_runnable`'s output.
RUNNABLE_LATENCY = 3


def registered_runnable(m: Module, c, bp: BoardParams) -> Signal:
    """:func:`runnable` of `c` in three registered levels (every check, groups of four checks, all),
    valid RUNNABLE_LATENCY cycles after the registers change.  Its one reader, the controller, reads it
    when an operation starts, and a configuration register cannot change within RUNNABLE_LATENCY cycles
    before that: CONFIGURE and RESET write them before their reply (six or more bytes, each a few cycles),
    and the request that starts the operation is received and checked only after that reply.  One
    registered level was one wide function of most registers, late on the full ECP5 design (docs/boards.md)."""
    terms = runnable_terms(c, bp)
    t1 = Signal(len(terms), name="cfg_ok_terms")
    m.d.sync += t1.eq(Cat(*terms))
    groups = [t1[g:g + 4].all() for g in range(0, len(terms), 4)]
    t2 = Signal(len(groups), name="cfg_ok_groups")
    m.d.sync += t2.eq(Cat(*groups))
    ok = Signal(name="cfg_ok")
    m.d.sync += ok.eq(t2.all())
    return ok


class _Control(wiring.Component):
    """Starts the trainer for RUN_STEPS / RUN_INFERENCE: writes the segment table, pulses start, waits."""

    def __init__(self, bp: BoardParams, trainer: ZoTrainer) -> None:
        self.bp, self.tr = bp, trainer
        super().__init__({"op_start": In(1), "op_code": In(8), "op_arg": In(32),
                          "op_busy": Out(1), "op_error": Out(8), "inference": Out(1), "k_steps": Out(16),
                          "seg_k": Out(range(bp.max_segments + 1)), "seg_we": Out(1),
                          "tr_start": Out(1), "tr_busy": In(1), "cfg_ok": In(1), "ops": Out(32),
                          **({"reg_k": Out(2), "reg_we": Out(1)} if bp.pinn else {})})

    def elaborate(self, platform) -> Module:
        m = Module()
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.op_start):
                    m.d.sync += [self.op_error.eq(0), self.inference.eq(self.op_code == P.Op.INFERENCE),
                                 self.k_steps.eq(self.op_arg[:16]), self.seg_k.eq(0)]
                    if self.bp.pinn:
                        m.d.sync += self.reg_k.eq(0)
                    with m.If((self.op_code == P.Op.STEPS) & (self.op_arg[16:] != 0)):
                        m.d.sync += [self.op_error.eq(ERR_ARG), self.ops.eq(self.ops + 1)]
                    with m.Elif(~self.cfg_ok):
                        m.d.sync += [self.op_error.eq(ERR_CONFIG), self.ops.eq(self.ops + 1)]
                    with m.Else():
                        m.d.sync += self.op_busy.eq(1)
                        m.next = "SEGMENTS"
            with m.State("SEGMENTS"):      # one segment-table entry per cycle
                m.d.comb += self.seg_we.eq(1)
                m.d.sync += self.seg_k.eq(self.seg_k + 1)
                with m.If(self.seg_k == self.bp.max_segments - 1):
                    m.next = "SETTLE"
            with m.State("SETTLE"):        # the registered segment bus (_control_wiring) writes the last entry
                m.next = "PINN_REGS" if self.bp.pinn else "START"
            if self.bp.pinn:
                with m.State("PINN_REGS"):     # n_nodes, n_points, dim -> the loss block's registers
                    m.d.comb += self.reg_we.eq(1)
                    m.d.sync += self.reg_k.eq(self.reg_k + 1)
                    with m.If(self.reg_k == len(PINN_CFG_NAMES) - 1):
                        m.next = "START"
            with m.State("START"):
                m.d.comb += self.tr_start.eq(1)
                m.next = "WAIT"
            with m.State("WAIT"):
                with m.If(~self.tr_busy & ~self.tr_start):
                    m.d.sync += [self.op_busy.eq(0), self.ops.eq(self.ops + 1)]
                    m.next = "IDLE"
        return m


def attach_phy(m: Module, top: wiring.Component, cp: CommandProcessor, op_busy: Value) -> None:
    """`top`'s PHY: ports i/o straight to the command processor (``top.phy == "stream"``) or a UART on
    pins rx/tx (``"uart"``, divisor ``top.bp.uart_divisor``); and its ``busy``/``idle`` outputs."""
    m.d.comb += top.busy.eq(op_busy)
    if top.phy == "stream":
        wiring.connect(m, wiring.flipped(top.i), cp.i)
        wiring.connect(m, cp.o, wiring.flipped(top.o))
        m.d.comb += top.idle.eq(cp.idle & ~op_busy)
    else:
        m.submodules.urx = urx = UartRx(top.bp.uart_divisor)
        m.submodules.utx = utx = UartTx(top.bp.uart_divisor)
        m.d.comb += [urx.rx.eq(top.rx), top.tx.eq(utx.tx)]
        wiring.connect(m, urx.o, cp.i)
        m.d.comb += [utx.i.valid.eq(cp.o.valid), utx.i.payload.eq(cp.o.payload.data),
                     cp.o.ready.eq(utx.i.ready), top.idle.eq(cp.idle & ~op_busy & urx.idle & utx.idle)]


def train_domain(m: Module, cp: CommandProcessor, reset_buffer: Callable[[Module, Value], Value] | None) -> None:
    """Domain ``train`` (trainer, engine, controller): the sync clock, reset by power-on reset OR the
    RESET command, taken from one flip-flop a cycle later.

    One registered reset instead of ResetInserter's OR of two resets: the OR was a LUT driving the
    LSR of ~20,000 flip-flops, the worst net of the ECP5 build (docs/boards.md).  From a flip-flop it
    can go onto a global line: `reset_buffer(m, rst)` returns the buffered net (boards/clocking.
    global_buffer: DCCA on ECP5); without one the register drives the resets directly.  Used by
    BoardTop and rtl/serial_top.SerialTop.
    """
    m.domains.train = cd = ClockDomain("train", local=True)
    rst = Signal(init=1, reset_less=True)
    m.d.sync += rst.eq(ResetSignal("sync") | cp.soft_reset)
    m.d.comb += [cd.clk.eq(ClockSignal("sync")),
                 cd.rst.eq(reset_buffer(m, rst) if reset_buffer is not None else rst)]


class BoardTop(wiring.Component):
    """The whole board behind one PHY: ``phy="stream"`` (ports i/o: PCIe DMA or the fast simulation
    path) or ``phy="uart"`` (pins rx/tx).  ``idle``: nothing in flight and no operation running (the
    virtual board stops the clock then); ``busy``: an operation runs."""

    def __init__(self, bp: BoardParams, phy: str = "stream",
                 reset_buffer: Callable[[Module, Value], Value] | None = None) -> None:
        if phy not in ("stream", "uart"):
            raise ValueError(f"phy must be 'stream' or 'uart', not {phy!r}")
        if phy == "uart" and bp.uart_divisor < 4:
            raise ValueError(f"UART phy needs uart_divisor >= 4, got {bp.uart_divisor}")
        self.bp, self.phy, self.reset_buffer = bp, phy, reset_buffer
        self.ident = bp.identify(phy)
        if phy == "stream":
            members = {"i": In(stream.Signature(8)), "o": Out(stream.Signature(FrameByte))}
        else:
            members = {"rx": In(1, init=1), "tx": Out(1, init=1)}
        members.update({"idle": Out(1), "busy": Out(1)})
        super().__init__(members)

    def elaborate(self, platform) -> Module:
        m = Module()
        bp, net, cfg = self.bp, self.bp.net, self.bp.cfg
        m.submodules.cp = cp = CommandProcessor(self.ident, read_latency=bp.region_read_latency)
        if bp.pinn:
            return self._elaborate_pinn(m, cp)
        tr = ZoTrainer(TTEngine(bp.engine), n_params=net.n_params, n_inputs=net.in_features,
                       classes=net.out_features, max_samples=bp.max_samples, n_max=bp.n_max,
                       max_segments=bp.max_segments, log_depth=bp.log_depth, weight=cfg.weight, bias=cfg.bias,
                       act=cfg.act, loss=cfg.loss, x_fmt=cfg.input, input_banks=bp.batch_banks)
        # RESET aborts a running operation: the trainer's and engine's registers return to their
        # initial values; memories (parameters, batch, engine program) keep their contents.
        self._train_domain(m, cp)
        m.submodules.trainer = DomainRenamer("train")(tr)
        m.submodules.ctl = ctl = DomainRenamer("train")(_Control(bp, tr))
        c = cp.config

        # --- configuration registers -> trainer control inputs ---------------------------------
        n_samples, n_queries, n_segs = c[CFG_N_SAMPLES], c[CFG_N_QUERIES], c[CFG_N_SEGMENTS]
        # registered (three levels): CONFIGURE ends many cycles before the next request can start an operation
        m.d.comb += ctl.cfg_ok.eq(registered_runnable(m, c, bp))
        inf = ctl.inference
        m.d.sync += [          # registered: settled long before START (>= max_segments cycles after op_start)
            tr.optimizer.eq(Mux(inf, Optimizer.SIGNRGE, c[CFG_OPTIMIZER][0])),
            tr.kind.as_value().eq(c[CFG_KIND][0]),
            tr.n_queries.eq(Mux(inf, 0, n_queries)),
            tr.mu_w.eq(c[CFG_MU_W]), tr.mu_b.eq(c[CFG_MU_B]),
            tr.alpha_w.eq(Mux(inf, 0, c[CFG_ALPHA_W])), tr.alpha_b.eq(Mux(inf, 0, c[CFG_ALPHA_B])),
            tr.seed.eq(c[CFG_SEED]), tr.step0.eq(c[CFG_STEP0]),
            tr.k_steps.eq(Mux(inf, 1, ctl.k_steps)), tr.n_samples.eq(n_samples),
            tr.m_code.eq(c[CFG_M_CODE]), tr.k_code_w.eq(c[CFG_K_CODE_W]), tr.k_shift_w.eq(c[CFG_K_SHIFT_W]),
            tr.k_code_b.eq(c[CFG_K_CODE_B]), tr.k_shift_b.eq(c[CFG_K_SHIFT_B]),
            tr.cge_threshold.eq(Mux(c[CFG_CGE_ALL][0], 1 << 32, c[CFG_CGE_THRESHOLD])),
            tr.n_segments.eq(n_segs),
        ]
        # segment table, written by the controller before each start
        self._control_wiring(m, c, tr, ctl, cp, bp)

        # --- result registers --------------------------------------------------------------------
        l0 = Signal(64)
        m.d.comb += l0.eq(tr.last_l0.as_signed())     # sign-extended to 64 bits
        res = {RES_STEPS: tr.steps_done, RES_FORWARDS: tr.forwards, RES_L0_LO: l0[:32], RES_L0_HI: l0[32:],
               RES_CORRECT: tr.last_correct, RES_CHANGED: tr.changed, RES_CYCLES_LO: tr.cycles[:32],
               RES_CYCLES_HI: tr.cycles[32:], RES_OPS: ctl.ops}
        for k, v in res.items():
            m.d.comb += cp.results[k].eq(v)

        # --- regions: writes through the trainer's host port, reads through extra read ports ---------
        # Double-buffered batch (bp.batch_banks = 2): the trainer's inputs/labels memories hold word k of
        # bank b at 2k + b; BATCH/LABELS address the bank the trainer reads (bank register), BATCH_NEXT/
        # LABELS_NEXT the other one, which the command processor lets the host write while a step runs.
        ports = {r.id: cp.port(r) for r in self.ident.regions}
        banked = bp.batch_banks > 1
        bank = c[bp.bank_config][0] if banked else Const(0)
        addr = {P.Region.PARAMS: lambda a: a}
        for rid in (P.Region.BATCH, P.Region.LABELS):
            addr[rid] = (lambda a: Cat(bank, a)) if banked else (lambda a: a)
        targets = {P.Region.PARAMS: HostTarget.PARAMS, P.Region.BATCH: HostTarget.INPUTS,
                   P.Region.LABELS: HostTarget.LABELS}
        if banked:
            m.d.comb += tr.input_bank.eq(bank)
            targets.update({P.Region.BATCH_NEXT: HostTarget.INPUTS, P.Region.LABELS_NEXT: HostTarget.LABELS})
            for rid in (P.Region.BATCH_NEXT, P.Region.LABELS_NEXT):
                addr[rid] = lambda a: Cat(~bank, a)
        for rid, target in targets.items():
            port = ports[rid]
            with m.If(port.w_en):
                m.d.comb += [tr.host_we.eq(1), tr.host_target.eq(target), tr.host_addr.eq(addr[rid](port.w_addr))]
        m.d.comb += tr.host_data.eq(ports[P.Region.PARAMS].w_data.as_signed())  # params are signed codes
        for rid in targets:
            if rid != P.Region.PARAMS:
                with m.If(ports[rid].w_en):
                    m.d.comb += tr.host_data.eq(ports[rid].w_data)               # pixels, labels unsigned
        # BATCH is read through the trainer's own batch read port (idle only: READ_REGION is refused while
        # busy), not a second read port that would duplicate its 49 block RAMs
        for rid, mem in ((P.Region.PARAMS, tr.params), (P.Region.LABELS, tr.labels)):
            rp = mem.read_port(transparent_for=())
            width = next(r.width for r in self.ident.regions if r.id == rid)
            m.d.comb += [rp.addr.eq(addr[rid](ports[rid].r_addr)), ports[rid].r_data.eq(Value.cast(rp.data)[:width])]
        width = next(r.width for r in self.ident.regions if r.id == P.Region.BATCH)
        m.d.comb += [tr.batch_rd_addr.eq(addr[P.Region.BATCH](ports[P.Region.BATCH].r_addr)),
                     ports[P.Region.BATCH].r_data.eq(tr.batch_rd_data[:width])]
        prog = ports[REGION_PROGRAM]
        m.d.comb += [tr.cfg_addr.eq(prog.w_addr), tr.cfg_data.eq(prog.w_data), tr.cfg_en.eq(prog.w_en)]
        self._log_region(m, ports[REGION_LOG], tr)

        self._phy(m, cp, ctl)
        return m

    def _elaborate_pinn(self, m: Module, cp: CommandProcessor) -> Module:
        """The HJB loss design: PinnLoss(TTEngine) as the trainer's loss source (module docstring)."""
        from .pinn_loss import REGION_NODES, REGION_POINTS, REGION_REGS, PinnLoss
        from .descriptors import region_addr
        bp, net, cfg, pz = self.bp, self.bp.net, self.bp.cfg, self.bp.pinn
        loss = PinnLoss(TTEngine(bp.engine), cfg, max_dim=pz.max_dim, max_nodes=pz.max_nodes,
                        max_points=pz.max_points, fmts=pz.fmts, keep_results=True)
        tr = ZoTrainer(loss, n_params=net.n_params, n_inputs=1, classes=2, max_samples=1, n_max=bp.n_max,
                       max_segments=bp.max_segments, log_depth=bp.log_depth, weight=cfg.weight, bias=cfg.bias,
                       act=cfg.act, loss=pz.fmts.loss, x_fmt=cfg.input)
        self._train_domain(m, cp)
        m.submodules.trainer = DomainRenamer("train")(tr)
        m.submodules.ctl = ctl = DomainRenamer("train")(_Control(bp, tr))
        c = cp.config

        m.d.comb += ctl.cfg_ok.eq(registered_runnable(m, c, bp))
        inf = ctl.inference
        m.d.sync += [          # registered, as above
            tr.optimizer.eq(Mux(inf, Optimizer.SIGNRGE, c[CFG_OPTIMIZER][0])),
            tr.kind.as_value().eq(c[CFG_KIND][0]),
            tr.n_queries.eq(Mux(inf, 0, c[CFG_N_QUERIES])),
            tr.mu_w.eq(c[CFG_MU_W]), tr.mu_b.eq(c[CFG_MU_B]),
            tr.alpha_w.eq(Mux(inf, 0, c[CFG_ALPHA_W])), tr.alpha_b.eq(Mux(inf, 0, c[CFG_ALPHA_B])),
            tr.seed.eq(c[CFG_SEED]), tr.step0.eq(c[CFG_STEP0]),
            tr.k_steps.eq(Mux(inf, 1, ctl.k_steps)), tr.n_samples.eq(c[CFG_N_SAMPLES]),
            tr.m_code.eq(c[CFG_M_CODE]), tr.k_code_w.eq(c[CFG_K_CODE_W]), tr.k_shift_w.eq(c[CFG_K_SHIFT_W]),
            tr.k_code_b.eq(c[CFG_K_CODE_B]), tr.k_shift_b.eq(c[CFG_K_SHIFT_B]),
            tr.cge_threshold.eq(Mux(c[CFG_CGE_ALL][0], 1 << 32, c[CFG_CGE_THRESHOLD])),
            tr.n_segments.eq(c[CFG_N_SEGMENTS]),
        ]
        self._control_wiring(m, c, tr, ctl, cp, bp)

        # --- result registers (the loss is a signed r^2 sum, sign-extended; correct is always 0) ---------
        l0 = Signal(64)
        m.d.comb += l0.eq(tr.last_l0.as_signed())
        res = {RES_STEPS: tr.steps_done, RES_FORWARDS: tr.forwards, RES_L0_LO: l0[:32], RES_L0_HI: l0[32:],
               RES_CORRECT: tr.last_correct, RES_CHANGED: tr.changed, RES_CYCLES_LO: tr.cycles[:32],
               RES_CYCLES_HI: tr.cycles[32:], RES_OPS: ctl.ops,
               RES_MAX_NODES: pz.max_nodes, RES_MAX_POINTS: pz.max_points, RES_MAX_DIM: pz.max_dim}
        for k, v in res.items():
            m.d.comb += cp.results[k].eq(v)

        # --- regions --------------------------------------------------------------------------------
        ports = {r.id: cp.port(r) for r in self.ident.regions}
        pp = ports[P.Region.PARAMS]
        m.d.comb += [tr.host_we.eq(pp.w_en), tr.host_target.eq(HostTarget.PARAMS), tr.host_addr.eq(pp.w_addr),
                     tr.host_data.eq(pp.w_data.as_signed())]
        rp = tr.params.read_port(transparent_for=())
        m.d.comb += [rp.addr.eq(pp.r_addr), pp.r_data.eq(rp.data)]        # signed: sign-extended to 32 bits
        # The loss block's bus (through the idle trainer): program words, node table, points, and the
        # PINN registers the controller copies from the configuration before each operation.
        prog, nodes, pts = ports[REGION_PROGRAM], ports[P.Region.NODES], ports[P.Region.COLLOC]
        c0 = bp.pinn_config0
        regv = Array(c[c0 + k] for k in range(len(PINN_CFG_NAMES)))
        m.d.comb += [tr.cfg_addr.eq(prog.w_addr), tr.cfg_data.eq(prog.w_data), tr.cfg_en.eq(prog.w_en)]
        with m.If(nodes.w_en):
            m.d.comb += [tr.cfg_addr.eq(region_addr(REGION_NODES, 0) | nodes.w_addr), tr.cfg_data.eq(nodes.w_data),
                         tr.cfg_en.eq(1)]
        with m.If(pts.w_en):
            m.d.comb += [tr.cfg_addr.eq(region_addr(REGION_POINTS, 0) | pts.w_addr), tr.cfg_data.eq(pts.w_data),
                         tr.cfg_en.eq(1)]
        with m.If(ctl.reg_we):
            m.d.comb += [tr.cfg_addr.eq(region_addr(REGION_REGS, 0) | ctl.reg_k), tr.cfg_data.eq(regv[ctl.reg_k]),
                         tr.cfg_en.eq(1)]
        # per-point results of the last forward pass: 64-bit words as (lo, hi) pairs
        outp = ports[P.Region.OUTPUTS]
        o_hi = Signal()
        m.d.sync += o_hi.eq(outp.r_addr[0])
        m.d.comb += [loss.rd_addr.eq(outp.r_addr[1:]),
                     outp.r_data.eq(Mux(o_hi, loss.rd_data[32:], loss.rd_data[:32]))]
        self._log_region(m, ports[REGION_LOG], tr)
        self._phy(m, cp, ctl)
        return m

    def _train_domain(self, m: Module, cp: CommandProcessor) -> None:
        train_domain(m, cp, self.reset_buffer)

    @staticmethod
    def _control_wiring(m: Module, c, tr: ZoTrainer, ctl: "_Control", cp: CommandProcessor, bp: BoardParams) -> None:
        """Controller <-> trainer (segment table written before each start, start/busy) and <-> command processor."""
        # Timing: the segment bus is registered (the entry's selection from the configuration registers
        # and its write decode into the trainer's, perturber's and update's tables were a 15 ns path on
        # the ECP5); _Control's SETTLE state lets the last entry land before the trainer starts.
        segs = Array(c[CFG_SEGMENTS + k] for k in range(bp.max_segments))
        seg = Signal(32)
        seg_we, seg_k = Signal(), Signal.like(ctl.seg_k)
        m.d.sync += [seg.eq(segs[ctl.seg_k[:max(1, (bp.max_segments - 1).bit_length())]]),
                     seg_we.eq(ctl.seg_we), seg_k.eq(ctl.seg_k)]
        m.d.comb += [tr.seg_we.eq(seg_we), tr.seg_addr.eq(seg_k), tr.seg_start.eq(seg),
                     tr.seg_bias.eq(seg[31]), tr.start.eq(ctl.tr_start), ctl.tr_busy.eq(tr.busy)]
        m.d.comb += [ctl.op_start.eq(cp.op_start), ctl.op_code.eq(cp.op_code), ctl.op_arg.eq(cp.op_arg),
                     cp.op_busy.eq(ctl.op_busy), cp.op_error.eq(ctl.op_error)]

    @staticmethod
    def _log_region(m: Module, log, tr: ZoTrainer) -> None:
        """The LOG region: entry e at words 4e..4e+3 = loss lo, loss hi, correct, 0 (read-only)."""
        lp = tr.log.read_port(transparent_for=())
        lane = Signal(2)
        m.d.sync += lane.eq(log.r_addr[:2])
        m.d.comb += lp.addr.eq(log.r_addr[2:])
        loss64 = Signal(64)
        m.d.comb += loss64.eq(lp.data.loss)
        with m.Switch(lane):
            with m.Case(0):
                m.d.comb += log.r_data.eq(loss64[:32])
            with m.Case(1):
                m.d.comb += log.r_data.eq(loss64[32:])
            with m.Case(2):
                m.d.comb += log.r_data.eq(lp.data.correct)

    def _phy(self, m: Module, cp: CommandProcessor, ctl: "_Control") -> None:
        attach_phy(m, self, cp, ctl.op_busy)


def to_verilog(bp: BoardParams, phy: str = "stream", name: str = "board_top") -> str:
    from amaranth.back import verilog
    return verilog.convert(BoardTop(bp, phy), name=name, emit_src=False)
