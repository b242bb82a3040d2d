"""Standalone link design: byte stream (or UART) + command processor + region memories + stub engine.

Usable on its own for protocol tests and as the virtual board's skeleton; the integration replaces
:class:`StubEngine` with the real engines and shares the region memories with them.

``phy="stream"`` exposes the command processor's byte streams (`i`, `o`) as top-level ports (the
fast simulation path, and where a PCIe DMA stream attaches); ``phy="uart"`` puts an 8N1 UART
with `ident.uart_divisor` clocks per bit in front (`rx`, `tx` pins).
"""
from amaranth.hdl import Module, Signal
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ttzo.golden import protocol_spec as P

from .cmdproc import CommandProcessor
from .framing import FrameByte
from .uart import UartRx, UartTx


class StubEngine(wiring.Component):
    """Placeholder engine: busy for `op_arg` cycles, then results = [op_code, op_arg, ops completed]."""

    def __init__(self, n_results: int) -> None:
        self.n_results = n_results
        super().__init__({"op_start": In(1), "op_code": In(8), "op_arg": In(32), "soft_reset": In(1),
                          "op_busy": Out(1), "op_error": Out(8), "results": Out(data.ArrayLayout(32, n_results))})

    def elaborate(self, platform) -> Module:
        m = Module()
        left = Signal(32)
        code, arg = Signal(8), Signal(32)
        with m.If(self.soft_reset):
            m.d.sync += [self.op_busy.eq(0), self.results.eq(0)]
        with m.Elif(self.op_start):
            m.d.sync += [self.op_busy.eq(1), left.eq(self.op_arg), code.eq(self.op_code), arg.eq(self.op_arg)]
        with m.Elif(self.op_busy):
            with m.If(left == 0):
                m.d.sync += [self.op_busy.eq(0), self.results[0].eq(code), self.results[1].eq(arg)]
                if self.n_results >= 3:
                    m.d.sync += self.results[2].eq(self.results[2] + 1)
            with m.Else():
                m.d.sync += left.eq(left - 1)
        return m


class LinkTop(wiring.Component):
    """Command processor + one memory per region + stub engine, behind a stream or UART PHY."""

    def __init__(self, ident: P.Identify, phy: str = "stream") -> None:
        if phy not in ("stream", "uart"):
            raise ValueError(f"phy must be 'stream' or 'uart', not {phy!r}")
        if phy == "uart" and ident.uart_divisor < 4:
            raise ValueError(f"UART phy needs uart_divisor >= 4 in the identify record, got {ident.uart_divisor}")
        self.ident, self.phy = ident, phy
        if phy == "stream":
            members = {"i": In(stream.Signature(8)), "o": Out(stream.Signature(FrameByte))}
        else:
            members = {"rx": In(1, init=1), "tx": Out(1, init=1)}
        members["idle"] = Out(1)      # nothing in flight anywhere (lets a simulation pause the clock)
        super().__init__(members)

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.cp = cp = CommandProcessor(self.ident)
        m.submodules.engine = eng = StubEngine(self.ident.n_results)
        m.d.comb += [eng.op_start.eq(cp.op_start), eng.op_code.eq(cp.op_code), eng.op_arg.eq(cp.op_arg),
                     eng.soft_reset.eq(cp.soft_reset), cp.op_busy.eq(eng.op_busy), cp.op_error.eq(eng.op_error),
                     cp.results.eq(eng.results)]
        for r in self.ident.regions:
            mem = memory.Memory(shape=r.width, depth=r.depth, init=[])
            m.submodules[f"mem_{r.name}"] = mem
            wp, rp = mem.write_port(), mem.read_port(transparent_for=())
            port = cp.port(r)
            m.d.comb += [wp.addr.eq(port.w_addr), wp.data.eq(port.w_data), wp.en.eq(port.w_en),
                         rp.addr.eq(port.r_addr), port.r_data.eq(rp.data)]
        if self.phy == "stream":
            wiring.connect(m, wiring.flipped(self.i), cp.i)
            wiring.connect(m, cp.o, wiring.flipped(self.o))
            m.d.comb += self.idle.eq(cp.idle & ~eng.op_busy)
        else:
            m.submodules.urx = urx = UartRx(self.ident.uart_divisor)
            m.submodules.utx = utx = UartTx(self.ident.uart_divisor)
            m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx)]
            wiring.connect(m, urx.o, cp.i)
            m.d.comb += [utx.i.valid.eq(cp.o.valid), utx.i.payload.eq(cp.o.payload.data),
                         cp.o.ready.eq(utx.i.ready), self.idle.eq(cp.idle & ~eng.op_busy & urx.idle & utx.idle)]
        return m


def small_identify(**kw) -> P.Identify:
    """The identify record of the test link design (small memories; see ttzo.sim.link_model)."""
    from ttzo.sim.link_model import default_identify
    return default_identify(**kw)


def to_verilog(ident: P.Identify, phy: str = "stream", name: str = "link_top") -> str:
    from amaranth.back import verilog
    top = LinkTop(ident, phy)
    return verilog.convert(top, name=name, emit_src=False)
