"""The serial design's top: the full design's protocol and registers around rtl/serial_trainer.SerialTrainer.

Same command processor, same region ids, configuration register indices, result registers and op
error codes as rtl/board_top.BoardTop, so the host's BoardSession drives either design (docs/rtl-serial.md);
the differences are what the identify record says: no PROGRAM region (the network is fixed in the
gateware), one batch bank, and signRGE only (RUN_STEPS with optimizer CGE ends in ERR_CONFIG).

Memories: `bulk` (rtl/serial_map.BulkMap: batch, parameters, labels, log, scratch) is one single-port
RAM, two SPRAMs on the UP5K.  The trainer owns it while an operation runs; otherwise the command
processor's region ports share it through a five-slot read rotation (PARAMS, BATCH, LABELS, LOG low
and high word; each region's word is refreshed every five cycles, registered before the RAM, so the
processor is built with a read latency of 8) and its writes, one cycle after they arrive.  The configuration registers the
serial trainer does not read (CGE constants, segment table, which the gateware knows) are not stored:
they read back as 0 (CommandProcessor ``config_bits``).
"""
from __future__ import annotations

from typing import Callable

from amaranth.hdl import Cat, Const, DomainRenamer, Module, Mux, Signal, Value
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ttzo.golden import protocol_spec as P

from .board_top import (CFG_ALPHA_B, CFG_ALPHA_W, CFG_KIND, CFG_MU_B, CFG_MU_W, CFG_N_QUERIES, CFG_N_SAMPLES,
                        CFG_OPTIMIZER, CFG_SEED, CFG_STEP0, ERR_ARG, ERR_CONFIG, REGION_LOG, RES_CHANGED,
                        RES_CORRECT, RES_CYCLES_HI, RES_CYCLES_LO, RES_FORWARDS, RES_L0_HI, RES_L0_LO, RES_OPS,
                        RES_STEPS, BoardParams, attach_phy, train_domain)
from .cmdproc import CommandProcessor
from .framing import FrameByte
from .serial_map import BulkMap
from .serial_trainer import SerialTrainer
from .spram import SinglePortRAM



def config_bits(bp: BoardParams, n_config: int) -> tuple[int, ...]:
    """Signed widths of the configuration registers the serial trainer reads (CommandProcessor
    ``config_bits``; a written value that does not fit makes the start fail with ERR_CONFIG); 0 for
    the registers it does not read (CGE constants, the segment table: they read back 0)."""
    def nonneg(hi: int) -> int:
        return hi.bit_length() + 1
    widths = {CFG_OPTIMIZER: 2, CFG_KIND: 2, CFG_N_QUERIES: nonneg(bp.n_max), CFG_N_SAMPLES: nonneg(bp.max_samples),
              CFG_MU_W: bp.cfg.weight.bits, CFG_MU_B: bp.cfg.bias.bits, CFG_ALPHA_W: bp.cfg.weight.bits,
              CFG_ALPHA_B: bp.cfg.bias.bits, CFG_SEED: 32, CFG_STEP0: 32}
    return tuple(widths.get(k, 0) for k in range(n_config))
#: command-processor read latency: the five-slot rotation (<= 5 cycles to a slot, the RAM's cycle, the capture)
READ_LATENCY = 8
BULK_DEPTH = 1 << 15


def bulk_map_of(bp: BoardParams) -> BulkMap:
    return BulkMap(n_in=bp.net.in_features, n_params=bp.net.n_params, max_samples=bp.max_samples,
                   n_max=bp.n_max, log_depth=bp.log_depth)


def serial_runnable(c, fit: Value, bits: tuple[int, ...], bp: BoardParams, kinds: int) -> Value:
    """Configuration the serial trainer can run: every value fitted its register (`fit`, the command
    processor's ``config_fit``: step codes within their 16-bit formats), signRGE, a supported
    perturbation kind (< `kinds`), 0 <= queries <= n_max and 1 <= samples <= max_samples.  The
    comparisons are on the narrow stored values (a 32-bit compare is a carry chain each)."""
    def v(idx: int) -> Value:
        return c[idx][:bits[idx]].as_signed()
    ok = fit.all() & (v(CFG_OPTIMIZER) == 0) & (v(CFG_KIND) >= 0) & (v(CFG_KIND) < kinds)
    ok &= (v(CFG_N_QUERIES) >= 0) & (v(CFG_N_QUERIES) <= bp.n_max)
    ok &= (v(CFG_N_SAMPLES) >= 1) & (v(CFG_N_SAMPLES) <= bp.max_samples)
    return ok


class SerialTop(wiring.Component):
    """The serial design behind one PHY (``"stream"``: ports i/o; ``"uart"``: pins rx/tx), like BoardTop."""

    def __init__(self, bp: BoardParams, phy: str = "stream", *, use_spram: bool = False,
                 reset_buffer: Callable[[Module, Value], Value] | None = None) -> None:
        if not bp.serial:
            raise ValueError(f"{bp.name} is not a serial design (BoardParams.serial)")
        if phy not in ("stream", "uart"):
            raise ValueError(f"phy must be 'stream' or 'uart', not {phy!r}")
        if phy == "uart" and bp.uart_divisor < 4:
            raise ValueError(f"UART phy needs uart_divisor >= 4, got {bp.uart_divisor}")
        self.bp, self.phy, self.use_spram, self.reset_buffer = bp, phy, use_spram, reset_buffer
        self.bulk_map = bulk_map_of(bp)
        if self.bulk_map.depth > BULK_DEPTH:
            raise ValueError(f"{bp.name}: bulk memory needs {self.bulk_map.depth} words, the design has {BULK_DEPTH}")
        self.ident = bp.identify(phy)
        members = ({"i": In(stream.Signature(8)), "o": Out(stream.Signature(FrameByte))} if phy == "stream"
                   else {"rx": In(1, init=1), "tx": Out(1, init=1)})
        members.update({"idle": Out(1), "busy": Out(1)})
        super().__init__(members)

    def elaborate(self, platform) -> Module:
        m = Module()
        bp, bm = self.bp, self.bulk_map
        bits = config_bits(bp, self.ident.n_config)
        m.submodules.cp = cp = CommandProcessor(self.ident, read_latency=READ_LATENCY, config_bits=bits,
                                                narrow_ranges=True)
        m.submodules.bulk = bulk = SinglePortRAM(BULK_DEPTH, 16, use_spram=self.use_spram, byte_enables=True)
        tr = SerialTrainer(bp.net, bp.cfg, bm, use_spram=self.use_spram)
        train_domain(m, cp, self.reset_buffer)
        m.submodules.trainer = DomainRenamer("train")(tr)
        c = cp.config

        # --- operation control: RUN_INFERENCE / RUN_STEPS -> trainer start; errors as BoardTop's ------
        op_busy, op_error, ops = Signal(), Signal(8), Signal(32)
        cfg_ok = Signal()
        m.d.sync += cfg_ok.eq(serial_runnable(c, cp.config_fit, bits, bp, tr.kinds))   # CONFIGURE precedes a start
        started = Signal(2)            # the trainer's busy is up two cycles after the start pulse
        m.d.comb += [cp.op_busy.eq(op_busy), cp.op_error.eq(op_error)]
        m.d.sync += tr.start.eq(0)
        with m.If(cp.soft_reset):
            m.d.sync += [op_busy.eq(0), op_error.eq(0), ops.eq(0), started.eq(0)]
        with m.Elif(cp.op_start & ~op_busy):
            m.d.sync += [op_error.eq(0), tr.op.eq(Mux(cp.op_code == P.Op.INFERENCE, 1, 2)),
                         tr.k_steps.eq(cp.op_arg[:16])]
            with m.If((cp.op_code == P.Op.STEPS) & (cp.op_arg[16:] != 0)):
                m.d.sync += [op_error.eq(ERR_ARG), ops.eq(ops + 1)]
            with m.Elif(~cfg_ok):
                m.d.sync += [op_error.eq(ERR_CONFIG), ops.eq(ops + 1)]
            with m.Else():
                m.d.sync += [op_busy.eq(1), tr.start.eq(1), started.eq(0)]
        with m.Elif(op_busy):
            m.d.sync += started.eq(Cat(1, started[0]))
            with m.If(started[1] & ~tr.busy):
                m.d.sync += [op_busy.eq(0), ops.eq(ops + 1)]
        # the registers cannot change while an operation runs (CONFIGURE is refused while busy)
        m.d.comb += [
            tr.kind.eq(c[CFG_KIND][:len(tr.kind)]),
            tr.n_queries.eq(c[CFG_N_QUERIES]), tr.n_samples.eq(c[CFG_N_SAMPLES]),
            tr.mu_w.eq(c[CFG_MU_W]), tr.mu_b.eq(c[CFG_MU_B]),
            tr.alpha_w.eq(c[CFG_ALPHA_W]), tr.alpha_b.eq(c[CFG_ALPHA_B]),
            tr.seed.eq(c[CFG_SEED]), tr.step0.eq(c[CFG_STEP0]),
        ]

        # --- results -------------------------------------------------------------------------------
        l0 = Signal(64)
        m.d.comb += l0.eq(tr.l0.as_signed())
        res = {RES_STEPS: tr.steps_done, RES_FORWARDS: tr.forwards, RES_L0_LO: l0[:32], RES_L0_HI: l0[32:],
               RES_CORRECT: tr.last_correct, RES_CHANGED: tr.changed, RES_CYCLES_LO: tr.cycles[:32],
               RES_CYCLES_HI: tr.cycles[32:], RES_OPS: ops}
        for k, v in res.items():
            m.d.comb += cp.results[k].eq(v)

        # --- bulk: the trainer's while an operation runs, else the regions' -------------------------
        self._regions(m, cp, bulk, tr, op_busy)
        attach_phy(m, self, cp, op_busy)
        return m

    def _regions(self, m: Module, cp: CommandProcessor, bulk: SinglePortRAM, tr: SerialTrainer, op_busy: Value
                 ) -> None:
        bm = self.bulk_map
        ports = {r.id: cp.port(r) for r in self.ident.regions}
        pp, pb, pl, plog = (ports[P.Region.PARAMS], ports[P.Region.BATCH], ports[P.Region.LABELS],
                            ports[REGION_LOG])
        # Every access is registered before `bulk` (the addresses' adders and the write decode are a
        # cycle ahead): slot k's address is computed in cycle s, presented in s + 1, its word read in
        # s + 2 and captured at the end of s + 2 (<= 7 cycles after an address change: READ_LATENCY).
        slot, slot1, slot2 = Signal(range(5)), Signal(range(5)), Signal(range(5))
        ok1, ok2 = Signal(), Signal()
        m.d.sync += [slot.eq(Mux(slot == 4, 0, slot + 1)), slot1.eq(slot), slot2.eq(slot1)]
        log_e = plog.r_addr[2:]
        log_j = plog.r_addr[:2]
        log_word = Mux(log_j == 0, 0, log_j + 1)          # j = 0: words 0, 1; j = 1: word 2; j = 2: word 3
        read_addr = Signal(15)
        with m.Switch(slot):
            with m.Case(0):
                m.d.comb += read_addr.eq(bm.params + pp.r_addr)
            with m.Case(1):
                m.d.comb += read_addr.eq(bm.batch + (pb.r_addr >> 1))
            with m.Case(2):
                m.d.comb += read_addr.eq(bm.labels + pl.r_addr)
            with m.Case(3):
                m.d.comb += read_addr.eq(bm.log + (log_e << 2) + log_word)
            with m.Case(4):
                m.d.comb += read_addr.eq(bm.log + (log_e << 2) + 1)
        sig = wiring.Signature({"addr": Out(15), "wdata": Out(16), "we": Out(1), "wmask": Out(2)})
        nxt, host = sig.create(path=("host_next",)), sig.create(path=("host",))
        m.d.comb += [nxt.addr.eq(read_addr), nxt.wmask.eq(0b11)]
        with m.If(pp.w_en):
            m.d.comb += [nxt.addr.eq(bm.params + pp.w_addr), nxt.wdata.eq(pp.w_data), nxt.we.eq(1)]
        with m.Elif(pb.w_en):
            m.d.comb += [nxt.addr.eq(bm.batch + (pb.w_addr >> 1)), nxt.wdata.eq(Cat(pb.w_data, pb.w_data)),
                         nxt.wmask.eq(Mux(pb.w_addr[0], 0b10, 0b01)), nxt.we.eq(1)]
        with m.Elif(pl.w_en):
            m.d.comb += [nxt.addr.eq(bm.labels + pl.w_addr), nxt.wdata.eq(pl.w_data), nxt.we.eq(1)]
        m.d.sync += [host.addr.eq(nxt.addr), host.wdata.eq(nxt.wdata), host.we.eq(nxt.we), host.wmask.eq(nxt.wmask),
                     ok1.eq(~nxt.we), ok2.eq(ok1 & ~op_busy)]
        with m.If(op_busy):
            m.d.comb += [bulk.addr.eq(tr.bulk.addr), bulk.wdata.eq(tr.bulk.wdata), bulk.we.eq(tr.bulk.we),
                         bulk.wmask.eq(0b11)]
        with m.Else():
            m.d.comb += [bulk.addr.eq(host.addr), bulk.wdata.eq(host.wdata), bulk.we.eq(host.we),
                         bulk.wmask.eq(host.wmask)]
        m.d.comb += tr.bulk.rdata.eq(bulk.rdata)

        # captured words, one register per slot; region words assembled from them
        words = [Signal(16, name=f"slot{k}") for k in range(5)]
        with m.If(ok2):
            with m.Switch(slot2):
                for k in range(5):
                    with m.Case(k):
                        m.d.sync += words[k].eq(bulk.rdata)
        m.d.comb += [pp.r_data.eq(words[0]), pb.r_data.eq(Mux(pb.r_addr[0], words[1][8:], words[1][:8])),
                     pl.r_data.eq(words[2][:8])]
        with m.Switch(log_j):
            with m.Case(0):
                m.d.comb += plog.r_data.eq(Cat(words[3], words[4]))
            with m.Case(1):
                m.d.comb += plog.r_data.eq(words[3].as_signed())
            with m.Case(2):
                m.d.comb += plog.r_data.eq(words[3])
            with m.Case(3):
                m.d.comb += plog.r_data.eq(Const(0, 32))

