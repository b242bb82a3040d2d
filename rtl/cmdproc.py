"""Command processor: decodes request frames, checks them, executes them, encodes the reply.

Byte-stream ports (`i` line bytes in, `o` line bytes out with `last` on each frame's closing END)
in lib.stream form, so a UART (rtl/uart.py) or a DMA stream (e.g. an XDMA AXI-Stream channel)
attaches unchanged.  A request is buffered whole before anything is executed, so a frame that
fails any check changes no memory, register or operation state (docs/protocol.md).

Engine interface (what the integration wires to the compute engines):

* ``mem_<region>`` per region of the identify record: word ports ``w_addr, w_data, w_en`` (write,
  registered: ``w_en`` pulses one cycle) and ``r_addr -> r_data`` (read: the address, a register,
  is held until the byte is sent and the data is taken ``read_latency`` cycles after it (or later;
  ``r_data`` must stay valid while the address holds), so a lib.memory read port
  with transparent_for=() (1) or a pipelined one, e.g. BankedMemory's (3), fits).  Words are
  little-endian groups of the region's width (8, 16 or 32).
* ``config``: the configuration register file (n_config x 32 bit), written by CONFIGURE, cleared
  by RESET.  ``results``: n_results x 32 bit inputs read by READ_RESULTS (losses, counters).
* ``op_start`` (one-cycle pulse), ``op_code`` (protocol.Op), ``op_arg`` (u32, e.g. K steps);
  the engine raises ``op_busy`` from the cycle after ``op_start`` until it is done and reports
  ``op_error`` (0 = fine).  ``idle`` is high while nothing is received, pending, sent or running
  (the virtual board stops advancing simulated time then).  ``soft_reset`` (one-cycle pulse, RESET command) must abort the
  operation and clear results and op_error.  While ``op_busy`` the processor refuses everything
  but IDENTIFY, STATUS, READ_RESULTS and RESET (Status.BUSY), so memories are the engine's; the
  one exception is WRITE_REGION to a region flagged ``REGION_FLAG_BUSY_WRITABLE`` (the idle bank of
  a double-buffered batch: the host uploads the next batch while a step runs; the integration
  guarantees the engine does not read what such a region writes), protocol_spec.accepted_while_busy.

Timing (the full ECP5 design's routing, docs/boards.md): a request is decoded in four registered
cycles (payload length, range sums, range flags, checks), and each reply byte is built in a short pipeline
(address, register group, register word, byte; region address, region word, byte) before the
encoder, so no path runs from a register file or a block RAM's multiplexer through the reply's byte
select into the CRC.  Each region's read word is registered before the region selection.  The
configuration registers' clock enables, data and synchronous resets come straight from flip-flops:
CONFIGURE writes through two registered stages, RESET clears through one clear register per
CLEAR_GROUP registers, and the file has no other reset.  A copied byte's word address and lane are
counters.
"""
from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ttzo.golden import protocol_spec as P

from .framing import FrameByte, FrameDecoder, FrameEncoder

#: Bytes of every request kept in registers (header + the longest fixed request fields).
HEAD_BYTES = P.HEADER_SIZE + P.READ_REQ.size

# internal actions after the checks
ACT_NONE, ACT_WRITE, ACT_CONFIG, ACT_RUN, ACT_RESET = range(5)
# reply payload sources
SRC_NONE, SRC_ROM, SRC_REGION, SRC_CONFIG, SRC_RESULTS, SRC_STATUS = range(6)


def region_port(width: int, depth: int) -> wiring.Signature:
    """Word ports of one memory region, seen from the command processor."""
    aw = max(1, (depth - 1).bit_length())
    return wiring.Signature({"w_addr": Out(aw), "w_data": Out(width), "w_en": Out(1),
                             "r_addr": Out(aw), "r_data": In(width)})


REG_GROUP = 8
"""Registers per first-level group of the reply's register-word selection."""

CLEAR_GROUP = 4
"""Configuration registers (x 32 flip-flops) per copy of RESET's clear register."""


def _select_groups(m: Module, name: str, words: list, sub: Value) -> list[Signal]:
    """One register per group of REG_GROUP `words`, loaded every cycle with the word `sub` picks in
    its group (the first level of the reply's register-word selection; missing words read 0)."""
    out = []
    for g in range(0, len(words), REG_GROUP):
        group = words[g:g + REG_GROUP]
        group += [Const(0, 32)] * (REG_GROUP - len(group))
        q = Signal(32, name=f"{name}_grp{g // REG_GROUP}")
        m.d.sync += q.eq(Array(group)[sub])
        out.append(q)
    return out


class CommandProcessor(wiring.Component):
    """The protocol engine of the board.  `ident` (protocol.Identify) fixes regions, sizes, formats."""

    def __init__(self, ident: P.Identify, read_latency: int = 1, config_bits: "tuple[int, ...] | None" = None,
                 narrow_ranges: bool = False) -> None:
        """`config_bits[k]` (0..32, default 32): configuration register k holds a `config_bits[k]`-bit signed
        value (it reads back sign-extended) and ``config_fit[k]`` says whether the last word written to it
        was one (1 for 32-bit and unstored registers); 0 bits: not stored, reads 0, writes ignored.  A small
        design keeps only the bits it uses and refuses a start when a written value did not fit (the serial
        design on the UP5K, docs/rtl-serial.md).  `narrow_ranges`: the region range checks add only the
        offset's low bits (those of the largest region's size) and flag the others, instead of 33-bit
        sums (fewer LUTs and carries; same answers; off by default so the placed-and-routed ECP5 full
        design keeps its netlist and seed, docs/boards.md)."""
        self.narrow_ranges = narrow_ranges
        self.has_config_fit = config_bits is not None     # the port exists only then (the full design's
        if config_bits is None:                             # netlist stays as placed and routed)
            config_bits = (32,) * ident.n_config
        if len(config_bits) != ident.n_config or not all(0 <= b <= 32 for b in config_bits):
            raise ValueError(f"config_bits needs {ident.n_config} widths in 0..32, got {config_bits}")
        self.config_bits = tuple(config_bits)
        if not 1 <= read_latency <= 8:
            raise ValueError(f"read_latency {read_latency}: must be 1..8 cycles")
        self.read_latency = read_latency
        for r in ident.regions:
            if r.width not in (8, 16, 32):
                raise ValueError(f"region {r.name}: width {r.width} not supported in gateware (8, 16 or 32)")
            if r.depth < 1:
                raise ValueError(f"region {r.name}: depth must be at least 1 word")
        if len({r.id for r in ident.regions}) != len(ident.regions):
            raise ValueError("region ids must be unique")
        if not 1 <= ident.n_config <= 255 or not 1 <= ident.n_results <= 255:
            raise ValueError("n_config and n_results must be in 1..255")
        if not 4 * max(ident.n_config, ident.n_results, 4) <= ident.max_payload <= 0xFFFF - 16:
            raise ValueError(f"max_payload {ident.max_payload} too small for the register files or too large")
        self.ident = ident
        self.rom = ident.encode()
        if len(self.rom) > ident.max_payload:
            raise ValueError("identify record longer than max_payload")
        self.max_frame = P.HEADER_SIZE + ident.max_payload + P.CRC_SIZE
        members = {
            "i": In(stream.Signature(8)),
            "o": Out(stream.Signature(FrameByte)),
            "config": Out(data.ArrayLayout(32, ident.n_config)),
            **({"config_fit": Out(ident.n_config)} if self.has_config_fit else {}),
            "results": In(data.ArrayLayout(32, ident.n_results)),
            "op_start": Out(1), "op_code": Out(8), "op_arg": Out(32),
            "op_busy": In(1), "op_error": In(8), "soft_reset": Out(1),
            "rx_ok": Out(32), "rx_bad": Out(32), "idle": Out(1),
        }
        for r in ident.regions:
            members[f"mem_{r.name}"] = Out(region_port(r.width, r.depth))
        super().__init__(members)

    def port(self, region: P.RegionInfo):
        return getattr(self, f"mem_{region.name}")

    def elaborate(self, platform) -> Module:
        m = Module()
        ident, regions = self.ident, self.ident.regions
        m.submodules.dec = dec = FrameDecoder()
        m.submodules.enc = enc = FrameEncoder()
        wiring.connect(m, wiring.flipped(self.i), dec.i)
        wiring.connect(m, enc.o, wiring.flipped(self.o))

        m.submodules.buf = buf = memory.Memory(shape=8, depth=self.max_frame, init=[])
        bw = buf.write_port()
        br = buf.read_port(transparent_for=())
        m.submodules.rom = rom = memory.Memory(shape=8, depth=len(self.rom), init=list(self.rom))
        rr = rom.read_port(transparent_for=())

        # --- receive ------------------------------------------------------------------------------
        count = Signal(range(self.max_frame + 1))
        overflow = Signal()
        f_crc_ok = Signal()
        f_bad_esc = Signal()
        head = Array(Signal(8, name=f"head{k}") for k in range(HEAD_BYTES))
        h_ver, h_cmd, h_seq, h_st = head[0], head[1], head[2], head[3]
        h_len = Cat(head[4], head[5])
        p = [head[P.HEADER_SIZE + k] for k in range(P.READ_REQ.size)]
        plen = Signal(16)              # registered in DECODE (the frame is complete then)

        # --- registers ----------------------------------------------------------------------------
        # reset_less: cleared by the clear registers below (which the domain's reset sets), so the
        # flip-flops' synchronous reset is one register, not a LUT ORing two resets (timing)
        cfg = Array(Signal(32, name=f"cfg{k}", reset_less=True) for k in range(ident.n_config))
        for k in range(ident.n_config):
            m.d.comb += self.config[k].eq(cfg[k])
        res = Array(self.results[k] for k in range(ident.n_results))
        last_valid, last_seq, last_cmd, last_st = Signal(), Signal(8), Signal(8), Signal(8)
        last_op = Signal(8)
        op_cycles = Signal(32)
        m.d.sync += [self.op_start.eq(0), self.soft_reset.eq(0)]
        # RESET clears the frame counters a cycle after CHECK (soft_reset is CHECK's registered RESET
        # pulse; the cycle after CHECK receives, checks and counts nothing), not through CHECK's
        # status chain into the counters' data inputs (timing)
        with m.If(self.soft_reset):
            m.d.sync += [self.rx_ok.eq(0), self.rx_bad.eq(0)]
        with m.If(self.op_start):
            m.d.sync += op_cycles.eq(0)
        with m.Elif(self.op_busy):
            m.d.sync += op_cycles.eq(op_cycles + 1)

        # --- request field decoding (combinational, valid in CHECK) --------------------------------
        rid = p[0]
        off = Cat(p[1], p[2], p[3], p[4])
        rcnt = Cat(p[5], p[6])
        reg_first = Cat(p[0], p[1])
        reg_count = Cat(p[2], p[3])
        hit = Signal()
        sel = Signal(range(max(2, len(regions))))
        sel_writable = Signal()
        sel_busy_wr = Signal()        # region flagged writable while an operation runs
        sel_mask = Signal(2)          # word bytes - 1
        sel_shift = Signal(2)         # log2 word bytes
        sel_size = Signal(32)
        for k, r in reversed(list(enumerate(regions))):
            with m.If(rid == r.id):
                m.d.comb += [hit.eq(1), sel.eq(k), sel_writable.eq(r.writable), sel_busy_wr.eq(r.busy_writable),
                             sel_mask.eq(r.word_bytes - 1), sel_shift.eq(r.word_bytes.bit_length() - 1),
                             sel_size.eq(r.size)]
        dlen = Signal(16)
        m.d.comb += dlen.eq(plen - P.WRITE_HDR.size)

        # Range and length checks, registered in FLAGS (a cycle before CHECK uses them): in CHECK they
        # would sit in series with the priority chain below.  Each is a sum and a comparison: the sums
        # (and the region's size) are registered a cycle earlier, in SUMS, so an adder and a
        # comparator are not in series either (timing).
        w_range_bad, r_range_bad, c_range_bad, g_range_bad = (
            Signal(name=n_) for n_ in ("w_range_bad", "r_range_bad", "c_range_bad", "g_range_bad"))
        n_regs = Mux(h_cmd == P.Cmd.READ_CONFIG, ident.n_config, ident.n_results)
        # an offset at or beyond 2^ob (ob: bits of the largest region's size) is out of range whatever the
        # count, so the sums need only its low ob bits and one "high bits set" flag (narrow adders)
        if self.narrow_ranges:
            ob = min(32, max([r.size for r in regions], default=1).bit_length())
            sum_exprs = {"w_end": off[:ob] + dlen, "r_end": off[:ob] + rcnt, "off_hi": off[ob:].any()}
        else:
            sum_exprs = {"w_end": off + dlen, "r_end": off + rcnt}
        sum_exprs.update({"c_end": reg_first + ((plen - P.REG_FIRST.size) >> 2), "g_end": reg_first + reg_count})
        ends = {k: Signal(v.shape(), name=k) for k, v in sum_exprs.items()}
        size_q = Signal.like(sel_size, name="size_q")
        sums = [ends[k].eq(v) for k, v in sum_exprs.items()] + [size_q.eq(sel_size)]
        w_bad = ((off[:2] | dlen[:2]) & sel_mask).any() | (ends["w_end"] > size_q)
        r_bad = ((off[:2] | rcnt[:2]) & sel_mask).any() | (rcnt > ident.max_payload) | (ends["r_end"] > size_q)
        if self.narrow_ranges:
            w_bad, r_bad = w_bad | ends["off_hi"], r_bad | ends["off_hi"]
        flags = [w_range_bad.eq(w_bad), r_range_bad.eq(r_bad),
                 c_range_bad.eq(ends["c_end"] > ident.n_config),
                 g_range_bad.eq(ends["g_end"] > n_regs)]

        known = Signal()
        for c in P.Cmd:
            with m.If(h_cmd == c):
                m.d.comb += known.eq(1)
        is_run = (h_cmd == P.Cmd.RUN_INFERENCE) | (h_cmd == P.Cmd.RUN_STEPS)
        allowed_busy = Const(0)
        for c in P.ALLOWED_WHEN_BUSY:
            allowed_busy = allowed_busy | (h_cmd == c)
        busy = self.op_busy | self.op_start
        # WRITE_REGION with a whole write header to a region flagged writable while busy
        busy_write = (h_cmd == P.Cmd.WRITE_REGION) & (plen >= P.WRITE_HDR.size) & hit & sel_busy_wr

        # The header-level checks (version, header status, length, known command, retransmitted RUN)
        # depend only on registers that hold from FLAGS to CHECK (the request's header and length, and
        # the last request's record, which only CHECK updates), so FLAGS registers their outcome and
        # CHECK's priority chain starts from one flag (timing).
        S = P.Status
        pre_fail = Signal()             # a header-level check failed (registered in FLAGS) ...
        pre_st = Signal(8)              # ... with this status
        pre_fail_d, pre_st_d = Signal(), Signal(8)
        m.d.comb += pre_fail_d.eq(1)
        with m.If(h_ver != P.VERSION):
            m.d.comb += pre_st_d.eq(S.VERSION)
        with m.Elif(h_st != 0):
            m.d.comb += pre_st_d.eq(S.HEADER)
        with m.Elif(h_len != plen):
            m.d.comb += pre_st_d.eq(S.LENGTH)
        with m.Elif(~known):
            m.d.comb += pre_st_d.eq(S.COMMAND)
        with m.Elif(is_run & last_valid & (last_seq == h_seq) & (last_cmd == h_cmd)):
            m.d.comb += pre_st_d.eq(last_st)                # retransmitted RUN: answer, do not run again
        with m.Else():
            m.d.comb += pre_fail_d.eq(0)
        flags += [pre_fail.eq(pre_fail_d), pre_st.eq(pre_st_d)]

        st = Signal(8)
        act = Signal(3)
        src = Signal(3)
        rlen = Signal(16)
        with m.If(pre_fail):
            m.d.comb += st.eq(pre_st)
        with m.Elif(busy & ~allowed_busy & ~busy_write):
            m.d.comb += st.eq(S.BUSY)
        with m.Else():
            with m.Switch(h_cmd):
                with m.Case(P.Cmd.IDENTIFY):
                    with m.If(plen != 0):
                        m.d.comb += st.eq(S.LENGTH)
                    with m.Else():
                        m.d.comb += [src.eq(SRC_ROM), rlen.eq(len(self.rom))]
                with m.Case(P.Cmd.STATUS):
                    with m.If(plen != 0):
                        m.d.comb += st.eq(S.LENGTH)
                    with m.Else():
                        m.d.comb += [src.eq(SRC_STATUS), rlen.eq(P.STATUS_REPLY.size)]
                with m.Case(P.Cmd.RESET, P.Cmd.RUN_INFERENCE, P.Cmd.RUN_STEPS):
                    with m.If(plen != Mux(h_cmd == P.Cmd.RESET, 0, P.RUN_REQ.size)):
                        m.d.comb += st.eq(S.LENGTH)
                    with m.Else():
                        m.d.comb += act.eq(Mux(h_cmd == P.Cmd.RESET, ACT_RESET, ACT_RUN))
                with m.Case(P.Cmd.WRITE_REGION):
                    with m.If(plen < P.WRITE_HDR.size):
                        m.d.comb += st.eq(S.LENGTH)
                    with m.Elif(~hit):
                        m.d.comb += st.eq(S.REGION)
                    with m.Elif(~sel_writable):
                        m.d.comb += st.eq(S.READ_ONLY)
                    with m.Elif(w_range_bad):
                        m.d.comb += st.eq(S.RANGE)
                    with m.Else():
                        m.d.comb += act.eq(ACT_WRITE)
                with m.Case(P.Cmd.READ_REGION):
                    with m.If(plen != P.READ_REQ.size):
                        m.d.comb += st.eq(S.LENGTH)
                    with m.Elif(~hit):
                        m.d.comb += st.eq(S.REGION)
                    with m.Elif(r_range_bad):
                        m.d.comb += st.eq(S.RANGE)
                    with m.Else():
                        m.d.comb += [src.eq(SRC_REGION), rlen.eq(rcnt)]
                with m.Case(P.Cmd.CONFIGURE):
                    with m.If((plen < P.REG_FIRST.size) | (plen[:2] != 2)):
                        m.d.comb += st.eq(S.LENGTH)
                    with m.Elif(c_range_bad):
                        m.d.comb += st.eq(S.RANGE)
                    with m.Else():
                        m.d.comb += act.eq(ACT_CONFIG)
                with m.Case(P.Cmd.READ_CONFIG, P.Cmd.READ_RESULTS):
                    with m.If(plen != P.REG_RANGE.size):
                        m.d.comb += st.eq(S.LENGTH)
                    with m.Elif(g_range_bad):
                        m.d.comb += st.eq(S.RANGE)
                    with m.Else():
                        m.d.comb += [src.eq(Mux(h_cmd == P.Cmd.READ_CONFIG, SRC_CONFIG, SRC_RESULTS)),
                                     rlen.eq(reg_count << 2)]

        # --- latched execution state --------------------------------------------------------------
        r_st, r_cmd, r_seq = Signal(8), Signal(8), Signal(8)
        r_src, r_len = Signal(3), Signal(16)
        r_sel = Signal.like(sel)
        r_onehot = Signal(max(1, len(regions)))   # r_sel decoded (CHECK): the write ports' enables
        r_mask = Signal(2)
        c_mask = Signal(2)             # word bytes - 1 of the copy (CHECK): 3 for CONFIGURE, else r_mask
        c_config = Signal()            # the copy goes to the configuration registers (CHECK)
        c_lane = Signal(2)             # byte lane of the next copied byte within its word
        aw_max = max([8] + [max(1, (r.depth - 1).bit_length()) for r in regions])
        c_addr = Signal(aw_max)        # word (or register) the next copied byte belongs to
        r_base = Signal(32)            # first word address (regions) or first register
        j = Signal(17)                 # byte index within the reply (header included) or copy
        n = Signal(16)                 # bytes to copy (WRITE/CONFIGURE)
        word = Signal(32)
        # CONFIGURE's register write, registered twice: index and word a cycle after COPY_DATA, then
        # the index decoded into one enable per register, so each register's clock enable and data
        # come straight from flip-flops (lands two cycles after COPY_DATA).
        # RESET's clear of the register file (a cycle after CHECK: the clear does not hang off the
        # checks) from one register per CLEAR_GROUP registers, each driving its group's synchronous
        # reset directly.  The copies form a shift chain (group g is cleared g cycles after group 0,
        # all within a few cycles, long before the RESET reply is sent and another request can read
        # or write a register): copies loaded from one source would be merged back into one net by
        # Yosys.  The domain's reset sets them all (init 1), so reset clears the file as before.
        cw_en, cw_idx, cw_data = Signal(name="cw_en"), Signal(8, name="cw_idx"), Signal(32, name="cw_data")
        cw_we = Signal(ident.n_config, name="cw_we")
        cw_word = Signal(32, name="cw_word")
        cfg_clear = [Signal(init=1, name=f"cfg_clear{g}")
                     for g in range((ident.n_config + CLEAR_GROUP - 1) // CLEAR_GROUP)]
        m.d.sync += [cw_en.eq(0), cw_word.eq(cw_data), cfg_clear[0].eq(0)]
        m.d.sync += [q.eq(prev) for prev, q in zip(cfg_clear, cfg_clear[1:])]
        m.d.sync += [cw_we[k].eq(cw_en & (cw_idx == k)) for k in range(ident.n_config)]
        for k in range(ident.n_config):
            bits = self.config_bits[k]
            if self.has_config_fit:
                m.d.comb += self.config_fit[k].eq(1)
            if not bits:
                continue            # not stored: reads 0
            if bits == 32:
                with m.If(cfg_clear[k // CLEAR_GROUP]):
                    m.d.sync += cfg[k].eq(0)
                with m.Elif(cw_we[k]):
                    m.d.sync += cfg[k].eq(cw_word)
                continue
            held = Signal(bits, name=f"cfg{k}_held", reset_less=True)
            fit = Signal(name=f"cfg{k}_fit", reset_less=True)
            top = cw_word[bits - 1:]
            with m.If(cfg_clear[k // CLEAR_GROUP]):
                m.d.sync += [held.eq(0), fit.eq(1)]
            with m.Elif(cw_we[k]):
                m.d.sync += [held.eq(cw_word[:bits]), fit.eq((top == 0) | top.all())]
            m.d.comb += [cfg[k].eq(held.as_signed()), self.config_fit[k].eq(fit)]
        s_busy, s_op, s_err = Signal(), Signal(8), Signal(8)
        s_ok, s_bad, s_cycles = Signal(32), Signal(32), Signal(32)

        # memory ports: read addresses follow the reply index; region writes are registered, so a word
        # copied in COPY_DATA is written in the next cycle (w_en pulses for one cycle)
        for r in regions:
            m.d.sync += self.port(r).w_en.eq(0)
        i_pay = Signal(16)
        m.d.comb += i_pay.eq(j - P.HEADER_SIZE)
        m.d.comb += rr.addr.eq(i_pay)
        # The region read address is registered (from the index j of the cycle before), so the adder
        # does not sit in series with the integration's address multiplexer and the block RAMs'
        # address inputs (the batch's 49 DP16KDs on the full ECP5 design; timing).
        for k, r in enumerate(regions):
            port = self.port(r)
            shift = r.word_bytes.bit_length() - 1
            m.d.sync += port.r_addr.eq(r_base + (i_pay >> shift))

        # The reply byte at index j: header, then the payload source chosen by CHECK.  Pipelined:
        # REPLY_ADDR presents the address (j is held until the byte is sent) and registers the
        # register index; the register word is registered in the two cycles after (group, then
        # word); REPLY_DATA (`reply_wait` cycles after REPLY_ADDR, so the register word is there and
        # the region word is too: its address registered a cycle after REPLY_ADDR, its data
        # `read_latency` cycles later, registered per region (rd_*) a cycle after that and selected
        # into rdw a cycle later) registers the byte that REPLY_SEND hands to the encoder.
        hdr = Array([Const(P.VERSION, 8), r_cmd, r_seq, r_st, r_len[:8], r_len[8:]])
        stat = Cat(s_busy, Const(0, 7), s_op, s_err, Const(0, 8), s_ok, s_bad, s_cycles)
        # the region address is registered a cycle after REPLY_ADDR (see the ports above) and the
        # region word two cycles after the memory delivers it (rd_*, then rdw below)
        reply_wait = max(3, self.read_latency + 3)
        ridx = Signal(8)               # register index of this byte (REPLY_ADDR)
        rword = Signal(32)             # its register word (two cycles after)
        # The register word is selected in two registered levels, groups of REG_GROUP words by
        # ridx[:3], then the group by ridx[3:] (held since REPLY_ADDR), so no path runs from ridx
        # through a 64:1 selection of registers spread over the whole chip (the full ECP5 design's
        # routed critical path before this, docs/boards.md).
        cfg_groups = _select_groups(m, "cfg", list(cfg), ridx[:3])
        res_groups = _select_groups(m, "res", list(res), ridx[:3])
        m.d.sync += rword.eq(Mux(r_src == SRC_CONFIG, Array(cfg_groups)[ridx[3:]], Array(res_groups)[ridx[3:]]))
        # Each region's word is registered as it comes (no logic after the integration's), then
        # selected by r_sel (held through the reply) into a register, and its byte is selected from
        # that register in REPLY_DATA, so no path runs from a block RAM (and the integration's logic
        # after it) through a selection into rdw or byte_q (timing).
        rdw = Signal(max([r.width for r in regions], default=8))
        if regions:
            rdk = [Signal(r.width, name=f"rd_{r.name}") for r in regions]
            m.d.sync += [q.eq(self.port(r).r_data) for q, r in zip(rdk, regions)]
            m.d.sync += rdw.eq(Array(rdk)[r_sel])
        wait = Signal(range(reply_wait + 1))
        byte = Signal(8)
        byte_q = Signal(8)
        lane = i_pay[:2]
        with m.Switch(r_src):
            with m.Case(SRC_ROM):
                m.d.comb += byte.eq(rr.data)
            with m.Case(SRC_REGION):
                m.d.comb += byte.eq((rdw >> ((lane & r_mask) << 3))[:8])
            with m.Case(SRC_CONFIG, SRC_RESULTS):
                m.d.comb += byte.eq((rword >> (lane << 3))[:8])
            with m.Case(SRC_STATUS):
                m.d.comb += byte.eq(stat.word_select(i_pay[:4], 8))
        total = Signal(17)
        m.d.comb += total.eq(r_len + P.HEADER_SIZE)

        with m.FSM():
            with m.State("RX"):
                m.d.comb += dec.o.ready.eq(1)
                # nothing received, nothing to send: a simulation may stop the clock until input comes
                m.d.comb += self.idle.eq((count == 0) & ~dec.o.valid & ~enc.o.valid & ~self.op_busy
                                         & ~self.op_start)
                tok = dec.o.payload
                with m.If(dec.o.valid & ~tok.end):
                    with m.If(count < self.max_frame):
                        m.d.comb += [bw.addr.eq(count), bw.data.eq(tok.data), bw.en.eq(1)]
                        with m.If(count < HEAD_BYTES):
                            m.d.sync += head[count].eq(tok.data)
                        m.d.sync += count.eq(count + 1)
                    with m.Else():
                        m.d.sync += overflow.eq(1)
                with m.If(dec.o.valid & tok.end):
                    with m.If((count == 0) & ~tok.bad_escape & ~overflow):
                        pass                                     # idle END between frames
                    with m.Else():
                        m.d.sync += [f_crc_ok.eq(tok.crc_ok), f_bad_esc.eq(tok.bad_escape)]
                        m.next = "DECODE"

            # Three decode cycles before CHECK: the payload length, the range sums, the range/length flags.
            with m.State("DECODE"):
                m.d.sync += plen.eq(count - P.MIN_FRAME)
                m.next = "SUMS"
            with m.State("SUMS"):
                m.d.sync += sums
                m.next = "FLAGS"
            with m.State("FLAGS"):
                m.d.sync += flags
                # the first word / register and the copy length of whichever command this is (used
                # only by the commands they belong to, after CHECK), so CHECK's status chain does
                # not select them (timing)
                is_reg_cmd = ((h_cmd == P.Cmd.CONFIGURE) | (h_cmd == P.Cmd.READ_CONFIG)
                              | (h_cmd == P.Cmd.READ_RESULTS))
                m.d.sync += [r_base.eq(Mux(is_reg_cmd, reg_first, off >> sel_shift)),
                             n.eq(Mux(h_cmd == P.Cmd.CONFIGURE, plen - P.REG_FIRST.size, dlen))]
                m.next = "CHECK"

            with m.State("CHECK"):
                m.d.sync += [count.eq(0), overflow.eq(0), r_cmd.eq(h_cmd | P.REPLY_BIT), r_seq.eq(h_seq),
                             r_src.eq(SRC_NONE), r_len.eq(0), j.eq(0), word.eq(0), r_sel.eq(sel),
                             r_mask.eq(sel_mask), c_config.eq(h_cmd == P.Cmd.CONFIGURE),
                             c_mask.eq(Mux(h_cmd == P.Cmd.CONFIGURE, 3, sel_mask)), c_lane.eq(0), c_addr.eq(r_base)]
                m.d.sync += [r_onehot[k].eq(sel == k) for k in range(len(regions))]
                with m.If(count < P.MIN_FRAME):
                    m.d.sync += self.rx_bad.eq(self.rx_bad + 1)          # runt: dropped silently
                    m.next = "RX"
                with m.Elif(f_bad_esc | overflow | ~f_crc_ok):
                    m.d.sync += [self.rx_bad.eq(self.rx_bad + 1),
                                 r_st.eq(Mux(f_bad_esc | overflow, S.FRAME, S.CRC))]
                    m.next = "REPLY_ADDR"
                with m.Else():
                    m.d.sync += [self.rx_ok.eq(self.rx_ok + 1), r_st.eq(st), r_src.eq(src), r_len.eq(rlen),
                                 last_valid.eq(1), last_seq.eq(h_seq), last_cmd.eq(h_cmd), last_st.eq(st),
                                 s_busy.eq(self.op_busy), s_op.eq(last_op), s_err.eq(self.op_error),
                                 s_ok.eq(self.rx_ok + 1), s_bad.eq(self.rx_bad), s_cycles.eq(op_cycles)]
                    m.next = "REPLY_ADDR"
                    with m.If(st == S.OK):
                        with m.If(act == ACT_WRITE):
                            m.d.sync += j.eq(P.HEADER_SIZE + P.WRITE_HDR.size)
                            m.next = "COPY_ADDR"
                        with m.If(act == ACT_CONFIG):
                            m.d.sync += j.eq(P.HEADER_SIZE + P.REG_FIRST.size)
                            m.next = "COPY_ADDR"
                        with m.If(act == ACT_RESET):
                            m.d.sync += [self.soft_reset.eq(1), last_op.eq(0)]
                            m.d.sync += cfg_clear[0].eq(1)
                        with m.If(act == ACT_RUN):
                            op = Mux(h_cmd == P.Cmd.RUN_INFERENCE, P.Op.INFERENCE, P.Op.STEPS)
                            m.d.sync += [self.op_start.eq(1), self.op_code.eq(op), last_op.eq(op),
                                         self.op_arg.eq(Cat(p[0], p[1], p[2], p[3]))]

            # Copy payload bytes from the frame buffer into a region (WRITE) or the registers
            # (CONFIGURE): one byte every two cycles (address, then data).
            with m.State("COPY_ADDR"):
                m.d.comb += br.addr.eq(j)
                with m.If(n == 0):                   # nothing (left) to copy: an empty WRITE or CONFIGURE
                    m.d.sync += j.eq(0)
                    m.next = "REPLY_ADDR"
                with m.Else():
                    m.next = "COPY_DATA"
            # The byte's lane and its word's address are counters set in CHECK (c_lane, c_addr), not
            # sums of the byte index and the first word (an adder chain into the write ports; timing).
            with m.State("COPY_DATA"):
                m.d.comb += br.addr.eq(j)
                word_next = Cat(word[8:32], br.data)
                lane_last = c_lane == c_mask
                m.d.sync += [word.eq(word_next), j.eq(j + 1), n.eq(n - 1), c_lane.eq(c_lane + 1)]
                with m.If(lane_last):
                    m.d.sync += [c_lane.eq(0), c_addr.eq(c_addr + 1)]
                    with m.If(c_config):
                        m.d.sync += [cw_en.eq(1), cw_idx.eq(c_addr), cw_data.eq(word_next)]
                    with m.Else():                       # region write ports are registered (see above)
                        for k, r in enumerate(regions):
                            port = self.port(r)
                            m.d.sync += [port.w_addr.eq(c_addr), port.w_data.eq(word_next[32 - r.width:]),
                                         port.w_en.eq(r_onehot[k])]
                with m.If(n == 1):
                    m.d.sync += j.eq(0)
                    m.next = "REPLY_ADDR"
                with m.Else():
                    m.next = "COPY_ADDR"

            # Reply: 6 header bytes then r_len payload bytes, one byte every reply_wait + 2 cycles
            # (REPLY_ADDR, reply_wait - 1 in REPLY_WAIT, REPLY_DATA, REPLY_SEND while the encoder is ready).
            with m.State("REPLY_ADDR"):
                m.d.sync += [ridx.eq(r_base + (i_pay >> 2)), wait.eq(reply_wait - 1)]
                m.next = "REPLY_WAIT"
            with m.State("REPLY_WAIT"):
                m.d.sync += wait.eq(wait - 1)
                with m.If(wait == 1):
                    m.next = "REPLY_DATA"
            with m.State("REPLY_DATA"):
                m.d.sync += byte_q.eq(Mux(j < P.HEADER_SIZE, hdr[j[:3]], byte))
                m.next = "REPLY_SEND"
            with m.State("REPLY_SEND"):
                m.d.comb += [enc.i.valid.eq(1), enc.i.payload.data.eq(byte_q),
                             enc.i.payload.last.eq(j == total - 1)]
                with m.If(enc.i.ready):
                    m.d.sync += j.eq(j + 1)
                    with m.If(j == total - 1):
                        m.next = "RX"
                    with m.Else():
                        m.next = "REPLY_ADDR"
        return m
