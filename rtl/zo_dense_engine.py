"""A one-MAC dense-layer forward engine with the TT engine's interface (rtl/tt_engine.py).

It computes golden's ``tt_forward_fixed`` for the L = 1 TT layer (one core (1, N, M, 1), i.e. a
dense N -> M matrix, identity activation: logits).  It exists so the ZO training sequencer
(rtl/zo_trainer.py) can be proven against golden quickly, in Amaranth's simulator, with a tiny
network; the same sequencer drives the TT engine unchanged.  Deliberately small, not fast.

Interface (the subset of TTEngine's that the trainer uses):
  ``cfg_addr``/``cfg_data``/``cfg_en``  write bus: region 2 (cores) offset i*M + j = W[i, j],
                                        region 3 (biases) offset j = b_j (rtl/descriptors.py map)
  ``i``  input codes, N per sample;  ``o``  output codes, M per sample
  ``start`` (with ``batch``) runs the batch; ``busy`` until the last output has left ``o``.
Per sample: N x (M + 1) cycles of MACs plus M output cycles.
"""
from amaranth import Array, Module, Signal, signed
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ttzo.golden.fixed import QFormat
from ttzo.golden.formats import DEFAULT_CONFIG

from .descriptors import REGION_BIASES, REGION_CORES, REGION_SHIFT
from .perturb import saturate_value
from .tt_engine import CFG_ADDR_BITS


class DenseEngine(wiring.Component):
    def __init__(self, n_in: int, n_out: int, x_fmt: QFormat = DEFAULT_CONFIG.input,
                 weight: QFormat = DEFAULT_CONFIG.weight, bias: QFormat = DEFAULT_CONFIG.bias,
                 out: QFormat = DEFAULT_CONFIG.act, data_bits: int = 20) -> None:
        self.n_in, self.n_out, self.x_fmt, self.weight, self.bias, self.out = n_in, n_out, x_fmt, weight, bias, out
        self.acc_frac = x_fmt.frac + weight.frac
        if bias.frac > self.acc_frac:
            raise ValueError("bias fraction exceeds the accumulator's")
        self.acc_bits = data_bits + weight.bits + max(1, n_in.bit_length()) + 3
        self.data_bits = data_bits
        super().__init__({
            "i": In(stream.Signature(signed(data_bits))),
            "o": Out(stream.Signature(signed(data_bits))),
            "cfg_addr": In(CFG_ADDR_BITS), "cfg_data": In(32), "cfg_en": In(1),
            "start": In(1), "batch": In(16), "busy": Out(1), "cycles": Out(32),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        N, M = self.n_in, self.n_out
        m.submodules.w = wmem = memory.Memory(shape=signed(self.weight.bits), depth=N * M, init=[])
        m.submodules.b = bmem = memory.Memory(shape=signed(self.bias.bits), depth=M, init=[])
        w_wr, b_wr = wmem.write_port(), bmem.write_port()
        w_rd, b_rd = wmem.read_port(), bmem.read_port()   # sync reads, addressed with the next index
        region = self.cfg_addr[REGION_SHIFT:]
        offset = self.cfg_addr[:REGION_SHIFT]
        m.d.comb += [w_wr.addr.eq(offset), w_wr.data.eq(self.cfg_data[:self.weight.bits]),
                     w_wr.en.eq(self.cfg_en & (region == REGION_CORES)),
                     b_wr.addr.eq(offset), b_wr.data.eq(self.cfg_data[:self.bias.bits]),
                     b_wr.en.eq(self.cfg_en & (region == REGION_BIASES))]

        acc = Array(Signal(signed(self.acc_bits), name=f"acc{j}") for j in range(M))
        n_done = Signal(16)
        i = Signal(range(N + 1))
        j = Signal(range(M + 1))
        x = Signal(signed(self.data_bits))
        shift_b = self.acc_frac - self.bias.frac
        s = self.acc_frac - self.out.frac
        total = Signal(signed(self.acc_bits + 1))
        widx = Signal(range(N * M + 1))   # flat index of W[i, j] in the MAC loop
        widx_next = Signal.like(widx)
        j_next = Signal.like(j)
        m.d.comb += [widx_next.eq(widx), j_next.eq(j), w_rd.addr.eq(widx_next), b_rd.addr.eq(j_next)]
        m.d.sync += [widx.eq(widx_next), j.eq(j_next)]
        m.d.comb += total.eq(acc[j] + (b_rd.data << shift_b))
        rounded = (total + (1 << (s - 1))) >> s if s > 0 else total << -s
        with m.If(self.busy):
            m.d.sync += self.cycles.eq(self.cycles + 1)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [n_done.eq(0), self.busy.eq(1), self.cycles.eq(0)]
                    m.next = "SAMPLE"
            with m.State("SAMPLE"):
                with m.If(n_done == self.batch):
                    m.d.sync += self.busy.eq(0)
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += [i.eq(0)] + [a.eq(0) for a in acc]
                    m.d.comb += [widx_next.eq(0), j_next.eq(0)]
                    m.next = "INPUT"
            with m.State("INPUT"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    m.d.sync += x.eq(self.i.payload)
                    m.next = "MAC"
            with m.State("MAC"):        # acc[j] += x_i * W[i, j]
                m.d.sync += acc[j].eq(acc[j] + x * w_rd.data)
                m.d.comb += [widx_next.eq(widx + 1), j_next.eq(j + 1)]
                with m.If(j == M - 1):
                    m.d.sync += i.eq(i + 1)
                    m.d.comb += j_next.eq(0)
                    with m.If(i == N - 1):
                        m.next = "OUT"
                    with m.Else():
                        m.next = "INPUT"
            with m.State("OUT"):        # y_j = sat(round((acc_j + b_j << shift) >> s))
                m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(saturate_value(rounded, self.out))]
                with m.If(self.o.ready):
                    m.d.comb += j_next.eq(j + 1)
                    with m.If(j == M - 1):
                        m.d.sync += n_done.eq(n_done + 1)
                        m.next = "SAMPLE"
        return m
