"""8N1 UART receiver and transmitter with a configurable clock divisor, as lib.stream byte streams.

`divisor` = clock cycles per bit (clock_hz // baud), fixed at elaboration.  The receiver
synchronises the pin through two flip-flops, samples mid-bit, drops a byte whose stop bit is 0
(counted in `frame_errors`) and holds one received byte until `o.ready`; a byte arriving while
the previous one waits is dropped and counted in `overruns` (the framing layer's CRC then rejects
the frame, and the host retransmits).
"""
from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out


class UartTx(wiring.Component):
    i: In(stream.Signature(8))
    tx: Out(1, init=1)
    idle: Out(1)

    def __init__(self, divisor: int) -> None:
        if divisor < 2:
            raise ValueError(f"UART divisor {divisor} must be at least 2 clock cycles per bit")
        self.divisor = divisor
        super().__init__()

    def elaborate(self, platform) -> Module:
        m = Module()
        timer = Signal(range(self.divisor))
        shreg = Signal(10)
        bits = Signal(range(11))               # bits left to send, the current one included
        bit_done = timer == self.divisor - 1
        m.d.comb += [self.tx.eq(Mux(bits == 0, 1, shreg[0])), self.idle.eq(bits == 0)]
        with m.If(bits != 0):
            m.d.sync += timer.eq(Mux(bit_done, 0, timer + 1))
            with m.If(bit_done):
                m.d.sync += [shreg.eq(shreg >> 1), bits.eq(bits - 1)]
        # Take the next byte when idle or as the stop bit ends, so back-to-back bytes keep the bit grid.
        with m.If((bits == 0) | ((bits == 1) & bit_done)):
            m.d.comb += self.i.ready.eq(1)
            with m.If(self.i.valid):
                m.d.sync += [shreg.eq(Cat(0, self.i.payload, 1)), bits.eq(10), timer.eq(0)]
        return m


class UartRx(wiring.Component):
    rx: In(1, init=1)
    o: Out(stream.Signature(8))
    frame_errors: Out(16)
    overruns: Out(16)
    idle: Out(1)

    def __init__(self, divisor: int) -> None:
        if divisor < 4:
            raise ValueError(f"UART divisor {divisor} must be at least 4 clock cycles per bit")
        self.divisor = divisor
        super().__init__()

    def elaborate(self, platform) -> Module:
        m = Module()
        pin = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, pin, init=1)
        timer = Signal(range(self.divisor))
        shreg = Signal(8)
        bitno = Signal(range(10))
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.idle.eq(~self.o.valid)
                with m.If(~pin):
                    m.d.sync += timer.eq(self.divisor // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(timer == 0):
                    with m.If(pin):                     # glitch, not a start bit
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += [timer.eq(self.divisor - 1), bitno.eq(0)]
                        m.next = "DATA"
                with m.Else():
                    m.d.sync += timer.eq(timer - 1)
            with m.State("DATA"):
                with m.If(timer == 0):
                    m.d.sync += [shreg.eq(Cat(shreg[1:], pin)), timer.eq(self.divisor - 1), bitno.eq(bitno + 1)]
                    with m.If(bitno == 7):
                        m.next = "STOP"
                with m.Else():
                    m.d.sync += timer.eq(timer - 1)
            with m.State("STOP"):
                with m.If(timer == 0):
                    with m.If(~pin):
                        m.d.sync += self.frame_errors.eq(self.frame_errors + 1)
                    with m.Elif(self.o.valid & ~self.o.ready):
                        m.d.sync += self.overruns.eq(self.overruns + 1)
                    with m.Else():
                        m.d.sync += [self.o.valid.eq(1), self.o.payload.eq(shreg)]
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += timer.eq(timer - 1)
        return m
