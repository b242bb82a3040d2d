"""Single-port RAM: iCE40 UltraPlus SPRAM blocks when asked, else an inferred `lib.memory.Memory`.

Yosys infers SB_SPRAM256KA only for a strict single-port memory, and a design that keeps its
big buffers in EBR does not fit the UP5K; so on iCE40 the blocks are instantiated (16K x 16 each,
cascaded by address with a registered output select).  Elsewhere one read and one write port
share the address, which every vendor's block RAM maps.  Read latency: one cycle.
Used by the stand-in datapath (boards/datapath.py) and the serial design (docs/rtl-serial.md).
"""
from __future__ import annotations

import math

from amaranth.hdl import Array, Cat, ClockSignal, Instance, Module, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

SPRAM_DEPTH, SPRAM_WIDTH = 16384, 16


def SinglePortSignature(depth: int, width: int = 16) -> wiring.Signature:
    """A single-port RAM seen from its user: ``addr``, ``wdata``, ``we`` out, ``rdata`` in (one cycle later).

    A cycle with ``we`` writes ``wdata`` at ``addr``; its ``rdata`` (next cycle) is undefined.
    """
    return wiring.Signature({"addr": Out(range(depth)), "wdata": Out(width), "we": Out(1), "rdata": In(width)})


class SinglePortRAM(wiring.Component):
    """`depth` x `width` single-port RAM (``SinglePortSignature`` flipped): SPRAM blocks or a `Memory`."""

    def __init__(self, depth: int, width: int = 16, *, use_spram: bool = False, byte_enables: bool = False) -> None:
        """`byte_enables`: an extra ``wmask`` input (one bit per byte of a 16-bit word; SPRAM's MASKWREN)."""
        if depth < 1 or width < 1:
            raise ValueError(f"RAM depth {depth} and width {width} must be positive")
        if use_spram and width > SPRAM_WIDTH:
            raise ValueError(f"SPRAM words are {SPRAM_WIDTH} bits, asked for {width}")
        if byte_enables and width != 16:
            raise ValueError(f"byte enables need 16-bit words, asked for {width}")
        self.depth, self.width, self.use_spram, self.byte_enables = depth, width, use_spram, byte_enables
        members = {"addr": In(range(depth)), "wdata": In(width), "we": In(1), "rdata": Out(width)}
        if byte_enables:
            members["wmask"] = In(2, init=0b11)
        super().__init__(members)

    @property
    def blocks(self) -> int:
        return math.ceil(self.depth / SPRAM_DEPTH) if self.use_spram else 0

    def elaborate(self, platform) -> Module:
        m = Module()
        if not self.use_spram:
            m.submodules.mem = mem = Memory(shape=unsigned(self.width), depth=self.depth, init=[])
            rp = mem.read_port()
            wp = mem.write_port(granularity=8) if self.byte_enables else mem.write_port()
            en = self.wmask & self.we.replicate(2) if self.byte_enables else self.we
            m.d.comb += [rp.addr.eq(self.addr), wp.addr.eq(self.addr), wp.data.eq(self.wdata),
                         wp.en.eq(en), self.rdata.eq(rp.data)]
            return m
        outs = []
        nibbles = Cat(self.wmask[0], self.wmask[0], self.wmask[1], self.wmask[1]) if self.byte_enables else 0b1111
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
                i_ADDRESS=addr[:14], i_DATAIN=self.wdata, i_MASKWREN=nibbles,
                i_WREN=self.we & (sel == i), i_CHIPSELECT=1, i_CLOCK=ClockSignal("sync"),
                i_STANDBY=0, i_SLEEP=0, i_POWEROFF=1, o_DATAOUT=dout)
        m.d.comb += self.rdata.eq(Array(outs)[sel_q] if self.blocks > 1 else outs[0])
        return m
