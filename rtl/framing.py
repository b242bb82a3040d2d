"""SLIP frame decoder (with CRC check) and encoder (appending CRC) on lib.stream byte streams.

Decoder: raw line bytes in, tokens out.  Every decoded byte becomes a data token; every END
becomes an end token whose flags say whether the CRC residue over the frame's bytes is zero and
whether an escape was malformed.  Garbage costs at most the frame it lands in: the next END
restarts the decoder (resynchronisation).  The command processor counts bytes and ignores empty
frames (back-to-back END bytes).

Encoder: frame bytes (header + payload, `last` on the final one) in, line bytes out:
``END, escaped bytes, escaped CRC (big-endian), END`` with `last` set on the closing END so a DMA
stream (AXI-Stream TLAST) can end its packet there.
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ttzo.golden.protocol_spec import END, ESC, ESC_END, ESC_ESC

from .crc import INIT, crc16_update

#: A decoded token: a byte of a frame, or (end=1) the end of a frame with its check results.
Token = data.StructLayout({"data": 8, "end": 1, "crc_ok": 1, "bad_escape": 1})
#: A byte with a frame-end marker (frame bytes into the encoder, line bytes out of it).
FrameByte = data.StructLayout({"data": 8, "last": 1})


class FrameDecoder(wiring.Component):
    """Line bytes -> tokens (SLIP unescape, CRC residue check at each END)."""

    i: In(stream.Signature(8))
    o: Out(stream.Signature(Token))

    def elaborate(self, platform) -> Module:
        m = Module()
        crc = Signal(16, init=INIT)
        esc = Signal()
        bad = Signal()
        b = self.i.payload

        with m.If(self.o.ready | ~self.o.valid):           # output register free (or being emptied)
            m.d.comb += self.i.ready.eq(1)
            m.d.sync += self.o.valid.eq(0)
            with m.If(self.i.valid):
                with m.If(b == END):
                    m.d.sync += [self.o.valid.eq(1), self.o.payload.end.eq(1), self.o.payload.data.eq(0),
                                 self.o.payload.crc_ok.eq(crc == 0), self.o.payload.bad_escape.eq(bad | esc),
                                 crc.eq(INIT), esc.eq(0), bad.eq(0)]
                with m.Elif(esc):
                    byte = Mux(b == ESC_END, END, Mux(b == ESC_ESC, ESC, b))
                    m.d.sync += [esc.eq(0), bad.eq(bad | ((b != ESC_END) & (b != ESC_ESC))),
                                 self.o.valid.eq(1), self.o.payload.end.eq(0), self.o.payload.data.eq(byte),
                                 crc.eq(crc16_update(crc, byte))]
                with m.Elif(b == ESC):
                    m.d.sync += esc.eq(1)
                with m.Else():
                    m.d.sync += [self.o.valid.eq(1), self.o.payload.end.eq(0), self.o.payload.data.eq(b),
                                 crc.eq(crc16_update(crc, b))]
        return m


class FrameEncoder(wiring.Component):
    """Frame bytes -> line bytes: leading END, SLIP-escaped bytes and CRC, closing END (last=1)."""

    i: In(stream.Signature(FrameByte))
    o: Out(stream.Signature(FrameByte))

    def elaborate(self, platform) -> Module:
        m = Module()
        crc = Signal(16, init=INIT)
        cur = Signal(8)          # byte being emitted (may need an escape first)
        phase = Signal()         # 0: emit ESC or the plain byte; 1: emit the escape code
        after = Signal(2)        # what follows `cur`: 0 next input byte, 1 CRC low byte, 2 closing END

        special = (cur == END) | (cur == ESC)
        code = Mux(cur == END, ESC_END, ESC_ESC)

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += [self.o.valid.eq(self.i.valid), self.o.payload.data.eq(END)]
                with m.If(self.i.valid & self.o.ready):
                    m.next = "LOAD"
            with m.State("LOAD"):                            # take one input byte into `cur`
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    m.d.sync += [cur.eq(self.i.payload.data), phase.eq(0),
                                 crc.eq(crc16_update(crc, self.i.payload.data)),
                                 after.eq(Mux(self.i.payload.last, 1, 0))]
                    m.next = "EMIT"
            with m.State("EMIT"):
                m.d.comb += [self.o.valid.eq(1),
                             self.o.payload.data.eq(Mux(phase, code, Mux(special, ESC, cur)))]
                with m.If(self.o.ready):
                    with m.If(special & ~phase):
                        m.d.sync += phase.eq(1)
                    with m.Elif(after == 0):
                        m.next = "LOAD"
                    with m.Elif(after == 1):                   # frame done: CRC high byte, then low byte
                        m.d.sync += [cur.eq(crc[8:16]), phase.eq(0), after.eq(2)]
                    with m.Elif(after == 2):
                        m.d.sync += [cur.eq(crc[0:8]), phase.eq(0), after.eq(3)]
                    with m.Else():
                        m.next = "CLOSE"
            with m.State("CLOSE"):
                m.d.comb += [self.o.valid.eq(1), self.o.payload.data.eq(END), self.o.payload.last.eq(1)]
                with m.If(self.o.ready):
                    m.d.sync += crc.eq(INIT)
                    m.next = "IDLE"
        return m
