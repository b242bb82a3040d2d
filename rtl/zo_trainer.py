"""ZO training sequencer: K signRGE or CGE steps on a batch held on chip, driving a forward engine.

Both optimizers are golden/zo_fixed.py's integer steps.  A signRGE step t (docs/rtl-zo.md has the timing):
  q = 0        forward pass with the parameters as stored (perturber OFF)          -> L_0
  q = 1..N     seed stream (seed, t, q-1), build the perturber's checkpoints,
               forward pass reading sat(theta + mu*xi) on the fly                  -> L_q, d_{q-1} = L_q - L_0
  update       one pass over parameter memory: theta <- sat(theta - alpha*sign(sum_i d_i xi_i))
A CGE step t:
  L_0, then walk p = 0..d-1 with the coordinate stream (seed, t, 4095): when its word p is below
  ``cge_threshold`` (golden zo.sample_coordinates) run a forward pass with theta_p + mu (perturber
  COORD) -> g_p = L_p - L_0, else g_p = 0; update the momentum entry b_p in place at once;
  then one pass theta_p <- sat(theta_p - round(k_code * b_p >> k_shift)) (rtl/zo_update.CgeUpdate),
  rounding half up or, with ``cge_rounding`` = STOCHASTIC, with golden's stochastic rounding: the
  shared seeder computes the seed state of stream (seed, t, SR_QUERY) right after the coordinate
  stream's (pipelined, no extra cycle) and the update pass draws word p of it for parameter p.
Every batch loss is the loss unit's exact sum over the batch; each is logged (loss, correct count)
in a small log memory, indexed by forward-pass number, for the host to read.

Before every forward pass a *load pass* streams the master parameters (flat order) through the
perturber (OFF, RANDOM or COORD) into the engine's core and bias memories over its
configuration bus (rtl/descriptors.py memory map: region 2 cores, region 3 biases, each in flat
order): n_params + n_segments + Perturber.LATENCY (7, its pipeline drained) cycles, plus the
checkpoint walk for a random query.  xi is never
stored; the engine's own parameter memory holds the (perturbed) working copy, the trainer's
parameter memory the master copy.  The engine then runs the batch from the on-chip input memory
(``i`` stream) and its logits (``o`` stream) go straight into the loss unit.

Control inputs (the host's control registers): ``n_queries`` (N), ``mu_w``/``mu_b``,
``alpha_w``/``alpha_b`` (codes in the core and bias formats), ``seed``, ``step0`` (the first step
index t), ``k_steps`` (K), ``kind`` (Rademacher or Gaussian-like xi), ``optimizer`` (0 = signRGE,
1 = CGE), and for CGE ``m_code``, ``k_code_w/b``, ``k_shift_w/b`` (golden CGEConstants),
``cge_threshold`` (round(fraction * 2^32); 2^32 visits every coordinate), and when built with
``stochastic_rounding=True`` ``cge_rounding`` (rtl/zo_update.Rounding: NEAREST or STOCHASTIC,
golden's ``cge_rounding="stochastic"``; without that option the port does not exist and CGE rounds
half up, as before).  The parameter, input, label and momentum memories are loaded through one
host write port while the trainer is idle.

The forward engine is any component with rtl/tt_engine.TTEngine's interface (``i``/``o`` streams,
``cfg_*`` write bus, ``start``/``batch``/``busy``): the TT engine itself or the small
rtl/zo_dense_engine.DenseEngine.  While the trainer is idle, the host's ``cfg_*`` writes pass
through to the engine (its program: header, step descriptors, sine table).

Loss source: with a cross-entropy engine (the TT engine, the dense engine) a forward pass streams the
batch through the engine into the loss unit.  When ``engine`` is a loss source itself
(``engine.loss_source``: rtl/pinn_loss.PinnLoss, the HJB residual loss over on-chip collocation
points), a forward pass is ``start`` -> fall of ``busy`` and the batch loss is its ``loss_sum``; the
inputs/labels memories and the loss unit are not built, and ``correct`` is logged as 0.
"""
from amaranth import Array, Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, fifo, memory, wiring
from amaranth.lib.wiring import In, Out

from ttzo.golden.fixed import QFormat
from ttzo.golden.formats import DEFAULT_CONFIG
from ttzo.golden.prng import MAX_QUERY
from ttzo.golden.zo_fixed import B_BITS, K_BITS, M_FRAC, SR_QUERY

from .banked_memory import BankedMemory
from .descriptors import REGION_BIASES, REGION_CORES, REGION_SHIFT
from .loss_unit import LossUnit
from .tt_engine import CFG_ADDR_BITS
from .perturb import Mode, Perturber, XiKind
from .prng import QUERY_BITS, SEEDER_LATENCY, StreamSeeder, Xorshift32, xorshift32_value
from .zo_update import CgeUpdate, Rounding, SignRgeUpdate


class HostTarget:
    PARAMS = 0
    INPUTS = 1
    LABELS = 2
    MOMENTUM = 3


class ReadTarget:
    PARAMS = 0
    MOMENTUM = 1
    LOG_LOSS = 2
    LOG_CORRECT = 3


class Optimizer:
    SIGNRGE = 0
    CGE = 1


def log_layout(sum_bits: int) -> data.StructLayout:
    return data.StructLayout({"loss": signed(sum_bits), "correct": unsigned(16)})


class ZoTrainer(wiring.Component):
    """Training sequencer + parameter/batch memories + perturber + loss unit + update engine around `engine`."""

    X_FIFO = 8      # words of the FIFO between the batch memory's read pipeline and the engine's input

    #: host writes into the batch are registered once per this many block-RAM banks (rtl/banked_memory.py
    #: ``write_group``: no single register drives every bank's data input); they land one cycle later
    BATCH_WRITE_GROUP = 8

    def __init__(self, engine, *, n_params: int, n_inputs: int, classes: int, max_samples: int, n_max: int = 10,
                 max_segments: int = 16, log_depth: int = 64,
                 weight: QFormat = DEFAULT_CONFIG.weight, bias: QFormat = DEFAULT_CONFIG.bias,
                 act: QFormat = DEFAULT_CONFIG.act, loss: QFormat = DEFAULT_CONFIG.loss,
                 x_fmt: QFormat = DEFAULT_CONFIG.input, params_init=(), inputs_init=(), labels_init=(),
                 momentum_init=(), stochastic_rounding: bool = False, input_banks: int = 1,
                 batch_ram_depth: int = 2048) -> None:
        self.engine = engine
        self.n_params, self.n_inputs, self.classes, self.max_samples = n_params, n_inputs, classes, max_samples
        self.n_max, self.max_segments, self.log_depth = n_max, max_segments, log_depth
        self.weight, self.bias, self.act, self.lossf, self.x_fmt = weight, bias, act, loss, x_fmt
        self.stochastic_rounding = stochastic_rounding   # build the run-time input cge_rounding
        # input_banks=2: the inputs/labels memories hold two batches interleaved (word k of bank b at
        # address 2k + b); forward passes read bank ``input_bank``, and host writes to INPUTS/LABELS are
        # taken while busy too: the caller (rtl/board_top.py) addresses them to the other bank only.
        if input_banks not in (1, 2):
            raise ValueError(f"input_banks must be 1 or 2, got {input_banks}")
        self.input_banks = input_banks
        self.batch_ram_depth = batch_ram_depth   # words per block-RAM bank of `inputs` (2048 x 9: one DP16KD)
        self.width = max(weight.bits, bias.bits)
        self.addr_bits = max(1, (n_params - 1).bit_length())
        self.batch_bits = 16
        self.sum_bits = loss.bits + self.batch_bits
        self.pinn = bool(getattr(engine, "loss_source", False))   # the engine computes the batch loss itself
        if self.pinn:
            self.sum_bits = engine.sum_bits
        self.host_addr_bits = max(self.addr_bits, (input_banks * max_samples * n_inputs - 1).bit_length())
        super().__init__({
            # control registers
            "start": In(1), "busy": Out(1), "done": Out(1),
            "optimizer": In(1), "kind": In(XiKind), "n_queries": In(range(n_max + 1)),
            "mu_w": In(signed(weight.bits)), "mu_b": In(signed(bias.bits)),
            "alpha_w": In(signed(weight.bits)), "alpha_b": In(signed(bias.bits)),
            "seed": In(32), "step0": In(32), "k_steps": In(16), "n_samples": In(range(max_samples + 1)),
            "m_code": In(range((1 << M_FRAC) + 1)), "k_code_w": In(unsigned(K_BITS)), "k_shift_w": In(range(64)),
            "k_code_b": In(unsigned(K_BITS)), "k_shift_b": In(range(64)), "cge_threshold": In(unsigned(33)),
            **({"cge_rounding": In(Rounding)} if stochastic_rounding else {}),
            **({"input_bank": In(1)} if input_banks > 1 else {}),
            # segment table (flat start, is_bias) and the host write port of the memories
            "seg_we": In(1), "seg_addr": In(range(max_segments)), "seg_start": In(unsigned(self.addr_bits)),
            "seg_bias": In(1), "n_segments": In(range(max_segments + 1)),
            "host_we": In(1), "host_target": In(2), "host_addr": In(unsigned(self.host_addr_bits)),
            "host_data": In(signed(64)),
            # host read port (sync: data one cycle after the address): params, momentum, log loss, log correct
            "host_rd_target": In(2), "host_rd_addr": In(unsigned(self.host_addr_bits)), "host_rd_data": Out(signed(64)),
            # host read of the batch (not a loss source): shares the forward passes' pipelined read port
            # of `inputs`, so its block RAMs are not duplicated for a second read port; data
            # BankedMemory.LATENCY cycles after the address, valid only while no forward pass streams
            **({} if self.pinn else {"batch_rd_addr": In(unsigned(self.host_addr_bits)),
                                     "batch_rd_data": Out(signed(x_fmt.bits + (0 if x_fmt.signed else 1)))}),
            "cfg_addr": In(CFG_ADDR_BITS), "cfg_data": In(32), "cfg_en": In(1),
            # status / counters
            "steps_done": Out(16), "forwards": Out(32), "cycles": Out(48),
            "last_l0": Out(signed(self.sum_bits)), "last_correct": Out(16), "changed": Out(unsigned(self.addr_bits + 1)),
        })
        self.params = memory.Memory(shape=signed(self.width), depth=n_params, init=[int(v) for v in params_init])
        if not self.pinn:   # a loss source holds its own batch (e.g. collocation points)
            # one memory per block RAM, read through registers (timing: rtl/banked_memory.py)
            self.inputs = BankedMemory(shape=signed(x_fmt.bits + (0 if x_fmt.signed else 1)),
                                       depth=input_banks * max_samples * n_inputs, bank_depth=batch_ram_depth,
                                       init=inputs_init, write_group=self.BATCH_WRITE_GROUP)
            self.labels = memory.Memory(shape=range(classes), depth=input_banks * max_samples, init=[int(v) for v in labels_init])
        self.momentum = memory.Memory(shape=signed(B_BITS), depth=n_params, init=[int(v) for v in momentum_init])
        self.log = memory.Memory(shape=log_layout(self.sum_bits), depth=log_depth, init=[])

    def elaborate(self, platform) -> Module:
        m = Module()
        eng = self.engine
        m.submodules.engine = eng
        for name in ("params", "momentum", "log") if self.pinn else ("params", "inputs", "labels", "momentum", "log"):
            m.submodules[name] = getattr(self, name)
        m.submodules.perturb = pert = Perturber(self.max_segments, 1 << self.addr_bits, self.weight, self.bias)
        if not self.pinn:
            m.submodules.loss = lossu = LossUnit(self.classes, self.act, self.lossf, self.batch_bits)
        m.submodules.update = upd = SignRgeUpdate(self.n_max, self.sum_bits + 1, self.max_segments,
                                                  1 << self.addr_bits, self.weight, self.bias)
        m.submodules.cge = cge = CgeUpdate(self.max_segments, 1 << self.addr_bits, self.weight, self.bias)
        m.submodules.seeder = seeder = StreamSeeder(1)
        m.submodules.coords = coords = Xorshift32()
        is_cge = self.optimizer == Optimizer.CGE

        # --- segment table: the perturber keeps its own copy, the update engines read ours --------
        seg_start = Array(Signal(unsigned(self.addr_bits), name=f"seg_start{k}") for k in range(self.max_segments))
        seg_bias = Array(Signal(name=f"seg_bias{k}") for k in range(self.max_segments))
        for k in range(self.max_segments):
            with m.If(self.seg_we & (self.seg_addr == k)):
                m.d.sync += [seg_start[k].eq(self.seg_start), seg_bias[k].eq(self.seg_bias)]
            for u in (upd, cge):
                m.d.comb += [u.seg_start[k].eq(seg_start[k]), u.seg_bias[k].eq(seg_bias[k])]
        m.d.comb += [pert.seg_we.eq(self.seg_we), pert.seg_addr.eq(self.seg_addr),
                     pert.seg_start.eq(self.seg_start), pert.seg_bias.eq(self.seg_bias),
                     pert.n_segments.eq(self.n_segments), upd.n_segments.eq(self.n_segments),
                     cge.n_segments.eq(self.n_segments)]

        # --- parameter memory: comb read for the perturber, sync read + write for the updates -----
        # The host's writes are registered before they reach the memories (timing: the command
        # processor's port -> region mux -> target decode -> the write enables of every block RAM);
        # a write lands one cycle later, still long before any read of it.
        hq = Signal(data.StructLayout({"we": 1, "idle": 1, "target": 2, "addr": unsigned(self.host_addr_bits),
                                       "data": signed(max(self.width, B_BITS, 16))}))
        m.d.sync += [hq.we.eq(self.host_we), hq.idle.eq(~self.busy), hq.target.eq(self.host_target),
                     hq.addr.eq(self.host_addr), hq.data.eq(self.host_data)]
        host = hq.we & hq.idle
        # Every read port is synchronous (block RAM, and no simulator-dependent behaviour of
        # asynchronous reads of memories written later); readers present the *next* address.
        p_seq = self.params.read_port()
        p_rd = self.params.read_port()
        p_wr = self.params.write_port()
        load_open = Signal()   # the load pass opens a segment this cycle: prefetch its first code
        ld_en = Signal()       # the load pass streams a code into the perturber this cycle
        m.d.comb += [pert.theta_in.payload.eq(p_seq.data), pert.theta_in.valid.eq(ld_en), pert.theta_out.ready.eq(1),
                     p_rd.addr.eq(Mux(is_cge, cge.rd_addr, upd.rd_addr)),
                     upd.rd_data.eq(p_rd.data), cge.rd_data.eq(p_rd.data)]
        with m.If(host & (hq.target == HostTarget.PARAMS)):
            m.d.comb += [p_wr.addr.eq(hq.addr), p_wr.data.eq(hq.data), p_wr.en.eq(1)]
        with m.Elif(is_cge):
            m.d.comb += [p_wr.addr.eq(cge.wr_addr), p_wr.data.eq(cge.wr_data), p_wr.en.eq(cge.wr_en)]
        with m.Else():
            m.d.comb += [p_wr.addr.eq(upd.wr_addr), p_wr.data.eq(upd.wr_data), p_wr.en.eq(upd.wr_en)]

        # --- host read-back -----------------------------------------------------------------------------
        h_p = self.params.read_port()
        h_b = self.momentum.read_port()
        h_l = self.log.read_port()
        rd_t = Signal(2)
        m.d.sync += rd_t.eq(self.host_rd_target)
        m.d.comb += [h_p.addr.eq(self.host_rd_addr), h_b.addr.eq(self.host_rd_addr), h_l.addr.eq(self.host_rd_addr)]
        with m.Switch(rd_t):
            with m.Case(ReadTarget.PARAMS):
                m.d.comb += self.host_rd_data.eq(h_p.data)
            with m.Case(ReadTarget.MOMENTUM):
                m.d.comb += self.host_rd_data.eq(h_b.data)
            with m.Case(ReadTarget.LOG_LOSS):
                m.d.comb += self.host_rd_data.eq(h_l.data.loss)
            with m.Case(ReadTarget.LOG_CORRECT):
                m.d.comb += self.host_rd_data.eq(h_l.data.correct)

        # --- batch memories -> engine input stream; engine output -> loss unit ------------------------
        if self.pinn:       # the loss source streams its own batch
            src_idx, sending, lab_restart, feeding = Signal(32), Signal(), Signal(), Signal()
        else:
            banked = self.input_banks > 1
            host_x = hq.we if banked else host     # banked: the idle bank is written while busy
            x_rd = self.inputs.pipelined_read_port()
            x_wr = self.inputs.write_port()
            m.d.comb += [x_wr.addr.eq(hq.addr), x_wr.data.eq(hq.data),
                         x_wr.en.eq(host_x & (hq.target == HostTarget.INPUTS))]
            l_rd = self.labels.read_port()
            l_wr = self.labels.write_port()
            m.d.comb += [l_wr.addr.eq(hq.addr), l_wr.data.eq(hq.data),
                         l_wr.en.eq(host_x & (hq.target == HostTarget.LABELS))]
            # The batch streams to the engine through a small FIFO: reads are issued while the FIFO
            # plus the read pipeline (BankedMemory.LATENCY cycles) hold fewer than X_FIFO words, so no
            # control signal depends on the engine's `ready`, which only pops the FIFO (timing).
            total_in = Signal(range(self.max_samples * self.n_inputs + 1))
            m.d.sync += total_in.eq(self.n_samples * self.n_inputs)    # n_samples is constant while busy
            src_idx = Signal(range(self.max_samples * self.n_inputs + 1))
            src_more = Signal()          # src_idx != total_in, kept a cycle ahead
            sending = Signal()
            m.submodules.x_fifo = x_fifo = fifo.SyncFIFO(width=len(x_rd.data), depth=self.X_FIFO)
            x_owed = Signal(range(self.X_FIFO + 1))     # words in the FIFO or in flight
            x_issue = Signal()
            x_flight = Signal(BankedMemory.LATENCY)     # valid bits of the read pipeline
            m.d.comb += [x_issue.eq(sending & src_more & (x_owed != self.X_FIFO)),
                         x_rd.addr.eq(Mux(sending, (src_idx << 1) | self.input_bank if banked else src_idx,
                                          self.batch_rd_addr)),
                         self.batch_rd_data.eq(x_rd.data),
                         x_fifo.w_en.eq(x_flight[-1]), x_fifo.w_data.eq(x_rd.data),
                         eng.i.valid.eq(x_fifo.r_rdy), eng.i.payload.eq(x_fifo.r_data.as_signed()),
                         x_fifo.r_en.eq(eng.i.ready)]
            m.d.sync += [x_flight.eq(Cat(x_issue, x_flight[:-1])),
                         x_owed.eq(x_owed + x_issue - (x_fifo.r_rdy & eng.i.ready))]
            with m.If(x_issue):
                m.d.sync += [src_idx.eq(src_idx + 1), src_more.eq(src_idx + 1 != total_in)]
            # logits pass through one register (timing: the engine's output block RAM would otherwise
            # feed the loss unit's running max compare directly)
            o_q = Signal.like(eng.o.payload)
            o_v = Signal()
            with m.If(eng.o.ready):
                m.d.sync += [o_v.eq(eng.o.valid), o_q.eq(eng.o.payload)]
            m.d.comb += [lossu.logits.payload.eq(o_q), lossu.logits.valid.eq(o_v),
                         eng.o.ready.eq(~o_v | lossu.logits.ready), lossu.result.ready.eq(1),
                         eng.batch.eq(self.n_samples)]
            # label lab_idx is read from its register address (timing: no path from the loss unit's
            # `ready` into the read address); it is offered one cycle after lab_idx changes (lab_ok),
            # while lab_idx < n_samples (lab_more, registered)
            lab_idx = Signal(range(self.max_samples + 1))
            lab_ok = Signal()
            lab_more = Signal()
            lab_restart = Signal()
            feeding = Signal()  # labels flow only while a forward pass runs
            m.d.comb += [lossu.label.payload.eq(l_rd.data), lossu.label.valid.eq(feeding & lab_ok & lab_more),
                         l_rd.addr.eq((lab_idx << 1) | self.input_bank if banked else lab_idx)]
            with m.If(lab_restart):
                m.d.sync += [lab_idx.eq(0), lab_ok.eq(0), lab_more.eq(self.n_samples != 0)]
            with m.Elif(lossu.label.valid & lossu.label.ready):
                m.d.sync += [lab_idx.eq(lab_idx + 1), lab_ok.eq(0), lab_more.eq(lab_idx + 1 < self.n_samples)]
            with m.Else():
                m.d.sync += lab_ok.eq(1)

        # --- engine configuration bus: host while idle, the load pass while training -------------------
        # The load pass's writes are registered (timing: the master parameter read, the perturbation
        # and the saturation end in a register, not in the engine's memories).  The perturber is a
        # pipeline of pert.LATENCY stages (theta_out always ready, so fixed latency): each code's
        # engine address follows it through a delay line of the same length, and the load pass
        # waits LATENCY cycles (L_DRAIN) after its last code so every write lands, as before,
        # by the cycle the engine starts.
        ld_addr = Signal(CFG_ADDR_BITS)
        ld_q = Signal(data.StructLayout({"en": 1, "addr": CFG_ADDR_BITS, "data": signed(self.width)}))
        ld_addr_d = ld_addr
        for i in range(pert.LATENCY):
            r = Signal(CFG_ADDR_BITS, name=f"ld_addr_d{i + 1}")
            m.d.sync += r.eq(ld_addr_d)
            ld_addr_d = r
        m.d.sync += [ld_q.en.eq(pert.theta_out.valid), ld_q.addr.eq(ld_addr_d), ld_q.data.eq(pert.theta_out.payload)]
        drain = Signal(range(pert.LATENCY + 1))
        with m.If(self.busy):
            m.d.comb += [eng.cfg_addr.eq(ld_q.addr), eng.cfg_data.eq(ld_q.data), eng.cfg_en.eq(ld_q.en)]
        with m.Else():
            m.d.comb += [eng.cfg_addr.eq(self.cfg_addr), eng.cfg_data.eq(self.cfg_data), eng.cfg_en.eq(self.cfg_en)]

        # --- momentum memory: read-modify-write during the coordinate walk, read by the CGE pass -----
        p = Signal(unsigned(self.addr_bits + 1))      # coordinate of the CGE walk
        b_rd = self.momentum.read_port()
        b_wr = self.momentum.write_port()
        g = Signal(signed(self.sum_bits + 1))
        walk_rd = Signal()
        m.d.comb += [b_rd.addr.eq(Mux(walk_rd, p, cge.rd_addr)), cge.b_data.eq(b_rd.data)]
        p_end = Signal()     # p == n_params, registered with p (timing: the FSM's next-state logic)
        walk_wr = Signal()
        # momentum_next(b, g, m_code) in five registered stages (timing): b, the two halves of
        # m_code * b, their rounded sum, >> M_FRAC + g, saturation; then the write.  Bit-identical:
        # b = lo + hi * 2^24.
        b_q = Signal(signed(B_BITS))
        b_lo = Signal(unsigned(24 + M_FRAC + 1))
        b_hi = Signal(signed(B_BITS - 24 + M_FRAC + 2))
        b_s = Signal(signed(B_BITS + M_FRAC + 3))
        b_v = Signal(signed(max(B_BITS + 3, len(g) + 2)))
        b_lim = (1 << (B_BITS - 1)) - 1
        b_sat = Signal(signed(B_BITS))
        m_q = Signal.like(self.m_code)
        m.d.sync += [b_q.eq(b_rd.data), m_q.eq(self.m_code),
                     b_lo.eq(m_q * b_q[:24]), b_hi.eq(m_q * b_q[24:].as_signed()),
                     b_s.eq(b_lo + (b_hi << 24) + (1 << (M_FRAC - 1))),
                     b_v.eq((b_s >> M_FRAC) + g),
                     b_sat.eq(Mux(b_v > b_lim, b_lim, Mux(b_v < -b_lim - 1, -b_lim - 1, b_v)))]
        with m.If(host & (hq.target == HostTarget.MOMENTUM)):
            m.d.comb += [b_wr.addr.eq(hq.addr), b_wr.data.eq(hq.data), b_wr.en.eq(1)]
        with m.Else():
            m.d.comb += [b_wr.addr.eq(p), b_wr.data.eq(b_sat), b_wr.en.eq(walk_wr)]

        # --- hyperparameters into the blocks --------------------------------------------------------
        t = Signal(32)
        q = Signal(range(self.n_max + 2))
        sr_state = Signal(32)     # stream_seed(seed, t, SR_QUERY) of the current CGE step
        wait = Signal(range(SEEDER_LATENCY + 2))   # seeder requests / latency count of SEED, CW_SEED
        fwd_mode = Signal(Mode)
        m.d.comb += [pert.kind.eq(self.kind), pert.mu_w.eq(self.mu_w), pert.mu_b.eq(self.mu_b), pert.negate.eq(0),
                     pert.coord.eq(p), pert.mode.eq(fwd_mode),
                     upd.kind.eq(self.kind), upd.alpha_w.eq(self.alpha_w), upd.alpha_b.eq(self.alpha_b),
                     upd.seed.eq(self.seed), upd.step.eq(t), upd.first_query.eq(0),
                     upd.n_queries.eq(self.n_queries), upd.n_params.eq(self.n_params),
                     cge.n_params.eq(self.n_params), cge.k_code_w.eq(self.k_code_w), cge.k_shift_w.eq(self.k_shift_w),
                     cge.k_code_b.eq(self.k_code_b), cge.k_shift_b.eq(self.k_shift_b),
                     cge.rounding.eq(self.cge_rounding if self.stochastic_rounding else Rounding.NEAREST),
                     cge.sr_state.eq(sr_state),
                     seeder.seed.eq(self.seed), seeder.step.eq(t), seeder.tag.eq(wait != 0),
                     seeder.query.eq(Mux(is_cge, Mux(wait == 0, MAX_QUERY - 1, SR_QUERY), (q - 1)[:QUERY_BITS])),
                     coords.state_in.eq(seeder.state)]
        # CGE: whether the coordinate stream's current word is below the threshold, registered as the
        # stream loads or steps (timing: xorshift + 33-bit compare out of the FSM's next-state logic)
        cw_hit = Signal()
        with m.If(coords.load):
            m.d.sync += cw_hit.eq(xorshift32_value(coords.state_in) < self.cge_threshold)
        with m.Elif(coords.next):
            m.d.sync += cw_hit.eq(xorshift32_value(coords.word) < self.cge_threshold)
        # CGE: the seeder's second request of the step (tag 1) is the stochastic rounding stream's seed
        with m.If(seeder.out_valid & seeder.out_tag[0]):
            m.d.sync += sr_state.eq(seeder.state)

        # --- the sequencer ---------------------------------------------------------------------------
        l0 = Signal(signed(self.sum_bits))
        d = [Signal(signed(self.sum_bits + 1), name=f"d{i}") for i in range(self.n_max)]
        for i in range(self.n_max):
            m.d.comb += upd.d[i].eq(d[i])
        # d_i lands a cycle after RECORD from registers (timing: RECORD's state decode and the compare of q
        # were in front of the 49-bit clock enables of every d_i); the update pass reads d only after its
        # seeding, many cycles later
        d_new = Signal(signed(self.sum_bits + 1))
        d_we = Signal(self.n_max)
        m.d.sync += d_we.eq(0)
        for i in range(self.n_max):
            with m.If(d_we[i]):
                m.d.sync += d[i].eq(d_new)
        loss_now = eng.loss_sum if self.pinn else lossu.batch_loss
        correct_now = 0 if self.pinn else lossu.correct
        log_wr = self.log.write_port()
        m.d.comb += [log_wr.addr.eq(self.forwards[:max(1, (self.log_depth - 1).bit_length())]),
                     log_wr.data.loss.eq(loss_now), log_wr.data.correct.eq(correct_now)]
        with m.If(self.busy):
            m.d.sync += self.cycles.eq(self.cycles + 1)

        # load pass state
        k = Signal(range(self.max_segments + 1))
        all_done = Signal()      # steps_done == k_steps, registered with steps_done (timing)
        core_ofs = Signal(REGION_SHIFT)
        bias_ofs = Signal(REGION_SHIFT)
        # the open segment's last flat index and whether it is the last segment: registered from k
        # (timing), valid from L_STREAM on since k changes only in the cycle before L_OPEN
        # (k1 = k + 1; open_start = the start of the segment L_OPEN opens, i.e. of segment 0 after LOAD)
        sb = max(1, (self.max_segments - 1).bit_length())
        k1 = Signal(range(self.max_segments + 2))
        seg_last = Signal(unsigned(self.addr_bits + 1))
        k_last = Signal()
        open_start = Signal(unsigned(self.addr_bits))
        loading = Signal()
        m.d.sync += [seg_last.eq(Mux(k1 < self.n_segments, seg_start[k1[:sb]], self.n_params) - 1),
                     k_last.eq(k1 == self.n_segments),
                     open_start.eq(Mux(loading, seg_start[0], seg_start[k1[:sb]]))]
        m.d.comb += p_seq.addr.eq(Mux(load_open, open_start, pert.index + 1))
        k_bias = Signal()        # seg_bias[k] of the open segment, registered in L_OPEN (timing)
        # the perturber's open (state L_OPEN) and the stream's valid (state L_STREAM) come from
        # registers set with the state (timing: not from the FSM's state decode)
        open_q = Signal()
        stream_q = Signal()
        m.d.comb += [pert.open.eq(open_q), pert.segment.eq(k), load_open.eq(open_q), ld_en.eq(stream_q)]
        m.d.comb += ld_addr.eq(Mux(k_bias, (REGION_BIASES << REGION_SHIFT) | bias_ofs,
                                   (REGION_CORES << REGION_SHIFT) | core_ofs))

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [t.eq(self.step0), self.steps_done.eq(0), self.forwards.eq(0), self.cycles.eq(0),
                                 self.done.eq(0), self.busy.eq(1), all_done.eq(self.k_steps == 0)]
                    m.next = "STEP"
            with m.State("STEP"):
                with m.If(all_done):
                    m.d.sync += [self.busy.eq(0), self.done.eq(1)]
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += [q.eq(0), fwd_mode.eq(Mode.OFF)]
                    m.next = "LOAD"
            # load pass: master parameters -> perturber -> engine core/bias memories
            with m.State("LOAD"):
                m.d.sync += [k.eq(0), k1.eq(1), core_ofs.eq(0), bias_ofs.eq(0), open_q.eq(1)]
                m.d.comb += loading.eq(1)
                m.next = "L_OPEN"
            with m.State("L_OPEN"):       # open_q is high
                m.d.sync += [k_bias.eq(seg_bias[k]), open_q.eq(0), stream_q.eq(1)]
                m.next = "L_STREAM"
            with m.State("L_STREAM"):     # stream_q is high
                with m.If(k_bias):
                    m.d.sync += bias_ofs.eq(bias_ofs + 1)
                with m.Else():
                    m.d.sync += core_ofs.eq(core_ofs + 1)
                with m.If(pert.index == seg_last):
                    m.d.sync += [k.eq(k + 1), k1.eq(k1 + 1), stream_q.eq(0)]
                    with m.If(k_last):
                        m.d.sync += drain.eq(0)
                        m.next = "L_DRAIN"
                    with m.Else():
                        m.d.sync += open_q.eq(1)
                        m.next = "L_OPEN"
            with m.State("L_DRAIN"):      # the last codes leave the perturber's pipeline
                m.d.sync += drain.eq(drain + 1)
                with m.If(drain == pert.LATENCY - 1):
                    m.next = "FWD_START"
            with m.State("FWD_START"):
                if self.pinn:
                    m.d.comb += eng.start.eq(1)
                else:
                    m.d.comb += [lossu.clear.eq(1), eng.start.eq(1)]
                    m.d.comb += lab_restart.eq(1)
                    m.d.sync += [src_idx.eq(0), src_more.eq(total_in != 0), sending.eq(1)]
                m.next = "FWD_WAIT"
            with m.State("FWD_WAIT"):
                m.d.comb += feeding.eq(1)
                fwd_done = ~eng.busy if self.pinn else \
                    ~eng.busy & (lossu.samples == self.n_samples) & ~lossu.result.valid
                with m.If(fwd_done):
                    m.d.sync += sending.eq(0)
                    m.next = "RECORD"
            with m.State("RECORD"):
                m.d.comb += log_wr.en.eq(1)
                m.d.sync += [self.forwards.eq(self.forwards + 1), wait.eq(0)]
                with m.If(q == 0):
                    m.d.sync += [l0.eq(loss_now), self.last_l0.eq(loss_now), self.last_correct.eq(correct_now),
                                 q.eq(1), p.eq(0), p_end.eq(self.n_params == 0)]
                with m.If(is_cge):
                    with m.If(q == 0):
                        m.next = "CW_SEED"
                    with m.Else():
                        m.d.sync += g.eq(loss_now - l0)
                        m.next = "CW_MOM_RD"
                with m.Else():
                    m.d.sync += [d_new.eq(loss_now - l0),
                                 d_we.eq(Cat(*[q == i + 1 for i in range(self.n_max)]))]
                    with m.If(q != 0):
                        m.d.sync += q.eq(q + 1)
                    with m.If((q == self.n_queries) | ((q == 0) & (self.n_queries == 0))):
                        m.next = "UPDATE"
                    with m.Else():
                        m.next = "SEED"
            # signRGE: seed query q-1 of step t, build the perturber's checkpoints, load, run
            with m.State("SEED"):
                m.d.comb += seeder.valid.eq(wait == 0)
                m.d.sync += wait.eq(wait + 1)
                with m.If(seeder.out_valid):
                    m.d.comb += [pert.prepare.eq(1), pert.state.eq(seeder.state)]
                    m.d.sync += fwd_mode.eq(Mode.RANDOM)
                    m.next = "PREPARE"
            with m.State("PREPARE"):
                with m.If(~pert.busy):
                    m.next = "LOAD"
            with m.State("UPDATE"):
                m.d.comb += upd.start.eq(1)
                m.next = "UPDATE_WAIT"
            with m.State("UPDATE_WAIT"):
                with m.If(upd.done):
                    m.d.sync += [self.changed.eq(upd.changed)]
                    m.next = "STEP_END"
            # CGE: walk the coordinates with stream (seed, t, 4095); the seeder's next request is
            # stream (seed, t, SR_QUERY) for the update's stochastic rounding (tag 1, stored above)
            with m.State("CW_SEED"):
                m.d.comb += seeder.valid.eq(wait < 2)
                m.d.sync += wait.eq(wait + 1)
                with m.If(seeder.out_valid & ~seeder.out_tag[0]):
                    m.d.comb += coords.load.eq(1)
                    m.next = "CW_TEST"
            with m.State("CW_TEST"):
                with m.If(p_end):
                    m.next = "CGE_UPDATE"
                with m.Elif(cw_hit):
                    m.d.sync += fwd_mode.eq(Mode.COORD)
                    m.next = "LOAD"
                with m.Else():
                    m.d.sync += g.eq(0)
                    m.next = "CW_MOM_RD"
            with m.State("CW_MOM_RD"):    # momentum read address = p
                m.d.comb += walk_rd.eq(1)
                m.next = "CW_MOM_B"
            with m.State("CW_MOM_B"):     # b_q <- b_p
                m.d.comb += walk_rd.eq(1)
                m.next = "CW_MOM_P"
            with m.State("CW_MOM_P"):     # m_code * b_p in two halves
                m.d.comb += walk_rd.eq(1)
                m.next = "CW_MOM_S"
            with m.State("CW_MOM_S"):     # their sum + the rounding half
                m.d.comb += walk_rd.eq(1)
                m.next = "CW_MOM_V"
            with m.State("CW_MOM_V"):     # >> M_FRAC, + g_p
                m.d.comb += walk_rd.eq(1)
                m.next = "CW_MOM_T"
            with m.State("CW_MOM_T"):     # saturate
                m.d.comb += walk_rd.eq(1)
                m.next = "CW_MOM_WR"
            with m.State("CW_MOM_WR"):    # b_p <- sat(round(m * b_p) + g_p); next coordinate
                m.d.comb += [walk_rd.eq(1), walk_wr.eq(1), coords.next.eq(1)]
                m.d.sync += [p.eq(p + 1), p_end.eq(p + 1 == self.n_params)]
                m.next = "CW_TEST"
            with m.State("CGE_UPDATE"):
                m.d.comb += cge.start.eq(1)
                m.next = "CGE_WAIT"
            with m.State("CGE_WAIT"):
                with m.If(cge.done):
                    m.d.sync += [self.changed.eq(cge.changed)]
                    m.next = "STEP_END"
            with m.State("STEP_END"):
                m.d.sync += [t.eq(t + 1), self.steps_done.eq(self.steps_done + 1),
                             all_done.eq(self.steps_done + 1 == self.k_steps)]
                m.next = "STEP"
        return m
