"""A minimal 8N1 UART (byte streams in and out) for the stand-in board top.

Only here so a board build has a realistic pin count (clock, rx, tx) before the link layer
(rtl/uart.py, rtl/link_top.py) is wired in; `boards.top` prefers the real link top when it is
registered.  Divisor = clock / baud; rx samples mid-bit after a two-flop synchroniser.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out


class UartShell(wiring.Component):
    """rx/tx pins <-> `rx` (bytes received, stream out) and `tx` (bytes to send, stream in)."""

    def __init__(self, divisor: int) -> None:
        if divisor < 4:
            raise ValueError(f"UART divisor {divisor} < 4: clock too slow for the baud rate")
        self.divisor = divisor
        super().__init__({
            "rx_pin": In(1, init=1), "tx_pin": Out(1, init=1),
            "rx": Out(stream.Signature(8)), "tx": In(stream.Signature(8)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        d = self.divisor

        # --- receiver ---
        rx = Signal(init=1)
        m.submodules.rx_sync = FFSynchronizer(self.rx_pin, rx, init=1)
        rx_timer = Signal(range(d + d // 2 + 1))
        rx_bits = Signal(range(10))
        rx_shift = Signal(8)
        with m.If(self.rx.ready):
            m.d.sync += self.rx.valid.eq(0)
        with m.If(rx_bits == 0):
            with m.If(~rx):                       # start bit: sample data bit 0 in 1.5 bit times
                m.d.sync += [rx_timer.eq(d + d // 2 - 1), rx_bits.eq(9)]
        with m.Elif(rx_timer != 0):
            m.d.sync += rx_timer.eq(rx_timer - 1)
        with m.Else():
            m.d.sync += [rx_timer.eq(d - 1), rx_bits.eq(rx_bits - 1)]
            with m.If(rx_bits == 1):              # stop bit
                with m.If(rx):
                    m.d.sync += [self.rx.payload.eq(rx_shift), self.rx.valid.eq(1)]
            with m.Else():
                m.d.sync += rx_shift.eq(Cat(rx_shift[1:], rx))

        # --- transmitter ---
        tx_timer = Signal(range(d))
        tx_bits = Signal(range(11))
        tx_shift = Signal(10, init=0x3FF)
        m.d.comb += [self.tx_pin.eq(tx_shift[0]), self.tx.ready.eq(tx_bits == 0)]
        with m.If(tx_bits == 0):
            with m.If(self.tx.valid):
                m.d.sync += [tx_shift.eq(Cat(0, self.tx.payload, 1)), tx_bits.eq(10), tx_timer.eq(d - 1)]
        with m.Elif(tx_timer != 0):
            m.d.sync += tx_timer.eq(tx_timer - 1)
        with m.Else():
            m.d.sync += [tx_shift.eq(Cat(tx_shift[1:], 1)), tx_bits.eq(tx_bits - 1), tx_timer.eq(d - 1)]
        return m
