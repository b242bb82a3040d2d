"""Simulation top: the TT engine plus a sample memory that feeds its input stream and a result memory.

The testbench loads the engine's program and a whole batch of input samples through the
configuration bus, pulses `start` and awaits the fall of `busy`: the clock then runs inside
the simulator, never stepped from Python while the engine works.  Results are read back
through an asynchronous read port (no clock needed).

Extra bus region 5 holds the samples (32-bit words, code in the low bits).  `throttle`
makes the output sink accept only every other cycle (exercises stream back-pressure).
"""
from __future__ import annotations

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..rtl.descriptors import REGION_SHIFT, EngineParams
from ..rtl.tt_engine import CFG_ADDR_BITS, TTEngine

REGION_SAMPLES = 5


class EngineHarness(wiring.Component):
    def __init__(self, params: EngineParams, sample_words: int = 1 << 17, result_words: int = 1 << 14) -> None:
        self.params, self.sample_words, self.result_words = params, sample_words, result_words
        W = params.data_bits
        super().__init__({
            "cfg_addr": In(CFG_ADDR_BITS), "cfg_data": In(32), "cfg_en": In(1),
            "start": In(1), "batch": In(16), "total_in": In(32), "throttle": In(1),
            "busy": Out(1), "cycles": Out(32), "n_results": Out(32),
            "rd_addr": In(max(1, (result_words - 1).bit_length())), "rd_data": Out(signed(W)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        W = self.params.data_bits
        m.submodules.engine = eng = TTEngine(self.params)
        m.submodules.samples = samples = Memory(shape=signed(W), depth=self.sample_words, init=[])
        m.submodules.results = results = Memory(shape=signed(W), depth=self.result_words, init=[])
        s_w, s_r = samples.write_port(), samples.read_port()
        r_w, r_r = results.write_port(), results.read_port(domain="comb")

        region = self.cfg_addr[REGION_SHIFT:]
        m.d.comb += [eng.cfg_addr.eq(self.cfg_addr), eng.cfg_data.eq(self.cfg_data),
                     eng.cfg_en.eq(self.cfg_en & (region != REGION_SAMPLES)),
                     s_w.addr.eq(self.cfg_addr[:REGION_SHIFT]), s_w.data.eq(self.cfg_data[:W]),
                     s_w.en.eq(self.cfg_en & (region == REGION_SAMPLES)),
                     eng.start.eq(self.start), eng.batch.eq(self.batch),
                     self.cycles.eq(eng.cycles), r_r.addr.eq(self.rd_addr), self.rd_data.eq(r_r.data)]

        # sample source: samples[0 .. total_in-1] -> eng.i (read latency 1, held while stalled)
        src_idx = Signal(32)
        sending = Signal()
        can_adv = ~eng.i.valid | eng.i.ready
        m.d.comb += [s_r.addr.eq(src_idx), s_r.en.eq(can_adv), eng.i.payload.eq(s_r.data)]
        with m.If(can_adv):
            m.d.sync += eng.i.valid.eq(sending & (src_idx != self.total_in))
            with m.If(sending & (src_idx != self.total_in)):
                m.d.sync += src_idx.eq(src_idx + 1)

        # result sink
        toggle = Signal()
        m.d.sync += toggle.eq(~toggle)
        m.d.comb += eng.o.ready.eq(~self.throttle | toggle)
        m.d.comb += [r_w.addr.eq(self.n_results), r_w.data.eq(eng.o.payload),
                     r_w.en.eq(eng.o.valid & eng.o.ready)]
        with m.If(eng.o.valid & eng.o.ready):
            m.d.sync += self.n_results.eq(self.n_results + 1)

        with m.If(self.start):
            m.d.sync += [src_idx.eq(0), sending.eq(1), self.n_results.eq(0), eng.i.valid.eq(0)]
        m.d.comb += self.busy.eq(eng.busy)
        return m
