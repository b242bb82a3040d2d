"""A deep memory split into block-RAM-sized banks, with a pipelined read that ends every bank in a register.

Why: Yosys maps an ECP5 block RAM without its output register (``REGMODE NOREG``), so one deep
``lib.memory.Memory`` (the trainer's 50,176 x 9 batch: 25 DP16KDs by address) is block clock-to-out
+ a 25:1 LUT multiplexer + routing before the first flip-flop, far over 10 ns.  Here each bank is
its own ``lib.memory.Memory`` of ``bank_depth`` words (one DP16KD at 2048 x 9), and
:meth:`BankedMemory.pipelined_read_port` reads in :attr:`BankedMemory.LATENCY` = 3 cycles: the banks'
outputs are registered next to them, then selected by the (registered, delayed) bank number into a
third register.  The read port reads every cycle (no enable): the consumer tracks validity.

:meth:`read_port` and :meth:`write_port` behave like ``lib.memory.Memory``'s (synchronous read with
one cycle of latency and an enable, non-transparent; write with an enable), so code written for a
``Memory`` (rtl/board_top's host read ports) works unchanged; that read path still has the bank
multiplexer after the block RAMs.  Addresses are flat; bank b holds words b*bank_depth ...

``write_group=k`` registers each write port's address, data and enable once per group of k banks
(the write lands one cycle later): one register fanning out to every bank's data input was the
routed critical path of the full ECP5 design (the batch's write data to its block RAMs, 16.8 ns of
routing; docs/boards.md).  Each group's registers load only on a write into that group, so Yosys
cannot merge the copies back into one.

On an ECP5 (platform family ``ecp5``), with one pipelined read port, at most one write port, no
plain read port, words of at most 9 bits, banks of at most 2048 words and no initial contents, each
bank is a DP16KD instance (write on port A, read on port B) whose own output register
(``REGMODE_B = "OUTREG"``, reset with ``sync``) is the bank register.  Why: Yosys maps a
``lib.memory`` read port that is not transparent to a write port on the other block-RAM port by
*emulating* read-before-write: it delays every write by a cycle and adds soft bypass logic, a
registered "collision" flag (delayed write enable and a compare of the write address with the
combinational read address) that selects the delayed write data instead of the RAM's output in a LUT
before the bank register.  That flag's input was the routed critical path of the full design
(16.5 ns, ``core.trainer.inputs.bankNN.0.0_DOB0_TRELLIS_FF_Q_DI``).  The instance has none of it:
block RAM output register -> the bank multiplexer -> the selected register.  The one difference in
behaviour: a pipelined read of the word that port A writes in the same cycle (the write's landing
cycle: one cycle after ``en`` with ``write_group``) returns undefined data on the hardware instead of
the old word.  Forward passes never do that (they read the active batch bank, host writes go to the
idle one); a host read of the batch (rtl/zo_trainer's ``batch_rd_addr``) would, only if a host write
of the same word landed in the cycle its read is issued.  Everywhere else (simulation, cosimulation, other FPGAs) the plain Amaranth
version is built; ``tests/test_rtl_banked_memory.py`` checks the instance's wiring against a
behavioural model of the primitive (sim/models/ecp5_dp16kd.v) in Icarus.
"""
from __future__ import annotations

from amaranth import Array, Module, Signal
from amaranth.hdl import ClockSignal, Const, Elaboratable, Instance, ResetSignal
from amaranth.lib import memory

#: DP16KD geometry used by the ECP5 instance: 2048 words of 9 bits (address bits ADx3..ADx13)
DP16KD_DEPTH, DP16KD_WIDTH = 2048, 9


def uses_ecp5_bram(platform) -> bool:
    """True when elaborating for an ECP5 (eligible banks are DP16KD instances with the output register)."""
    return platform is not None and getattr(platform, "family", None) == "ecp5"


class _Port:
    """Signals of one port: ``addr``, ``data``, ``en`` (a read port's ``en`` starts high, like lib.memory's)."""

    def __init__(self, depth: int, shape, name: str, en_init: int) -> None:
        self.addr = Signal(range(max(2, depth)), name=f"{name}_addr")
        self.data = Signal(shape, name=f"{name}_data")
        self.en = Signal(init=en_init, name=f"{name}_en")


class BankedMemory(Elaboratable):
    """``depth`` words of ``shape`` in banks of ``bank_depth`` (a power of two) words; ``init`` in flat order."""

    LATENCY = 3     # pipelined read: address -> block RAM -> bank register -> selected register

    def __init__(self, *, shape, depth: int, bank_depth: int = 2048, init=(), write_group: int = 0) -> None:
        self._MustUse__silence = True    # no "never used" warning for a refused configuration
        if depth < 1:
            raise ValueError(f"BankedMemory depth must be >= 1, got {depth}")
        if bank_depth < 1 or bank_depth & (bank_depth - 1):
            raise ValueError(f"BankedMemory bank_depth must be a power of two, got {bank_depth}")
        if write_group < 0:
            raise ValueError(f"BankedMemory write_group must be >= 0 (0: unregistered writes), got {write_group}")
        self.write_group = write_group
        self.shape, self.depth = shape, depth
        self.bank_depth = min(bank_depth, 1 << max(0, (depth - 1).bit_length()))
        self.bank_bits = (self.bank_depth - 1).bit_length()
        self.n_banks = -(-depth // self.bank_depth)
        init = [int(v) for v in init]
        if len(init) > depth:
            raise ValueError(f"BankedMemory init has {len(init)} words, depth is {depth}")
        self._MustUse__silence = False
        bd = self.bank_depth
        self.banks = [memory.Memory(shape=shape, depth=min(bd, depth - b * bd), init=init[b * bd:(b + 1) * bd])
                      for b in range(self.n_banks)]
        self._reads: list[_Port] = []
        self._piped: list[_Port] = []
        self._writes: list[_Port] = []

    def read_port(self, *, domain: str = "sync", transparent_for=()) -> _Port:
        """Synchronous read, data one cycle after the address (while ``en``), like lib.memory's read port."""
        if domain != "sync" or tuple(transparent_for):
            raise ValueError("BankedMemory.read_port: only non-transparent reads in the sync domain")
        p = _Port(self.depth, self.shape, f"rd{len(self._reads)}", 1)
        self._reads.append(p)
        return p

    def pipelined_read_port(self) -> _Port:
        """Read every cycle: ``data`` is the word at the ``addr`` of LATENCY cycles earlier (from a register)."""
        p = _Port(self.depth, self.shape, f"prd{len(self._piped)}", 1)
        self._piped.append(p)
        return p

    def write_port(self) -> _Port:
        p = _Port(self.depth, self.shape, f"wr{len(self._writes)}", 0)
        self._writes.append(p)
        return p

    def _uses_dp16kd(self, platform) -> bool:
        """The ECP5 instance path (module doc): only the configuration the trainer's batch uses."""
        return (uses_ecp5_bram(platform) and len(self._piped) == 1 and not self._reads and len(self._writes) <= 1
                and len(Signal(self.shape)) <= DP16KD_WIDTH and self.bank_depth <= DP16KD_DEPTH
                and not any(any(int(v) for v in bank.init) for bank in self.banks))

    def elaborate(self, platform) -> Module:
        m = Module()
        bb, nb = self.bank_bits, self.n_banks
        dp16kd = self._uses_dp16kd(platform)

        def bank_of(addr):
            return addr[bb:] if nb > 1 else 0

        for b, bank in enumerate(self.banks):
            if dp16kd:
                bank._MustUse__silence = True    # replaced by a DP16KD instance: not elaborated
            else:
                m.submodules[f"bank{b}"] = bank
        bank_writes: list[list[tuple]] = [[] for _ in range(nb)]    # per bank: (addr, data, en) of each write port
        for i, w in enumerate(self._writes):
            g = self.write_group or nb
            for first in range(0, nb, g):
                group = range(first, min(first + g, nb))
                addr, data_, en = w.addr, w.data, w.en
                if self.write_group:        # this group's copy of the write, one cycle later
                    hit = w.en      # bounds only where they cut (a constant compare is a Verilator warning)
                    if group.start > 0:
                        hit = hit & (bank_of(w.addr) >= group.start)
                    if group.stop < nb:
                        hit = hit & (bank_of(w.addr) < group.stop)
                    addr = Signal.like(w.addr, name=f"wr{i}_g{first}_addr")
                    data_ = Signal.like(w.data, name=f"wr{i}_g{first}_data")
                    en = Signal(name=f"wr{i}_g{first}_en")
                    m.d.sync += en.eq(hit)
                    with m.If(hit):
                        m.d.sync += [addr.eq(w.addr), data_.eq(w.data)]
                for b in group:
                    bank_writes[b].append((addr[:bb], data_, en & (bank_of(addr) == b) if nb > 1 else en))
        if dp16kd:
            return self._elaborate_dp16kd(m, bank_writes, bank_of)
        for b, bank in enumerate(self.banks):
            for addr, data_, en in bank_writes[b]:
                bw = bank.write_port()
                m.d.comb += [bw.addr.eq(addr), bw.data.eq(data_), bw.en.eq(en)]
        for i, r in enumerate(self._reads):
            sel = Signal(range(max(2, nb)), name=f"rd{i}_bank")
            with m.If(r.en):
                m.d.sync += sel.eq(bank_of(r.addr))
            outs = []
            for bank in self.banks:
                br = bank.read_port(transparent_for=())
                m.d.comb += [br.addr.eq(r.addr[:bb]), br.en.eq(r.en)]
                outs.append(br.data)
            m.d.comb += r.data.eq(Array(outs)[sel] if nb > 1 else outs[0])
        for i, r in enumerate(self._piped):
            sel1 = Signal(range(max(2, nb)), name=f"prd{i}_bank1")
            sel2 = Signal.like(sel1, name=f"prd{i}_bank2")
            m.d.sync += [sel1.eq(bank_of(r.addr)), sel2.eq(sel1)]
            regs = []
            for b, bank in enumerate(self.banks):
                br = bank.read_port(transparent_for=())
                q = Signal(self.shape, name=f"prd{i}_q{b}")
                m.d.comb += br.addr.eq(r.addr[:bb])
                m.d.sync += q.eq(br.data)
                regs.append(q)
            m.d.sync += r.data.eq(Array(regs)[sel2] if nb > 1 else regs[0])
        return m

    def _elaborate_dp16kd(self, m: Module, bank_writes, bank_of) -> Module:
        """One DP16KD per bank, 2048 x 9 on both ports: port A writes, port B reads every cycle into
        its output register (the bank register ``prd0_q{b}`` of the generic version)."""
        r = self._piped[0]
        nb, bb = self.n_banks, self.bank_bits
        width = len(r.data)
        abits = (DP16KD_DEPTH - 1).bit_length()
        sel1 = Signal(range(max(2, nb)), name="prd0_bank1")
        sel2 = Signal.like(sel1, name="prd0_bank2")
        m.d.sync += [sel1.eq(bank_of(r.addr)), sel2.eq(sel1)]
        zero = Const(0, 1)
        rd_addr = Signal(abits, name="prd0_bank_addr")
        m.d.comb += rd_addr.eq(r.addr[:bb])
        regs = []
        for b in range(nb):
            q = Signal(DP16KD_WIDTH, name=f"prd0_q{b}")
            wa, wd, we = Signal(abits, name=f"bank{b}_wa"), Signal(DP16KD_WIDTH, name=f"bank{b}_wd"), \
                Signal(name=f"bank{b}_we")
            if bank_writes[b]:
                addr, data_, en = bank_writes[b][0]
                m.d.comb += [wa.eq(addr), wd.eq(data_.as_unsigned()), we.eq(en)]
            ports = {"i_CLKA": ClockSignal("sync"), "i_CEA": Const(1, 1), "i_OCEA": Const(1, 1), "i_WEA": we,
                     "i_RSTA": zero, "i_CLKB": ClockSignal("sync"), "i_CEB": Const(1, 1), "i_OCEB": Const(1, 1),
                     "i_WEB": zero, "i_RSTB": ResetSignal("sync")}
            for k in range(3):
                ports.update({f"i_CSA{k}": zero, f"i_CSB{k}": zero, f"i_ADA{k}": zero, f"i_ADB{k}": zero})
            for k in range(abits):
                ports.update({f"i_ADA{k + 3}": wa[k], f"i_ADB{k + 3}": rd_addr[k]})
            for k in range(18):
                ports[f"i_DIA{k}"] = wd[k] if k < DP16KD_WIDTH else zero
                ports[f"i_DIB{k}"] = zero
            for k in range(DP16KD_WIDTH):
                ports[f"o_DOB{k}"] = q[k]
            params = {"p_DATA_WIDTH_A": DP16KD_WIDTH, "p_DATA_WIDTH_B": DP16KD_WIDTH,
                      "p_REGMODE_A": "NOREG", "p_REGMODE_B": "OUTREG", "p_RESETMODE": "SYNC",
                      "p_ASYNC_RESET_RELEASE": "SYNC", "p_CSDECODE_A": "0b000", "p_CSDECODE_B": "0b000",
                      "p_WRITEMODE_A": "NORMAL", "p_WRITEMODE_B": "NORMAL", "p_GSR": "DISABLED"}
            m.submodules[f"bank{b}"] = Instance("DP16KD", **params, **ports)
            regs.append(q[:width])
        m.d.sync += r.data.eq(Array(regs)[sel2] if nb > 1 else regs[0])
        return m
