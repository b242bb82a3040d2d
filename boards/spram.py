"""Single-port RAM: iCE40 UltraPlus SPRAM blocks when asked, else an inferred `lib.memory.Memory`.

Yosys infers SB_SPRAM256KA only for a strict single-port memory, and a design that keeps its
big buffers in EBR does not fit the UP5K; so on iCE40 the blocks are instantiated (16K x 16 each,
cascaded by address with a registered output select).  Elsewhere one read and one write port
share the address, which every vendor's block RAM maps.  Read latency: one cycle.
"""
from __future__ import annotations

import math

from amaranth.hdl import Array, ClockSignal, Instance, Module, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

SPRAM_DEPTH, SPRAM_WIDTH = 16384, 16


class SinglePortRAM(wiring.Component):
    def __init__(self, depth: int, width: int = 16, *, use_spram: bool = False) -> None:
        if depth < 1 or width < 1:
            raise ValueError(f"RAM depth {depth} and width {width} must be positive")
        if use_spram and width > SPRAM_WIDTH:
            raise ValueError(f"SPRAM words are {SPRAM_WIDTH} bits, asked for {width}")
        self.depth, self.width, self.use_spram = depth, width, use_spram
        super().__init__({"addr": In(range(depth)), "wdata": In(width), "we": In(1), "rdata": Out(width)})

    @property
    def blocks(self) -> int:
        return math.ceil(self.depth / SPRAM_DEPTH) if self.use_spram else 0

    def elaborate(self, platform) -> Module:
        m = Module()
        if not self.use_spram:
            m.submodules.mem = mem = Memory(shape=unsigned(self.width), depth=self.depth, init=[])
            rp, wp = mem.read_port(), mem.write_port()
            m.d.comb += [rp.addr.eq(self.addr), wp.addr.eq(self.addr), wp.data.eq(self.wdata),
                         wp.en.eq(self.we), self.rdata.eq(rp.data)]
            return m
        outs = []
        addr = Signal(max(14, len(self.addr)))
        m.d.comb += addr.eq(self.addr)
        sel = addr[14:] if self.blocks > 1 else 0
        sel_q = Signal(range(max(2, self.blocks)))
        m.d.sync += sel_q.eq(sel)
        for i in range(self.blocks):
            dout = Signal(SPRAM_WIDTH, name=f"dout{i}")
            outs.append(dout)
            m.submodules[f"spram{i}"] = Instance(
                "SB_SPRAM256KA",
                i_ADDRESS=addr[:14], i_DATAIN=self.wdata, i_MASKWREN=0b1111,
                i_WREN=self.we & (sel == i), i_CHIPSELECT=1, i_CLOCK=ClockSignal("sync"),
                i_STANDBY=0, i_SLEEP=0, i_POWEROFF=1, o_DATAOUT=dout)
        m.d.comb += self.rdata.eq(Array(outs)[sel_q] if self.blocks > 1 else outs[0])
        return m
