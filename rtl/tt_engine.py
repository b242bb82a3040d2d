"""TT-contraction inference engine: runs a whole TT network (a program of absorption steps) per sample.

One generic datapath computes every absorption step of every layer (rtl/descriptors.py):
P MAC lanes take P state rows f of one group and share the core operand; for each core
column c they accumulate a K-long exact inner product, then a single serial "drain" adds the
bias (last step of a layer), requantises (round half up, saturate), applies the activation
(identity / ReLU / table sine, or the interpolated table sine of the PINN path when built with
EngineParams.sine_interp_bits) and scatters the result into the next step's layout.

Interfaces (docs/rtl.md has the memory map, descriptor format and timing):
  i      lib.stream sink of input codes, natural row-major order, n_in per sample
  o      lib.stream source of output codes, natural order, n_out per sample
  cfg_*  32-bit write bus (addr, data, en) to the header, step descriptors, cores, biases, sine
  start  pulse: run `batch` samples; busy stays high until the last output has left `o`
  cycles clock cycles counted while busy
The batch runs without host intervention: the input of sample b+1 is loaded while sample b
computes, and the outputs of sample b stream out while sample b+1 computes.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .descriptors import (BUF_A, BUF_B, BUF_IN, BUF_OUT, K_LEVELS, MAC_SUMS, REGION_BIASES, REGION_CORES,
                          REGION_HEADER, REGION_SHIFT, REGION_SINE, REGION_STEPS, SINE_SHIFT, EngineParams)
from .odometer import Odometer
from .registered_mul import WIDTH as MUL_WIDTH, RegisteredMul

CFG_ADDR_BITS = 24


def _bits_for(n: int) -> int:
    return max(1, (n - 1).bit_length())


class TTEngine(wiring.Component):
    """The TT network engine for one set of elaboration-time `EngineParams`."""

    #: the drain multiplexers that get their own copy of the lane select (hold word halves, row parts)
    SEL_COPIES = ("acc_lo", "acc_hi", "f", "k", "b")
    #: lanes per copy of the MAC pipeline's stall register
    LANE_GROUP = 4

    def __init__(self, params: EngineParams = EngineParams()) -> None:
        self.params = params
        W = params.data_bits
        super().__init__({
            "i": In(stream.Signature(signed(W))),
            "o": Out(stream.Signature(signed(W))),
            "cfg_addr": In(CFG_ADDR_BITS),
            "cfg_data": In(32),
            "cfg_en": In(1),
            "start": In(1),
            "batch": In(16),
            "busy": Out(1),
            "cycles": Out(32),
        })

    def elaborate(self, platform) -> Module:
        p = self.params
        P, W, LB = p.lanes, p.data_bits, p.lane_bits
        m = Module()
        lane_shape = data.ArrayLayout(signed(W), P)

        # --- memories --------------------------------------------------------------------------
        step_layout, hdr_layout = p.step_layout(), p.header_layout()
        n_chunks = p.chunks(step_layout)
        # Read/write collisions: no read whose data the engine uses ever hits an address written in
        # the same cycle (checked every cycle in simulation by tests/test_rtl_tt_engine_collisions.py,
        # see self._mem_ports), so the memories' old-data read semantics is never relied on; that is
        # what would let synthesis drop Yosys' emulation of it (docs/boards.md, eighth session).
        m.submodules.steps_mem = steps_mem = Memory(shape=unsigned(32 * n_chunks), depth=p.max_steps, init=[])
        m.submodules.cores = cores = Memory(shape=signed(p.weight_bits), depth=p.core_words, init=[])
        m.submodules.biases = biases = Memory(shape=signed(p.bias_bits), depth=p.bias_words, init=[])
        m.submodules.sine = sine = Memory(shape=signed(W), depth=1 << p.sine_bits, init=[])
        m.submodules.buf_in = buf_in = Memory(shape=lane_shape, depth=p.in_elems // P, init=[])
        m.submodules.buf_a = buf_a = Memory(shape=lane_shape, depth=p.buf_elems // P, init=[])
        m.submodules.buf_b = buf_b = Memory(shape=lane_shape, depth=p.buf_elems // P, init=[])
        m.submodules.buf_out = buf_out = Memory(shape=lane_shape, depth=p.out_elems // P, init=[])

        steps_w = steps_mem.write_port(granularity=32)
        steps_r = steps_mem.read_port()
        cores_w, cores_r = cores.write_port(), cores.read_port()
        D = p.drains
        biases_w, biases_rs = biases.write_port(), [biases.read_port() for _ in range(D)]
        sine_w, sine_rs = sine.write_port(), [sine.read_port() for _ in range(D)]
        # interpolating builds read T[i] and T[i + 1]: a second sine read port per drain
        sine_r2s = [sine.read_port() for _ in range(D)] if p.sine_interp_bits else [None] * D
        in_w, in_r = buf_in.write_port(granularity=1), buf_in.read_port()
        a_ws, a_r = [buf_a.write_port(granularity=1) for _ in range(D)], buf_a.read_port()
        b_ws, b_r = [buf_b.write_port(granularity=1) for _ in range(D)], buf_b.read_port()
        out_ws, out_r = [buf_out.write_port(granularity=1) for _ in range(D)], buf_out.read_port()
        # For the read/write collision check only (tests/test_rtl_tt_engine_collisions.py): every
        # memory's (write ports, read ports), so a simulation testbench can sample their en and addr,
        # and (self._mem_read_used, filled below) per read port a condition, sampled in the read's
        # cycle, that holds whenever that read's data can reach an output or the next step.
        # Plain Python attributes: they add nothing to the netlist.
        self._mem_ports = {
            "steps_mem": ([steps_w], [steps_r]), "cores": ([cores_w], [cores_r]),
            "biases": ([biases_w], biases_rs), "sine": ([sine_w], sine_rs + [r for r in sine_r2s if r is not None]),
            "buf_in": ([in_w], [in_r]), "buf_a": (a_ws, [a_r]), "buf_b": (b_ws, [b_r]), "buf_out": (out_ws, [out_r]),
        }

        # configuration, like the memories: kept through a soft reset (RESET must not erase the program)
        hdr = Signal(hdr_layout, reset_less=True)

        # --- configuration bus ---------------------------------------------------------------------
        region = self.cfg_addr[REGION_SHIFT:]
        offset = self.cfg_addr[:REGION_SHIFT]
        sb = p.step_stride_bits
        # The step-descriptor write is registered (timing: the descriptor RAM is a wide LUT RAM whose
        # write address, data and enables fan out to every one of its slices); it lands one cycle
        # later, well before the sequencer's first read (FETCH, >= 2 cycles after `start`).
        # Reset-less like the configuration it writes: a write is not lost to a soft reset.
        st_q = Signal(data.StructLayout({"en": n_chunks, "addr": len(steps_w.addr), "data": 32}), reset_less=True)
        m.d.sync += [st_q.addr.eq(offset[sb:]), st_q.data.eq(self.cfg_data), st_q.en.eq(0)]
        # The core, bias and sine writes are registered too (timing, issue #9: the bus arrived through
        # the trainer's multiplexer and fanned out to ~100 block-RAM data pins); they land one cycle
        # later.  Configuration writes come while the engine is idle (the host's, the ZO trainer's
        # load pass), so a write issued up to the cycle of `start` lands by the first busy cycle, and
        # these memories are first read for use many cycles later (cores: issuing, after the first
        # sample is loaded; biases, sine: in the drain); tests/test_rtl_tt_engine_collisions.py
        # checks every used read against the (registered) write ports.
        cw_q = Signal(data.StructLayout({"cores": 1, "biases": 1, "sine": 1,
                                         "addr": max(len(w.addr) for w in (cores_w, biases_w, sine_w)),
                                         "data": max(p.weight_bits, p.bias_bits, W)}), reset_less=True)
        m.d.sync += [cw_q.addr.eq(offset), cw_q.data.eq(self.cfg_data[:len(cw_q.data)]),
                     cw_q.cores.eq(0), cw_q.biases.eq(0), cw_q.sine.eq(0)]
        m.d.comb += [
            steps_w.addr.eq(st_q.addr), steps_w.data.eq(Cat(*[st_q.data] * n_chunks)), steps_w.en.eq(st_q.en),
            cores_w.addr.eq(cw_q.addr), cores_w.data.eq(cw_q.data[:p.weight_bits]), cores_w.en.eq(cw_q.cores),
            biases_w.addr.eq(cw_q.addr), biases_w.data.eq(cw_q.data[:p.bias_bits]), biases_w.en.eq(cw_q.biases),
            sine_w.addr.eq(cw_q.addr), sine_w.data.eq(cw_q.data[:W]), sine_w.en.eq(cw_q.sine),
        ]
        # The header writes are registered as well (timing: the region and offset decode of the bus
        # drove the header registers' clock enables, 13.3 ns on the ECP5); the host writes the header
        # while the engine is idle, before the operation that starts it.
        n_hdr = p.chunks(hdr_layout)
        hd_q = Signal(data.StructLayout({"en": n_hdr, "data": 32}), reset_less=True)
        m.d.sync += [hd_q.data.eq(self.cfg_data), hd_q.en.eq(0)]
        raw = hdr.as_value()
        for j in range(n_hdr):
            with m.If(hd_q.en[j]):
                hi = min(32 * j + 32, hdr_layout.size)
                m.d.sync += raw[32 * j:hi].eq(hd_q.data[:hi - 32 * j])
        with m.If(self.cfg_en):
            with m.Switch(region):
                with m.Case(REGION_HEADER):
                    m.d.sync += hd_q.en.eq(Cat(*[offset == j for j in range(n_hdr)]))
                with m.Case(REGION_STEPS):
                    m.d.sync += st_q.en.eq(Const(1, n_chunks) << offset[:sb])
                with m.Case(REGION_CORES):
                    m.d.sync += cw_q.cores.eq(1)
                with m.Case(REGION_BIASES):
                    m.d.sync += cw_q.biases.eq(1)
                with m.Case(REGION_SINE):
                    m.d.sync += cw_q.sine.eq(1)

        # --- batch control --------------------------------------------------------------------------
        busy = Signal()
        batch = Signal(16)
        loaded = Signal(16)      # samples whose input has been loaded
        computed = Signal(16)    # samples whose last step has finished
        in_full = Signal()       # buf_in holds an unconsumed sample
        out_pending = Signal()   # buf_out holds a sample not yet (fully) read out
        m.d.comb += self.busy.eq(busy)
        with m.If(busy):
            m.d.sync += self.cycles.eq(self.cycles + 1)

        # --- input loader: stream -> buf_in in layer 0's first-step layout --------------------------
        m.submodules.xodo = xodo = Odometer(p.x_levels, 2, p.count_bits, p.addr_bits, "x", registered=True)
        for i in range(p.x_levels):
            m.d.comb += xodo.count[i].eq(hdr.x_count[i])
            for j in range(2):
                m.d.comb += xodo.delta[i][j].eq(hdr.x_delta[i][j])
        ld_count = Signal(p.count_bits)
        ld_ok = busy & ~in_full & (loaded != batch)
        m.d.comb += self.i.ready.eq(ld_ok)
        xf = xodo.sums[0].as_unsigned()
        # The write is registered twice (timing: the address product and the stream's data end in a
        # register, the address sum in the next); it lands two cycles later, before the sequencer
        # (>= 4 cycles after in_full) reads.
        in_p = Signal(data.StructLayout({"en": P, "prod": p.addr_bits, "k": p.addr_bits, "data": signed(W)}))
        in_q = Signal(data.StructLayout({"en": P, "addr": p.addr_bits, "data": signed(W)}))
        m.d.sync += [in_p.prod.eq((xf >> LB) * hdr.x_knext), in_p.k.eq(xodo.sums[1].as_unsigned()),
                     in_p.data.eq(self.i.payload), in_p.en.eq(0),
                     in_q.addr.eq(in_p.prod + in_p.k), in_q.data.eq(in_p.data), in_q.en.eq(in_p.en)]
        m.d.comb += in_w.addr.eq(in_q.addr)
        for lane in range(P):
            m.d.comb += in_w.data[lane].eq(in_q.data)
        m.d.comb += in_w.en.eq(in_q.en)
        with m.If(self.i.valid & ld_ok):
            m.d.sync += in_p.en.eq(Const(1, P) << xf[:LB] if P > 1 else 1)
            m.d.comb += xodo.step.eq(1)
            m.d.sync += ld_count.eq(ld_count + 1)
            with m.If(ld_count + 1 == hdr.n_in):
                m.d.sync += [ld_count.eq(0), in_full.eq(1), loaded.eq(loaded + 1)]
                m.d.comb += xodo.clear.eq(1)

        # --- step descriptor -------------------------------------------------------------------------
        desc = Signal(step_layout)
        step_idx = Signal(8)
        m.d.comb += steps_r.addr.eq(step_idx)

        # --- MAC issue: odometer over (core columns, k1, k2) per group of P rows ------------------------
        m.submodules.modo = modo = Odometer(p.mac_levels, len(MAC_SUMS), p.count_bits, p.addr_bits, "mac",
                                        registered=True)
        for i in range(p.mac_levels):
            m.d.comb += modo.count[i].eq(desc.mac_count[i])
            for j in range(len(MAC_SUMS)):
                m.d.comb += modo.delta[i][j].eq(desc.mac_delta[i][j])
        issuing = Signal()
        grp = Signal(p.count_bits)
        s_base = Signal(p.addr_bits)
        # `stall` is a register (computed a cycle ahead, see the hold register below), in copies: one
        # for the control (tokens, odometer, RAM read enables, g_r) and one per group of LANE_GROUP
        # lanes (their x_r, multipliers and accumulators), so no copy drives the whole MAC.
        n_lgroups = -(-P // self.LANE_GROUP)
        stall = Signal(name="stall")
        stall_lane = [Signal(name=f"stall_lanes{g}") for g in range(n_lgroups)]
        advance = Signal()
        m.d.comb += advance.eq(~stall)
        adv_lane = [Signal(name=f"advance_lanes{g}") for g in range(n_lgroups)]
        m.d.comb += [a.eq(~st) for a, st in zip(adv_lane, stall_lane)]

        src_data = Signal(lane_shape)
        s_addr = (s_base + modo.sums[0].as_unsigned())[:p.addr_bits]
        m.d.comb += [in_r.addr.eq(s_addr), a_r.addr.eq(s_addr), b_r.addr.eq(s_addr),
                     in_r.en.eq(advance), a_r.en.eq(advance), b_r.en.eq(advance),
                     cores_r.addr.eq(desc.gbase + modo.sums[1].as_unsigned()), cores_r.en.eq(advance)]
        with m.Switch(desc.src):
            with m.Case(BUF_IN):
                m.d.comb += src_data.eq(in_r.data)
            with m.Case(BUF_A):
                m.d.comb += src_data.eq(a_r.data)
            with m.Default():
                m.d.comb += src_data.eq(b_r.data)

        tok_layout = data.StructLayout({"valid": 1, "first": 1, "last": 1, "gend": 1, "grp": p.count_bits,
                                        "wf": signed(p.addr_bits), "wk": signed(p.addr_bits),
                                        "wb": signed(p.addr_bits)})
        tok_a = Signal(tok_layout)
        tok_b = Signal(tok_layout)   # operands out of the block RAMs
        tok_r = Signal(tok_layout)   # operands registered in the fabric (x_r, g_r)
        tok_p = Signal(tok_layout)   # operands registered in the multipliers
        tok_q = Signal(tok_layout)   # products registered; accumulated at the end of this stage
        tok_c = Signal(tok_layout)   # accumulation done
        m.d.comb += [
            tok_a.valid.eq(issuing),
            tok_a.first.eq((modo.idx[0] == 0) & (modo.idx[1] == 0)),
            tok_a.last.eq(modo.is_max[0] & modo.is_max[1]),
            tok_a.gend.eq(modo.at_end), tok_a.grp.eq(grp),
            tok_a.wf.eq(modo.sums[2]), tok_a.wk.eq(modo.sums[3]), tok_a.wb.eq(modo.sums[4]),
        ]
        with m.If(advance):
            m.d.sync += [tok_b.eq(tok_a), tok_r.eq(tok_b), tok_p.eq(tok_r), tok_q.eq(tok_p), tok_c.eq(tok_q)]
            with m.If(issuing):
                m.d.comb += modo.step.eq(1)
                with m.If(modo.at_end):
                    m.d.sync += [grp.eq(grp + 1), s_base.eq(s_base + desc.k_len)]
                    with m.If(grp + 1 == desc.n_groups):
                        m.d.sync += issuing.eq(0)

        # MAC pipeline (timing): block RAM outputs -> fabric operand registers (x_r, g_r) -> operand
        # registers -> product registers -> accumulate; every stage holds while the pipeline stalls
        # (advance low), like the RAM read enables.  x_r/g_r (timing, issue #9): the core RAM's output
        # passes the block-RAM depth-cascade multiplexer and the state buffers' the source multiplexer
        # (in_r / a_r / b_r); registered here, neither is in series with the route to the 2P
        # multiplier inputs (one more pipeline stage: a cycle more per step's fill).  The
        # product is registered as two partial products, x[:XS] (unsigned) * g and x[XS:] (signed) * g,
        # one hard multiplier each with no adder behind it; the accumulation adds both (the same sum
        # mod 2^acc_bits as acc + x * g).
        # The operand and product registers are a RegisteredMul each (rtl/registered_mul.py): on the
        # ECP5 the hard multiplier's own input and output registers, elsewhere plain registers.
        acc_shape = signed(p.acc_bits)
        acc = Signal(data.ArrayLayout(acc_shape, P))
        x_r = Signal(lane_shape, reset_less=True)
        g_r = Signal(signed(p.weight_bits), reset_less=True)
        with m.If(advance):
            m.d.sync += g_r.eq(cores_r.data)
        for lane in range(P):
            with m.If(adv_lane[lane // self.LANE_GROUP]):
                m.d.sync += x_r[lane].eq(src_data[lane])
        XS = min(17, W - 1)
        pp_lo = Signal(data.ArrayLayout(signed(XS + 1 + p.weight_bits), P))
        pp_hi = Signal(data.ArrayLayout(signed(W - XS + p.weight_bits), P))
        if p.weight_bits <= MUL_WIDTH and W - XS <= MUL_WIDTH:
            for lane in range(P):
                xv = Value.cast(x_r[lane])
                for part, (x_part, pp) in enumerate(((xv[:XS].as_unsigned(), pp_lo), (xv[XS:].as_signed(), pp_hi))):
                    m.submodules[f"mul{lane}_{part}"] = mul = RegisteredMul()
                    m.d.comb += [mul.a.eq(x_part), mul.b.eq(g_r), mul.en.eq(adv_lane[lane // self.LANE_GROUP]),
                                 pp[lane].eq(mul.p)]
        else:
            # operands wider than the hard multiplier (e.g. the PINN formats: 20-bit weights, 32-bit
            # states): the same two register stages in the fabric, the products left to Yosys
            x_q = Signal(lane_shape)
            g_q = Signal(signed(p.weight_bits))
            with m.If(advance):
                m.d.sync += [x_q.eq(x_r), g_q.eq(g_r)]
                for lane in range(P):
                    xv = Value.cast(x_q[lane])
                    m.d.sync += [pp_lo[lane].eq(xv[:XS].as_unsigned() * g_q),
                                 pp_hi[lane].eq(xv[XS:].as_signed() * g_q)]
        # tok_q.first selects, in every accumulator bit, the product or the sum: one copy per lane
        # group (kept apart by their distinct enables), so no register drives all P * acc_bits
        first_lane = [Signal(name=f"first_lanes{g}") for g in range(n_lgroups)]
        for g in range(n_lgroups):
            with m.If(adv_lane[g]):
                m.d.sync += first_lane[g].eq(tok_p.first)
        for lane in range(P):
            with m.If(adv_lane[lane // self.LANE_GROUP] & tok_q.valid):
                prod = pp_lo[lane] + (pp_hi[lane] << XS)
                with m.If(first_lane[lane // self.LANE_GROUP]):
                    m.d.sync += acc[lane].eq(prod)
                with m.Else():
                    m.d.sync += acc[lane].eq(acc[lane] + prod)

        # --- hold register between the lanes and the serial drain -----------------------------------------
        hold = Signal(data.ArrayLayout(acc_shape, P))
        hold_full = Signal()
        hold_tok = Signal(tok_layout)
        d_lane = Signal(LB + 2)
        n_valid = Signal(p.count_bits + 1)   # lanes of the held group that are real rows
        filled = Signal(p.count_bits)        # groups whose row addresses the walker has written
        drained = Signal(p.count_bits)       # groups fully drained
        # n_valid is registered with the hold register; desc is constant while a step's groups are held.
        # Timing: the stall signal fans out to every MAC stage, so its inputs are all registers:
        # last_lane (= d_lane + D >= P or >= n_valid) and rows_ready (= hold_tok.grp < filled) are
        # computed a cycle ahead from the next d_lane, n_valid, hold_tok.grp and filled.
        last_lane = Signal()
        rows_ready = Signal()
        draining = Signal()
        m.d.comb += draining.eq(hold_full & rows_ready)
        finishing = draining & last_lane
        hold_free = ~hold_full | finishing
        handoff = tok_c.valid & tok_c.last
        # `load` (the hold register's enable, ~850 flip-flops) is a register too, computed with the stall
        # registers below, in copies: one for the control, one per lane group (their hold words).
        load = Signal(name="load")
        load_lane = [Signal(name=f"load_lanes{g}") for g in range(n_lgroups)]
        # what the stall and load registers must equal (simulation check only:
        # tests/test_rtl_tt_engine_stall.py): (register, condition) pairs
        stall_comb = handoff & ~hold_free
        self._stall_check = [(st, stall_comb) for st in [stall] + stall_lane]
        self._copy_check = [(ld, handoff & hold_free) for ld in [load] + load_lane] + \
            [(f, tok_q.first) for f in first_lane]
        nv_next = Signal.like(n_valid)
        m.d.comb += nv_next.eq(desc.n_f - (tok_c.grp << LB))
        # last_lane's next value after a drain cycle and after a load
        ll_drain = Signal()
        ll_load = Signal()
        m.d.comb += [ll_drain.eq((d_lane + 2 * D >= P) | (d_lane + 2 * D >= n_valid)),
                     ll_load.eq(Const(int(D >= P), 1) | (D >= nv_next))]
        # Timing: d_lane's low bits select, in every drain, one of P hold words and one of 2P row
        # parts; as one register they fanned out to ~1,000 multiplexer LUTs across the die (the
        # routed critical path).  Each multiplexed field has its own copy of d_lane[:LB] (same
        # next-state logic as d_lane; Yosys does not merge registers that feed back on themselves),
        # so each copy can sit next to its multiplexer.  A one-hot select was tried and congested
        # the router (docs/boards.md).
        lane_sel = {n: Signal(max(1, LB), name=f"d_lane_{n}") for n in self.SEL_COPIES} if P > 1 else {}
        with m.If(finishing):
            m.d.sync += [hold_full.eq(0), d_lane.eq(0)]
            m.d.sync += [c.eq(0) for c in lane_sel.values()]
            with m.If(hold_tok.gend):
                m.d.sync += drained.eq(drained + 1)
        with m.Elif(draining):
            m.d.sync += [d_lane.eq(d_lane + D), last_lane.eq(ll_drain)]
            m.d.sync += [c.eq(c + D) for c in lane_sel.values()]
        with m.If(load):
            m.d.sync += [hold_tok.eq(tok_c), hold_full.eq(1), n_valid.eq(nv_next),
                         last_lane.eq(ll_load)]   # d_lane is 0 after a load
        for lane in range(P):
            with m.If(load_lane[lane // self.LANE_GROUP]):
                m.d.sync += hold[lane].eq(acc[lane])

        # --- row walker: (f', kk', bias) parts of the P rows of a group, two banks ------------------------
        m.submodules.fodo = fodo = Odometer(p.f_levels, 3, p.count_bits, p.addr_bits, "row", registered=True)
        for i in range(p.f_levels):
            m.d.comb += fodo.count[i].eq(desc.f_count[i])
            for j in range(3):
                m.d.comb += fodo.delta[i][j].eq(desc.f_delta[i][j])
        rows_layout = data.ArrayLayout(data.ArrayLayout(signed(p.addr_bits), 3), 2 * P)
        rows = Signal(rows_layout)
        w_lane = Signal(max(1, LB))
        walk_go = Signal()
        step_active = Signal()
        # Timing: walk_go gates the write enables of all the row registers, so its conditions
        # filled != n_groups and filled <= drained + 1 are registers (fill_more, fill_ok) computed a
        # cycle ahead from the next filled and drained (both 0 in WAIT_DST).
        fill_more = Signal()
        fill_ok = Signal()
        m.d.comb += walk_go.eq(step_active & fill_more & fill_ok)
        with m.If(walk_go):
            sel = Signal(LB + 1)
            m.d.comb += sel.eq((filled[0] << LB) | w_lane) if P > 1 else sel.eq(filled[0])
            for j in range(3):
                m.d.sync += rows[sel][j].eq(fodo.sums[j])
            m.d.comb += fodo.step.eq(1)
            if P > 1:
                m.d.sync += w_lane.eq(w_lane + 1)
                with m.If(w_lane == P - 1):
                    m.d.sync += filled.eq(filled + 1)
            else:
                m.d.sync += filled.eq(filled + 1)
        # next-state registers: filled' = filled + fill_inc, drained' = drained + drain_inc (0 in WAIT_DST)
        fill_inc = Signal()
        m.d.comb += fill_inc.eq(walk_go & (w_lane == P - 1) if P > 1 else walk_go)
        drain_inc = finishing & hold_tok.gend
        m.d.sync += [
            fill_more.eq(Mux(fill_inc, filled + 1 != desc.n_groups, filled != desc.n_groups)),
            # filled' <= drained' + 1
            fill_ok.eq(Mux(fill_inc, Mux(drain_inc, filled <= drained + 1, filled <= drained),
                           Mux(drain_inc, filled <= drained + 2, filled <= drained + 1))),
        ]
        # rows_ready = hold_tok.grp' < filled' (hold_tok.grp' = tok_c.grp on a load; grp < filled + 1
        # is grp <= filled)
        rows_ready_n = Signal()
        m.d.comb += rows_ready_n.eq(Mux(load, Mux(fill_inc, tok_c.grp <= filled, tok_c.grp < filled),
                                        Mux(fill_inc, hold_tok.grp <= filled, hold_tok.grp < filled)))
        m.d.sync += rows_ready.eq(rows_ready_n)

        # The stall register (timing: `stall` gates ~1,000 clock enables of the MAC pipeline; as a
        # function of five registers it put a LUT level and its own route in front of that fan-out).
        # stall = handoff & ~hold_free = tok_c.valid & tok_c.last & hold_full & ~(rows_ready & last_lane),
        # here from the next values of those registers: tok_c' is tok_c while stalled, else tok_q;
        # hold_full' = load | hold_full & ~finishing; rows_ready' and last_lane' as assigned above.
        # (WAIT_DST clears rows_ready, but then the pipeline is empty: tok_c' and tok_q invalid.)
        # Each copy selects tok_c/tok_q by its own value (all copies are equal; feeding back on
        # itself, no copy is merged with another by Yosys).
        last_lane_n = Mux(load, ll_load, Mux(draining & ~finishing, ll_drain, last_lane))
        blocked_n = Signal()   # a handoff in the next cycle would find the hold register busy
        m.d.comb += blocked_n.eq((load | (hold_full & ~finishing)) & ~(rows_ready_n & last_lane_n))
        # load = handoff & hold_free, and hold_free' = ~blocked_n: the same handoff term, each load copy
        # selecting it by its stall copy
        for st, ld in zip([stall] + stall_lane, [load] + load_lane):
            handoff_n = Mux(st, tok_c.valid & tok_c.last, tok_q.valid & tok_q.last)
            m.d.sync += [st.eq(handoff_n & blocked_n), ld.eq(handoff_n & ~blocked_n)]

        # --- drain pipelines (`drains` lanes per cycle): bias, requantise, saturate, activation, write ----
        drain_busy = Const(0, 1)
        self._drain_used: list[tuple[Value, Value]] = []   # (d1.valid, d5.valid) per drain, see _drain
        for k in range(D):
            drain_busy = drain_busy | self._drain(m, k, desc, hold, hold_tok, rows, d_lane, lane_sel, draining,
                                                  n_valid, biases_rs[k], sine_rs[k],
                                                  ((a_ws[k], BUF_A), (b_ws[k], BUF_B), (out_ws[k], BUF_OUT)),
                                                  sine_r2s[k])

        # --- output unloader: buf_out -> stream ------------------------------------------------------------
        u_idx = Signal(p.count_bits)
        u_lane = Signal(max(1, LB))
        can_adv = ~self.o.valid | self.o.ready
        m.d.comb += [out_r.addr.eq(u_idx >> LB), out_r.en.eq(can_adv)]
        m.d.comb += self.o.payload.eq(out_r.data[u_lane] if P > 1 else out_r.data[0])
        with m.If(can_adv):
            with m.If(out_pending):
                m.d.sync += [self.o.valid.eq(1), u_lane.eq(u_idx[:LB] if P > 1 else 0), u_idx.eq(u_idx + 1)]
                with m.If(u_idx + 1 == hdr.n_out):
                    m.d.sync += [out_pending.eq(0), u_idx.eq(0)]
            with m.Else():
                m.d.sync += self.o.valid.eq(0)

        # Use conditions of the reads (collision check only; see self._mem_ports): an operand read
        # counts only for a MAC token (issuing) of a step reading that buffer (the read enable is
        # `advance`); a drain's bias read only for d1.valid, its sine reads only for d5.valid; the
        # unloader's read only while out_pending (enable can_adv); a descriptor read only while busy.
        self._mem_read_used = {
            "steps_mem": [busy], "cores": [issuing],
            "biases": [u[0] for u in self._drain_used],
            "sine": [u[1] for u in self._drain_used] + ([u[1] for u in self._drain_used]
                                                        if p.sine_interp_bits else []),
            "buf_in": [issuing & (desc.src == BUF_IN)], "buf_a": [issuing & (desc.src == BUF_A)],
            "buf_b": [issuing & (desc.src == BUF_B)], "buf_out": [out_pending],
        }

        # --- sequencer -----------------------------------------------------------------------------------
        # The MAC and row odometers are cleared in every cycle of WAIT_DST (desc is latched; neither
        # odometer steps before RUN), from a register that is high exactly in WAIT_DST (timing: the
        # clear is part of the odometers' clock enables, and no longer waits for the state decode
        # and the out_pending check).
        wait_dst = Signal()
        m.d.comb += [modo.clear.eq(wait_dst), fodo.clear.eq(wait_dst)]
        # likewise the descriptor register's enable (~1,000 flip-flops): a register high exactly in LATCH
        latch = Signal()
        with m.If(latch):
            m.d.sync += desc.eq(steps_r.data[:step_layout.size])
        m.d.comb += step_active.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [busy.eq(1), batch.eq(self.batch), loaded.eq(0), computed.eq(0),
                                 self.cycles.eq(0), step_idx.eq(0), ld_count.eq(0), in_full.eq(0)]
                    m.d.comb += xodo.clear.eq(1)
                    with m.If(self.batch != 0):
                        m.next = "WAIT_IN"
            with m.State("WAIT_IN"):
                with m.If(in_full):
                    m.next = "FETCH"
            with m.State("FETCH"):  # steps_r.addr = step_idx; data valid next cycle
                m.d.sync += latch.eq(1)
                m.next = "LATCH"
            with m.State("LATCH"):
                m.d.sync += [latch.eq(0), wait_dst.eq(1)]
                m.next = "WAIT_DST"
            with m.State("WAIT_DST"):
                with m.If(~((desc.dst == BUF_OUT) & out_pending)):
                    m.d.sync += [wait_dst.eq(0), grp.eq(0), s_base.eq(0), filled.eq(0), drained.eq(0),
                                 w_lane.eq(0), issuing.eq(1), rows_ready.eq(0), fill_more.eq(desc.n_groups != 0),
                                 fill_ok.eq(1)]
                    m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += step_active.eq(1)
                with m.If(~issuing & ~tok_b.valid & ~tok_r.valid & ~tok_p.valid & ~tok_q.valid & ~tok_c.valid
                          & ~hold_full & ~drain_busy):
                    m.next = "STEP_DONE"
            with m.State("STEP_DONE"):
                with m.If(desc.src == BUF_IN):
                    m.d.sync += in_full.eq(0)
                with m.If(desc.dst == BUF_OUT):
                    m.d.sync += out_pending.eq(1)
                with m.If(step_idx + 1 == hdr.n_steps):
                    m.d.sync += [step_idx.eq(0), computed.eq(computed + 1)]
                    with m.If(computed + 1 == batch):
                        m.next = "FINISH"
                    with m.Else():
                        m.next = "WAIT_IN"
                with m.Else():
                    m.d.sync += step_idx.eq(step_idx + 1)
                    m.next = "FETCH"
            with m.State("FINISH"):
                with m.If(~out_pending & ~self.o.valid):
                    m.d.sync += busy.eq(0)
                    m.next = "IDLE"
        return m

    def _drain(self, m: Module, k: int, desc, hold, hold_tok, rows, d_lane, lane_sel, draining, n_valid, biases_r,
               sine_r, ports, sine_r2=None) -> Value:
        """Drain pipeline k: lane d_lane + k of the hold register -> bias, round, saturate, act -> write."""
        p = self.params
        P, W, LB = p.lanes, p.data_bits, p.lane_bits
        acc_shape = signed(p.acc_bits)
        sfx = f"_{k}" if k else ""
        lane_k = Signal(LB + 2, name=f"drain_lane{sfx}")
        m.d.comb += lane_k.eq(d_lane + k)
        valid_k = draining & (lane_k < n_valid)
        d1 = Signal(name=f"d1{sfx}", shape=data.StructLayout({"valid": 1, "acc": acc_shape, "f": signed(p.addr_bits),
                                        "k": signed(p.addr_bits), "b": signed(p.addr_bits)}))
        # the selects: lane_k[:LB] from each field's own copy of d_lane[:LB] (see `lane_sel`)
        sel = {}
        for n, c in lane_sel.items():
            sel[n] = Signal(LB, name=f"lane_{n}{sfx}")
            m.d.comb += sel[n].eq(c + k)
        rsel = {}
        for j, n in enumerate(("f", "k", "b")):
            rsel[j] = Signal(LB + 1, name=f"rsel_{n}{sfx}")
            m.d.comb += rsel[j].eq((hold_tok.grp[0] << LB) | sel[n]) if P > 1 else rsel[j].eq(hold_tok.grp[0])
        if P > 1:
            h = p.acc_bits // 2
            acc_sel = Cat(Value.cast(hold[sel["acc_lo"]])[:h], Value.cast(hold[sel["acc_hi"]])[h:])
        else:
            acc_sel = hold[0]
        m.d.sync += d1.valid.eq(valid_k)
        m.d.sync += [
            d1.acc.eq(acc_sel),
            d1.f.eq(rows[rsel[0]][0] + hold_tok.wf),
            d1.k.eq(rows[rsel[1]][1] + hold_tok.wk),
            d1.b.eq(rows[rsel[2]][2] + hold_tok.wb),
        ]
        m.d.comb += biases_r.addr.eq(desc.bbase + d1.b.as_unsigned())
        sum_shape = signed(p.acc_bits + 1)
        # the write address (f >> LB) * knext + k: product registered in d2, sum in d2r (timing)
        d2 = Signal(name=f"d2{sfx}", shape=data.StructLayout({
            "valid": 1, "acc": acc_shape, "wprod": unsigned(p.addr_bits), "k": unsigned(p.addr_bits),
                                        "lane": unsigned(max(1, LB))}))
        f1 = d1.f.as_unsigned()
        m.d.sync += [d2.valid.eq(d1.valid), d2.acc.eq(d1.acc),
                     d2.wprod.eq((f1 >> LB) * desc.knext), d2.k.eq(d1.k.as_unsigned()),
                     d2.lane.eq(f1[:LB] if P > 1 else 0)]
        # Timing: the bias read is registered as it leaves the block RAM (d2r), then the bias shift,
        # the bias + rounding adds, the variable right shift and the saturation each get their own
        # stage (d2b, d3r, d3s, d4), the sine phase product is split into three registered partial
        # products (d4m) summed in d5, and the result is registered (d7, with the sine clamp's compares)
        # before the writes; values are bit-identical to the one-stage forms (two's complement sums
        # truncated to the same widths).
        lane_w = unsigned(max(1, LB))
        d2r = Signal(name=f"d2r{sfx}", shape=data.StructLayout({
            "valid": 1, "acc": acc_shape, "bias": signed(p.bias_bits), "word": unsigned(p.addr_bits),
            "lane": lane_w}))
        m.d.sync += [d2r.bias.eq(biases_r.data),
                     d2r.valid.eq(d2.valid), d2r.acc.eq(d2.acc), d2r.word.eq(d2.wprod + d2.k),
                     d2r.lane.eq(d2.lane)]
        d2b = Signal(name=f"d2b{sfx}", shape=data.StructLayout({
            "valid": 1, "acc": acc_shape, "bsh": sum_shape, "word": unsigned(p.addr_bits), "lane": lane_w}))
        with m.If(desc.last):
            m.d.sync += d2b.bsh.eq(d2r.bias << desc.bshift)
        with m.Else():
            m.d.sync += d2b.bsh.eq(0)
        m.d.sync += [d2b.valid.eq(d2r.valid), d2b.acc.eq(d2r.acc), d2b.word.eq(d2r.word), d2b.lane.eq(d2r.lane)]
        # the bias add and the rounding add share a stage (two short carry chains; the bias sum is
        # truncated to sum_shape in between, as when it had a register of its own)
        bsum = Signal(sum_shape, name=f"bsum{sfx}")
        m.d.comb += bsum.eq(d2b.acc + d2b.bsh)
        rnd = Signal(sum_shape, name=f"rnd{sfx}")
        m.d.comb += rnd.eq((Const(1, p.acc_bits) << desc.shift) >> 1)
        wide = signed(p.acc_bits + 2)
        d3r = Signal(name=f"d3r{sfx}", shape=data.StructLayout({
            "valid": 1, "v": wide, "word": unsigned(p.addr_bits), "lane": lane_w}))
        m.d.sync += [d3r.v.eq(bsum + rnd), d3r.valid.eq(d2b.valid), d3r.word.eq(d2b.word), d3r.lane.eq(d2b.lane)]
        d3s = Signal(name=f"d3s{sfx}", shape=data.StructLayout({
            "valid": 1, "v": wide, "word": unsigned(p.addr_bits), "lane": lane_w}))
        m.d.sync += [d3s.v.eq(d3r.v >> desc.shift), d3s.valid.eq(d3r.valid), d3s.word.eq(d3r.word),
                     d3s.lane.eq(d3r.lane)]
        d4 = Signal(name=f"d4{sfx}", shape=data.StructLayout({"valid": 1, "v": signed(W), "word": unsigned(p.addr_bits),
                                        "lane": lane_w}))
        rounded = d3s.v
        with m.If(rounded < desc.sat_lo):
            m.d.sync += d4.v.eq(desc.sat_lo)
        with m.Elif(rounded > desc.sat_hi):
            m.d.sync += d4.v.eq(desc.sat_hi)
        with m.Else():
            m.d.sync += d4.v.eq(rounded)
        m.d.sync += [d4.valid.eq(d3s.valid), d4.word.eq(d3s.word), d4.lane.eq(d3s.lane)]
        c_cuts = (0, 14, 27, 40)                              # sine_c (40 bits) in three chunks
        d4m = Signal(name=f"d4m{sfx}", shape=data.StructLayout({
            "valid": 1, "v": signed(W), "word": unsigned(p.addr_bits), "lane": lane_w,
            **{f"pp{i}": signed(W + 15) for i in range(3)}}))
        for i in range(3):
            m.d.sync += d4m[f"pp{i}"].eq(d4.v * desc.sine_c[c_cuts[i]:c_cuts[i + 1]])
        m.d.sync += [d4m.valid.eq(d4.valid), d4m.v.eq(d4.v), d4m.word.eq(d4.word), d4m.lane.eq(d4.lane)]
        d5 = Signal(name=f"d5{sfx}", shape=data.StructLayout({"valid": 1, "v": signed(W), "word": unsigned(p.addr_bits),
                                        "lane": lane_w, "phase": unsigned(p.sine_bits)}))
        phase_prod = Signal(signed(W + 41 + 1), name=f"phase_prod{sfx}")
        m.d.comb += phase_prod.eq(d4m.pp0 + (d4m.pp1 << c_cuts[1]) + (d4m.pp2 << c_cuts[2])
                                  + (1 << (SINE_SHIFT - 1)))
        m.d.sync += d5.phase.eq(phase_prod[SINE_SHIFT:SINE_SHIFT + p.sine_bits] & desc.sine_mask)
        with m.If((desc.act == 1) & desc.last & (d4m.v < 0)):
            m.d.sync += d5.v.eq(0)
        with m.Else():
            m.d.sync += d5.v.eq(d4m.v)
        m.d.sync += [d5.valid.eq(d4m.valid), d5.word.eq(d4m.word), d5.lane.eq(d4m.lane)]
        m.d.comb += sine_r.addr.eq(d5.phase)
        self._drain_used.append((d1.valid, d5.valid))   # the bias and sine reads' use (collision check)
        E = p.sine_interp_bits
        if E:
            # Interpolated sine (golden hjb.sine_fixed_interp), steps with sine_shift != 0:
            # ph = round_half_up(v * C, sine_shift), T[i] and T[i + 1] at i = (ph >> E) & mask,
            # result T[i] + round_half_up((T[i+1] - T[i]) * (ph mod 2^E), E), then saturate.
            interp = desc.sine_shift != 0
            full = Signal(signed(W + 42), name=f"phase_full{sfx}")
            m.d.comb += full.eq(d4m.pp0 + (d4m.pp1 << c_cuts[1]) + (d4m.pp2 << c_cuts[2]))
            ph = Signal(signed(W + 42), name=f"phase_i{sfx}")
            m.d.comb += ph.eq((full + ((Const(1, 64) << desc.sine_shift) >> 1)) >> desc.sine_shift)
            frac5 = Signal(E, name=f"sine_frac5{sfx}")
            frac6 = Signal(E, name=f"sine_frac6{sfx}")
            with m.If(interp):
                m.d.sync += d5.phase.eq(ph[E:E + p.sine_bits] & desc.sine_mask)
            m.d.sync += [frac5.eq(ph[:E]), frac6.eq(frac5)]
            m.d.comb += sine_r2.addr.eq((d5.phase + 1) & desc.sine_mask)
            diff = Signal(signed(W + 1), name=f"sine_diff{sfx}")
            step = Signal(signed(W + E + 2), name=f"sine_step{sfx}")
            sine_ip = Signal(signed(W + 2), name=f"sine_interp{sfx}")
            m.d.comb += [diff.eq(sine_r2.data - sine_r.data), step.eq(diff * frac6),
                         sine_ip.eq(sine_r.data + ((step + (1 << (E - 1))) >> E))]
            sine_val = Mux(interp, sine_ip, sine_r.data)
        else:
            sine_val = sine_r.data
        d6 = Signal(name=f"d6{sfx}", shape=data.StructLayout({"valid": 1, "v": signed(W), "word": unsigned(p.addr_bits),
                                        "lane": unsigned(max(1, LB)), "sine": 1}))
        m.d.sync += [d6.valid.eq(d5.valid), d6.v.eq(d5.v), d6.word.eq(d5.word), d6.lane.eq(d5.lane),
                     d6.sine.eq(desc.last & (desc.act == 2))]
        # The sine saturation is split across d7 (timing: the compares no longer sit between the sine
        # read register and the d7 flip-flops, which are pulled towards the P x 3 write ports): d7
        # registers the unclamped value and the two compare flags, and the clamp multiplexer (one
        # LUT level) follows d7.  sat_lo/sat_hi are local copies of desc's, one cycle behind
        # (desc changes only in LATCH, >= 15 cycles before a result reaches d7): same values, same
        # drain latency as the one-stage form.
        sat_lo = Signal(signed(W), name=f"sat_lo{sfx}")
        sat_hi = Signal(signed(W), name=f"sat_hi{sfx}")
        m.d.sync += [sat_lo.eq(desc.sat_lo), sat_hi.eq(desc.sat_hi)]
        d7 = Signal(name=f"d7{sfx}", shape=data.StructLayout({"valid": 1, "v": signed(W), "lo": 1, "hi": 1,
                                                               "word": unsigned(p.addr_bits),
                                                               "lane": unsigned(max(1, LB))}))
        m.d.sync += [d7.valid.eq(d6.valid), d7.v.eq(Mux(d6.sine, sine_val, d6.v)),
                     d7.lo.eq(d6.sine & (sine_val < sat_lo)), d7.hi.eq(d6.sine & (sine_val > sat_hi)),
                     d7.word.eq(d6.word), d7.lane.eq(d6.lane)]
        result = Signal(signed(W), name=f"result{sfx}")
        with m.If(d7.lo):
            m.d.comb += result.eq(sat_lo)
        with m.Elif(d7.hi):
            m.d.comb += result.eq(sat_hi)
        with m.Else():
            m.d.comb += result.eq(d7.v)
        lane_en = (Const(1, P) << d7.lane) if P > 1 else Const(1, 1)
        for port, code in ports:
            m.d.comb += port.addr.eq(d7.word)
            for lane in range(P):
                m.d.comb += port.data[lane].eq(result)
            with m.If(d7.valid & (desc.dst == code)):
                m.d.comb += port.en.eq(lane_en)
        return d1.valid | d2.valid | d2r.valid | d2b.valid | d3r.valid | d3s.valid | d4.valid | d4m.valid \
            | d5.valid | d6.valid | d7.valid
