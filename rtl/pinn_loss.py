"""The PINN (HJB) loss on chip: sparse-grid Stein sums, residual and squared residual around the TT engine.

For each collocation point x the sequencer runs the TT engine on the J node inputs
sat(x + delta_j) (one engine batch of J samples; node 0 is the origin), turns each network output
into g_j = (1 - t_j)(1 + NN_j), accumulates the Stein sums sum_j a_j (g_j - g_0) (D components)
and sum_j b_j (g_j - g_0) with one multiplier (D + 1 cycles per node, hidden behind the engine),
then forms grad, lap, the HJB residual r and r^2, and adds r^2 to the batch loss.  The arithmetic
is golden/stein_fixed.py's, bit for bit (docs/rtl-pinn.md has the timing and the memory map).

Interface (a wiring.Component that also *is* a forward engine for rtl/zo_trainer.py's loss-source
hook: ``cfg_*``, ``start``, ``busy``, ``loss_sum``):
  cfg_addr/cfg_data/cfg_en  24-bit word address, region = addr[23:20]: regions 0..4 go to the TT
                            engine (its program and memories, docs/rtl.md); region 8: node-table
                            body words (golden/nodetable.py: per node [delta_1..D, w, a_1..D, b],
                            int32 codes; w is not stored); region 9: collocation points, point p
                            coordinate i at p*D + i (input-format codes); region 10: registers
                            0 n_nodes, 1 n_points, 2 dim.
  start                     pulse: evaluate the loss over n_points points
  busy                      high until the batch loss is final
  loss_sum                  exact sum of the per-point r^2 codes (loss format)
  cycles                    clock cycles while busy
  rd_addr/rd_data           synchronous read of the per-point results (when keep_results):
                            point p at p*(max_dim+3): grad_0..grad_{D-1}, lap, r, r^2.
"""
from __future__ import annotations

from amaranth import Array, Module, Mux, Signal, signed, unsigned
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from ttzo.golden.fixed import QFormat
from ttzo.golden.formats import FixedConfig
from ttzo.golden.stein_fixed import DEFAULT_STEIN_FORMATS, HJB_RHS, SteinFormats

from .descriptors import REGION_SHIFT
from .tt_engine import CFG_ADDR_BITS

REGION_NODES = 8
REGION_POINTS = 9
REGION_REGS = 10
REG_N_NODES, REG_N_POINTS, REG_DIM = 0, 1, 2
#: Result words per point beyond the gradient: lap, r, r^2.
RESULT_EXTRA = 3


def rhu(v, shift: int):
    """Round half up of v / 2^shift (elaboration-time shift; <= 0 is an exact left shift)."""
    if shift <= 0:
        return v << -shift
    return (v + (1 << (shift - 1))) >> shift


def sat(v, fmt: QFormat):
    """Saturate a value to fmt's code range (the caller assigns it to a fmt-wide signal)."""
    return Mux(v < fmt.min_code, fmt.min_code, Mux(v > fmt.max_code, fmt.max_code, v))


def _bits(n: int) -> int:
    return max(1, (n - 1).bit_length())


class PinnLoss(wiring.Component):
    """The HJB residual loss of a batch of collocation points, computed around `engine` (a TTEngine)."""

    #: rtl/zo_trainer.ZoTrainer takes this component as its forward engine and uses `loss_sum`.
    loss_source = True

    def __init__(self, engine, cfg: FixedConfig, *, max_dim: int, max_nodes: int, max_points: int,
                 fmts: SteinFormats = DEFAULT_STEIN_FORMATS, keep_results: bool = True) -> None:
        if engine.params.data_bits < cfg.input.bits or engine.params.data_bits < cfg.act.bits:
            raise ValueError(f"engine data_bits={engine.params.data_bits} cannot hold the input {cfg.input} "
                             f"and act {cfg.act} codes")
        if fmts.table["delta"].frac != cfg.input.frac:
            raise ValueError("the node table's delta format must have the input format's fraction")
        self.engine, self.cfg, self.fmts = engine, cfg, fmts
        self.max_dim, self.max_nodes, self.max_points = max_dim, max_nodes, max_points
        self.keep_results = keep_results
        self.rec_max = 2 * max_dim + 2
        self.stride = max_dim + RESULT_EXTRA
        t = fmts.table
        grow = _bits(max_nodes) + 1
        self.d_bits = fmts.g.bits + 1
        self.acc_bits = self.d_bits + max(t["a"].bits, t["b"].bits) + grow
        self.q_bits = 2 * (fmts.grad.bits + 1) + _bits(max_dim) + 1
        self.sum_bits = fmts.loss.bits + 16
        super().__init__({
            "cfg_addr": In(CFG_ADDR_BITS), "cfg_data": In(32), "cfg_en": In(1),
            "start": In(1), "busy": Out(1), "done": Out(1),
            "loss_sum": Out(signed(self.sum_bits)), "points_done": Out(16), "cycles": Out(48),
            "rd_addr": In(_bits(max_points * self.stride)), "rd_data": Out(signed(64)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        eng, cfg, f = self.engine, self.cfg, self.fmts
        X, A, t = cfg.input, cfg.act, f.table
        m.submodules.engine = eng

        nodes = memory.Memory(shape=signed(32), depth=self.max_nodes * self.rec_max, init=[])
        points = memory.Memory(shape=signed(X.bits), depth=self.max_points * self.max_dim, init=[])
        m.submodules.nodes, m.submodules.points = nodes, points
        n_w, n_src, n_fac = nodes.write_port(), nodes.read_port(), nodes.read_port()
        p_w, p_src, p_t = points.write_port(), points.read_port(), points.read_port()

        n_nodes = Signal(range(self.max_nodes + 1))
        n_points = Signal(range(self.max_points + 1))
        dim = Signal(range(self.max_dim + 1))
        rec_len = Signal(range(self.rec_max + 1))
        m.d.comb += rec_len.eq(2 * dim + 2)

        # --- configuration bus: engine regions pass through, ours are decoded here ------------------
        region = self.cfg_addr[REGION_SHIFT:]
        offset = self.cfg_addr[:REGION_SHIFT]
        m.d.comb += [eng.cfg_addr.eq(self.cfg_addr), eng.cfg_data.eq(self.cfg_data),
                     eng.cfg_en.eq(self.cfg_en & (region < REGION_NODES)),
                     n_w.addr.eq(offset), n_w.data.eq(self.cfg_data),
                     n_w.en.eq(self.cfg_en & (region == REGION_NODES)),
                     p_w.addr.eq(offset), p_w.data.eq(self.cfg_data[:X.bits]),
                     p_w.en.eq(self.cfg_en & (region == REGION_POINTS))]
        with m.If(self.cfg_en & (region == REGION_REGS)):
            with m.Switch(offset):
                with m.Case(REG_N_NODES):
                    m.d.sync += n_nodes.eq(self.cfg_data)
                with m.Case(REG_N_POINTS):
                    m.d.sync += n_points.eq(self.cfg_data)
                with m.Case(REG_DIM):
                    m.d.sync += dim.eq(self.cfg_data)

        busy = Signal()
        m.d.comb += self.busy.eq(busy)
        with m.If(busy):
            m.d.sync += self.cycles.eq(self.cycles + 1)

        # --- input source: sat_X(x + delta_j) for j = 0..J-1, i = 0..D-1 -> engine i stream -------------
        pbase = Signal(range(self.max_points * self.max_dim + 1))
        s_i = Signal(range(self.max_dim + 1))
        s_j = Signal(range(self.max_nodes + 1))
        s_rec = Signal(range(self.max_nodes * self.rec_max + 1))
        sending = Signal()
        can_adv = ~eng.i.valid | eng.i.ready
        m.d.comb += [n_src.addr.eq(s_rec + s_i), n_src.en.eq(can_adv),
                     p_src.addr.eq(pbase + s_i), p_src.en.eq(can_adv)]
        y = Signal(signed(X.bits))
        m.d.comb += [y.eq(sat(p_src.data + n_src.data, X)), eng.i.payload.eq(y)]
        with m.If(can_adv):
            m.d.sync += eng.i.valid.eq(sending)
            with m.If(sending):
                with m.If(s_i + 1 == dim):
                    m.d.sync += [s_i.eq(0), s_j.eq(s_j + 1), s_rec.eq(s_rec + rec_len)]
                    with m.If(s_j + 1 == n_nodes):
                        m.d.sync += sending.eq(0)
                with m.Else():
                    m.d.sync += s_i.eq(s_i + 1)

        # --- per-node datapath: g_j, d_j, Stein MACs --------------------------------------------------------
        m.d.comb += [p_t.addr.eq(pbase + dim - 1), eng.batch.eq(n_nodes)]
        t_x = p_t.data
        jm = Signal(range(self.max_nodes + 1))
        rec_m = Signal(range(self.max_nodes * self.rec_max + 1))
        k = Signal(range(self.max_dim + 2))
        nn = Signal(signed(A.bits))
        g0 = Signal(signed(f.g.bits))
        dval = Signal(signed(self.d_bits))
        accs = Array(Signal(signed(self.acc_bits), name=f"acc{i}") for i in range(self.max_dim + 1))

        t_node = Signal(signed(X.bits))
        omt = Signal(signed(X.bits))
        onn = Signal(signed(A.bits))
        prod = Signal(signed(X.bits + A.bits + 1))
        g = Signal(signed(f.g.bits))
        m.d.comb += [t_node.eq(sat(t_x + n_fac.data, X)), omt.eq(sat((1 << X.frac) - t_node, X)),
                     onn.eq(sat((1 << A.frac) + nn, A)), prod.eq(omt * onn),
                     g.eq(sat(rhu(prod, X.frac + A.frac - f.g.frac), f.g))]

        # --- finalisation: grad, lap, residual, r^2 ------------------------------------------------------------
        acc_k = Signal(signed(self.acc_bits))
        m.d.comb += acc_k.eq(accs[k])
        grad_c = Signal(signed(f.grad.bits))
        lap_c = Signal(signed(f.lap.bits))
        m.d.comb += [grad_c.eq(sat(rhu(acc_k, f.g.frac + t["a"].frac - f.grad.frac), f.grad)),
                     lap_c.eq(sat(rhu(acc_k, f.g.frac + t["b"].frac - f.lap.frac), f.lap))]
        v = Signal(signed(f.grad.bits + 2))
        m.d.comb += v.eq((1 << f.grad.frac) + grad_c)
        Q = Signal(unsigned(self.q_bits))
        g_t = Signal(signed(f.grad.bits))
        lap_r = Signal(signed(f.lap.bits))
        q_r = Signal(unsigned(self.q_bits))
        q = Signal(unsigned(self.q_bits + 1))
        m.d.comb += [q_r.eq(rhu(Q, 2 * f.grad.frac - f.res.frac)),
                     q.eq(rhu(q_r * f.coeff_code, f.coeff_frac))]
        r_raw = Signal(signed(max(self.q_bits, f.grad.bits, f.lap.bits) + 8))
        m.d.comb += r_raw.eq(rhu(g_t, f.grad.frac - f.res.frac) + rhu(lap_r, f.lap.frac - f.res.frac) - q
                             + (-HJB_RHS << f.res.frac))
        r = Signal(signed(f.res.bits))
        r_sq = Signal(signed(2 * f.res.bits))
        l_c = Signal(signed(f.loss.bits))
        m.d.comb += [r_sq.eq(r * r), l_c.eq(sat(rhu(r_sq, 2 * f.res.frac - f.loss.frac), f.loss))]

        # results memory (verification and host read-back)
        res_base = Signal(range(self.max_points * self.stride + 1))
        res_w_addr = Signal(range(self.max_points * self.stride + 1))
        res_w_data = Signal(signed(64))
        res_w_en = Signal()
        if self.keep_results:
            results = memory.Memory(shape=signed(64), depth=self.max_points * self.stride, init=[])
            m.submodules.results = results
            r_w, r_r = results.write_port(), results.read_port()
            m.d.comb += [r_w.addr.eq(res_w_addr), r_w.data.eq(res_w_data), r_w.en.eq(res_w_en),
                         r_r.addr.eq(self.rd_addr), self.rd_data.eq(r_r.data)]

        # --- sequencer ------------------------------------------------------------------------------------------
        p = Signal(16)
        m.d.comb += self.points_done.eq(p)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [busy.eq(1), self.done.eq(0), p.eq(0), pbase.eq(0), res_base.eq(0),
                                 self.loss_sum.eq(0), self.cycles.eq(0)]
                    with m.If(n_points == 0):
                        m.next = "DONE"
                    with m.Else():
                        m.next = "POINT"
            with m.State("POINT"):   # start the engine on the J node inputs of point p
                with m.If(~eng.busy):
                    m.d.comb += eng.start.eq(1)
                    m.d.sync += [sending.eq(1), s_i.eq(0), s_j.eq(0), s_rec.eq(0), eng.i.valid.eq(0),
                                 jm.eq(0), rec_m.eq(0), Q.eq(0)]
                    m.d.sync += [a.eq(0) for a in accs]
                    m.next = "OUT_WAIT"
            with m.State("OUT_WAIT"):   # node address: delta_t of node jm
                m.d.comb += [n_fac.addr.eq(rec_m + dim - 1), eng.o.ready.eq(1)]
                with m.If(eng.o.valid):
                    m.d.sync += nn.eq(eng.o.payload)
                    m.next = "G"
            with m.State("G"):          # g_j (comb from nn, t and delta_t); prefetch a_{j,0}
                m.d.comb += n_fac.addr.eq(rec_m + dim + 1)
                m.d.sync += k.eq(0)
                with m.If(jm == 0):
                    m.d.sync += g0.eq(g)
                    m.next = "NEXT"
                with m.Else():
                    m.d.sync += dval.eq(g - g0)
                    m.next = "MAC"
            with m.State("MAC"):        # acc_k += factor_k * d_j, k = 0..D (a_0..a_{D-1}, b)
                m.d.comb += n_fac.addr.eq(rec_m + dim + 2 + k)
                m.d.sync += [accs[k].eq(accs[k] + n_fac.data * dval), k.eq(k + 1)]
                with m.If(k == dim):
                    m.next = "NEXT"
            with m.State("NEXT"):
                m.d.sync += [jm.eq(jm + 1), rec_m.eq(rec_m + rec_len), k.eq(0)]
                with m.If(jm + 1 == n_nodes):
                    m.next = "FIN"
                with m.Else():
                    m.next = "OUT_WAIT"
            with m.State("FIN"):        # k = 0..D-1: gradient; k = D: Laplacian
                m.d.comb += [res_w_addr.eq(res_base + k), res_w_en.eq(1),
                             res_w_data.eq(Mux(k == dim, lap_c, grad_c))]
                m.d.sync += k.eq(k + 1)
                with m.If(k + 1 < dim):
                    m.d.sync += Q.eq(Q + (v * v).as_unsigned())
                with m.If(k + 1 == dim):
                    m.d.sync += g_t.eq(grad_c)
                with m.If(k == dim):
                    m.d.sync += lap_r.eq(lap_c)
                    m.next = "RES"
            with m.State("RES"):
                m.d.sync += r.eq(sat(r_raw, f.res))
                m.next = "LOSS"
            with m.State("LOSS"):
                m.d.comb += [res_w_addr.eq(res_base + dim + 1), res_w_data.eq(r), res_w_en.eq(1)]
                m.next = "LOSS2"
            with m.State("LOSS2"):
                m.d.comb += [res_w_addr.eq(res_base + dim + 2), res_w_data.eq(l_c), res_w_en.eq(1)]
                m.d.sync += [self.loss_sum.eq(self.loss_sum + l_c), p.eq(p + 1), pbase.eq(pbase + dim),
                             res_base.eq(res_base + self.stride)]
                with m.If(p + 1 == n_points):
                    m.next = "DONE"
                with m.Else():
                    m.next = "POINT"
            with m.State("DONE"):
                with m.If(~eng.busy):
                    m.d.sync += [busy.eq(0), self.done.eq(1)]
                    m.next = "IDLE"
        return m
