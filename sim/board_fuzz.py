"""Fuzz the integrated board (rtl/board_top.BoardTop: command processor + ZO trainer + TT engine).

    report = fuzz(small_profile(), n=10_000, seed=1)     # virtual board (cocotb + Verilator), stream PHY

sim/link_fuzz.py's cases (random bytes, flipped bits, truncated frames, wrong lengths, unknown
commands, out-of-range addresses, bad headers/escapes, over-long frames, read-only probes), built
for the board's own identify record so the out-of-range requests hit every region of the trainer,
plus two trainer categories (:class:`BoardFuzzer`):

* ``bad_config``: a well-formed CONFIGURE whose values the design cannot run (n_samples, queries
  or segments outside the design, a segment table that is not increasing from 0 inside the
  parameters, a code too wide for its trainer field, optimizer/kind/flag values other than 0/1),
  then RUN_STEPS or RUN_INFERENCE, then STATUS: the run must be refused (STATUS op error 2) and
  nothing may move;
* ``bad_run``: RUN_STEPS with K > 65,535, then STATUS: op error 1.

The board is first brought into a real state through the unchanged host driver (engine program,
seeded parameters, a batch, labels, a signRGE configuration and one forward pass that fills the
loss log and result registers).  Everything readable is snapshotted, and the Python reference board
(sim/link_model.LinkModel, with :func:`refusal_engine` standing in for the trainer's checks) is set
to that state.  The fuzz cases then go through the TCP socket in chunks, each closed by a STATUS
probe, and the board's reply bytes must equal the model's case by case (so every case is answered
with the right error, or dropped, and no hang).  Afterwards every readable region (params, batch,
labels, log) must equal the snapshot, the registers the model's, and a valid identify and the same
forward pass must still give the same answer (which also shows the write-only engine program
survived).
"""
from __future__ import annotations

import json
import struct
import time
from collections import Counter

import numpy as np

from ttzo.golden.zo_fixed import K_BITS, M_FRAC
from ttzo.host import protocol as P

from .link_fuzz import CATEGORIES, Fuzzer
from .link_model import LinkModel

BOARD_CATEGORIES = CATEGORIES + ("bad_config", "bad_run")


def config_problems(bp, regs: list[int]) -> list[str]:
    """Why the configuration registers `regs` cannot be run on design `bp` (empty: runnable).

    The reference of rtl/board_top's run check, written from the register map (docs/board.md) and
    golden's code widths rather than from the gateware.
    """
    from ttzo.rtl import board_top as T
    out = []
    c = regs

    def field(name: str, idx: int, lo: int, hi: int, signed: bool = False) -> None:
        v = c[idx]
        if signed and v >= 1 << 31:
            v -= 1 << 32
        if not lo <= v <= hi:
            out.append(f"{name}={v} outside {lo}..{hi}")

    field("optimizer", T.CFG_OPTIMIZER, 0, 1)
    field("kind", T.CFG_KIND, 0, 1)
    field("cge_all", T.CFG_CGE_ALL, 0, 1)
    field("n_queries", T.CFG_N_QUERIES, 0, bp.n_max)
    field("n_samples", T.CFG_N_SAMPLES, 1, bp.max_samples)
    field("n_segments", T.CFG_N_SEGMENTS, 1, bp.max_segments)
    for name, idx, fmt in (("mu_w", T.CFG_MU_W, bp.cfg.weight), ("mu_b", T.CFG_MU_B, bp.cfg.bias),
                           ("alpha_w", T.CFG_ALPHA_W, bp.cfg.weight), ("alpha_b", T.CFG_ALPHA_B, bp.cfg.bias)):
        field(name, idx, -(1 << (fmt.bits - 1)), (1 << (fmt.bits - 1)) - 1, signed=True)
    field("m_code", T.CFG_M_CODE, 0, 1 << M_FRAC)
    field("k_code_w", T.CFG_K_CODE_W, 0, (1 << K_BITS) - 1)
    field("k_code_b", T.CFG_K_CODE_B, 0, (1 << K_BITS) - 1)
    field("k_shift_w", T.CFG_K_SHIFT_W, 0, 63)
    field("k_shift_b", T.CFG_K_SHIFT_B, 0, 63)
    n_seg = c[T.CFG_N_SEGMENTS]
    if 1 <= n_seg <= bp.max_segments:
        starts = [c[T.CFG_SEGMENTS + k] & 0x7FFFFFFF for k in range(n_seg)]
        if starts[0] != 0:
            out.append(f"segment 0 starts at {starts[0]}, not 0")
        for k in range(1, n_seg):
            if starts[k] <= starts[k - 1]:
                out.append(f"segment {k} starts at {starts[k]}, not after segment {k - 1} ({starts[k - 1]})")
        if starts[-1] >= bp.net.n_params:
            out.append(f"segment {n_seg - 1} starts at {starts[-1]}, past the {bp.net.n_params} parameters")
    if bp.batch_banks > 1:     # double-buffered batch: the bank register selects bank 0 or 1
        field("batch_bank", bp.bank_config, 0, 1)
    if bp.pinn:     # PINN designs: the loss block's sizes (docs/board.md, "PINN designs")
        for k, (name, hi) in enumerate(zip(T.PINN_CFG_NAMES, (bp.pinn.max_nodes, bp.pinn.max_points,
                                                                bp.pinn.max_dim))):
            field(name, bp.pinn_config0 + k, 1, hi)
    return out


def runnable_in_rtl(bp, files: list[list[int]]) -> list[bool]:
    """rtl/board_top.runnable evaluated on register files in Amaranth's simulator (to compare with
    `config_problems`, its statement in Python)."""
    from amaranth.hdl import Module, Signal
    from amaranth.lib import data
    from amaranth.sim import Simulator

    from ttzo.rtl.board_top import runnable
    c = Signal(data.ArrayLayout(32, bp.n_config))
    ok = Signal()
    m = Module()
    m.d.comb += ok.eq(runnable(c, bp))
    out: list[bool] = []

    async def bench(ctx):
        for regs in files:
            for k, v in enumerate(regs):
                ctx.set(c[k], v)
            out.append(bool(ctx.get(ok)))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    return out


def refusal_engine(bp):
    """LinkModel engine hook for a fuzz run: the board refuses every operation it is asked for.

    K > 65,535 -> op error 1, an unrunnable configuration -> op error 2 (rtl/board_top ERR_*), both
    without starting the trainer (0 cycles; the RES_OPS counter counts the refusal).  A request that
    would really run is a bug of the fuzz generator, not of the board.
    """
    from ttzo.rtl import board_top as T

    def engine(model: LinkModel, op: int, arg: int) -> int:
        if op == P.Op.STEPS and arg >> 16:
            err = T.ERR_ARG
        elif config_problems(bp, model.config):
            err = T.ERR_CONFIG
        else:
            raise AssertionError(f"fuzz generator sent a runnable operation {op} (arg {arg})")
        model.op_cycles = 0
        model.results[T.RES_OPS] = (model.results[T.RES_OPS] + 1) & 0xFFFFFFFF
        return err

    return engine


class BoardFuzzer(Fuzzer):
    """link_fuzz.Fuzzer plus the trainer's bad configurations and refused RUN_STEPS arguments.

    `good` is the runnable register file the board was configured with before the fuzz; the
    fuzzer keeps a shadow of the register file (only its own bad_config frames are accepted) and
    checks that every configuration it leaves behind is unrunnable.
    """

    categories = BOARD_CATEGORIES

    def __init__(self, ident: P.Identify, bp, good: list[int], seed: int = 0) -> None:
        super().__init__(ident, seed)
        if config_problems(bp, good):
            raise ValueError(f"the starting configuration is not runnable: {config_problems(bp, good)}")
        self.bp, self.good, self.shadow = bp, list(good), list(good)

    def extra_case(self, cat: str) -> bytes:
        r = self.rng
        if cat == "bad_run":
            k = r.choice([1 << 16, (1 << 16) + r.randrange(1 << 16), r.randrange(1 << 16, 1 << 32), 0xFFFFFFFF])
            run = P.Frame(P.Cmd.RUN_STEPS, self._seq(), P.RUN_REQ.pack(k)).encode()
            return run + P.Frame(P.Cmd.STATUS, self._seq()).encode()
        if cat != "bad_config":
            return super().extra_case(cat)
        while True:
            first, vals = self._bad_registers()
            after = list(self.shadow)
            after[first:first + len(vals)] = vals
            if config_problems(self.bp, after):
                break
        self.shadow = after
        conf = P.Frame(P.Cmd.CONFIGURE, self._seq(), struct.pack(f"<H{len(vals)}I", first, *vals)).encode()
        if r.random() < 0.5:
            run = P.Frame(P.Cmd.RUN_STEPS, self._seq(), P.RUN_REQ.pack(r.randrange(0, 4))).encode()
        else:
            run = P.Frame(P.Cmd.RUN_INFERENCE, self._seq(), P.RUN_REQ.pack(0)).encode()
        return conf + run + P.Frame(P.Cmd.STATUS, self._seq()).encode()

    def _bad_registers(self) -> tuple[int, list[int]]:
        """(first register, values): the good file with one thing wrong, whole or just the changed part."""
        from ttzo.rtl import board_top as T
        r, bp = self.rng, self.bp
        regs = list(self.good)
        n_seg = self.good[T.CFG_N_SEGMENTS]
        seg = T.CFG_SEGMENTS
        big = r.randrange(1 << 16, 1 << 32)
        kind = r.randrange(9)
        if kind == 0:
            regs[T.CFG_N_SAMPLES] = r.choice([0, bp.max_samples + 1, big])
        elif kind == 1:
            regs[T.CFG_N_QUERIES] = r.choice([bp.n_max + 1, big])
        elif kind == 2:
            regs[T.CFG_N_SEGMENTS] = r.choice([0, bp.max_segments + 1, big])
        elif kind == 3:
            regs[r.choice([T.CFG_OPTIMIZER, T.CFG_KIND, T.CFG_CGE_ALL])] = r.randrange(2, 1 << 32)
        elif kind == 4:                                   # a code too wide for its trainer field
            idx, lim = r.choice([(T.CFG_MU_W, bp.cfg.weight.bits - 1), (T.CFG_MU_B, bp.cfg.bias.bits - 1),
                                 (T.CFG_ALPHA_W, bp.cfg.weight.bits - 1), (T.CFG_ALPHA_B, bp.cfg.bias.bits - 1),
                                 (T.CFG_M_CODE, M_FRAC), (T.CFG_K_CODE_W, K_BITS), (T.CFG_K_CODE_B, K_BITS),
                                 (T.CFG_K_SHIFT_W, 6), (T.CFG_K_SHIFT_B, 6)])
            v = r.choice([1 << lim, (1 << lim) + 1, r.randrange(1 << lim, 1 << 31)])   # (2^M_FRAC is valid:
            #                                                                  the loop below draws again)
            regs[idx] = (-v - 1) & 0xFFFFFFFF if (idx in (T.CFG_MU_W, T.CFG_MU_B, T.CFG_ALPHA_W, T.CFG_ALPHA_B)
                                                   and r.random() < 0.5) else v
        elif kind == 5:                                   # first segment not at 0
            regs[seg] = (regs[seg] & 0x80000000) | r.randrange(1, bp.net.n_params)
        elif kind == 6:                                   # two segments out of order (equal or decreasing)
            k = r.randrange(1, n_seg)
            prev = regs[seg + k - 1] & 0x7FFFFFFF
            regs[seg + k] = (regs[seg + k] & 0x80000000) | r.randrange(0, prev + 1)
        elif kind == 7:                                   # the last segment starts at or past the end
            start = r.choice([bp.net.n_params, r.randrange(bp.net.n_params, 1 << 31),
                              (regs[seg + n_seg - 1] & 0x7FFFFFFF) + (1 << 16)])   # aliases a valid start
            regs[seg + n_seg - 1] = (regs[seg + n_seg - 1] & 0x80000000) | start
        else:                                             # a start that aliases a valid one in the low 16 bits
            k = r.randrange(n_seg)
            regs[seg + k] = (regs[seg + k] & 0x80000000) | ((regs[seg + k] & 0xFFFF) + (r.randrange(1, 1 << 15) << 16))
        changed = [i for i in range(len(regs)) if regs[i] != self.good[i]]
        if r.random() < 0.5 or not changed:
            return 0, regs
        return changed[0], regs[changed[0]:changed[-1] + 1]


def _frames(reply: bytes) -> list[P.Frame]:
    return [P.decode_body(P.slip_unescape(f)) for f in P.FrameSplitter().feed(reply)]


def _snapshot(board, ident: P.Identify) -> dict[int, bytes]:
    """Every readable region, read through the driver."""
    return {r.id: board.read_region(r.id) for r in ident.regions if r.flags & P.REGION_FLAG_READABLE}


def _model_at(board, ident: P.Identify, bp, regions: dict[int, bytes]) -> LinkModel:
    """A reference board in the state the real one is in now (the next request must be the fuzz)."""
    model = LinkModel(ident, engine=refusal_engine(bp))
    for rid, data in regions.items():
        model.mem[rid][:] = data
    model.config = board.read_config()
    model.results = board.read_results()
    st = board.status()                              # last request before the fuzz: the model continues from it
    model.rx_ok, model.rx_bad = st.rx_ok, st.rx_bad
    model.last_op, model.op_error, model.op_cycles = st.last_op, st.op_error, st.op_cycles
    model.last = (board._seq, int(P.Cmd.STATUS), int(P.Status.OK))
    return model


def _receive(t, want: int, timeout: float) -> bytes:
    """Read until `want` bytes arrived or nothing came for `timeout` seconds."""
    got = bytearray()
    quiet_until = time.monotonic() + timeout
    while len(got) < want:
        data = t.read(65536, 0.2)
        if data:
            got += data
            quiet_until = time.monotonic() + timeout
        elif time.monotonic() > quiet_until:
            break
    return bytes(got)


def _first_difference(expected: list[bytes], got: bytes) -> int:
    """Index of the first line whose expected reply bytes are not what `got` holds at that place."""
    pos = 0
    for i, e in enumerate(expected):
        if got[pos:pos + len(e)] != e:
            return i
        pos += len(e)
    return len(expected)


def _setup(board, bp, seed: int):
    """A real board state through the host driver: program, parameters, batch, labels, config, one inference."""
    from ttzo.host.backend_board import BoardSession
    from ttzo.sim.tt_cosim import seeded_params
    s = BoardSession(board, bp)
    s.load_program()
    theta = bp.net.flatten(seeded_params(bp.net, s.cfg, seed)).astype(np.int64)
    s.load_params(theta)
    rng = np.random.default_rng(seed)
    b = bp.max_samples
    x = rng.integers(0, 256, (b, bp.net.in_features))
    y = rng.integers(0, bp.net.out_features, b)
    s.load_batch(x, y)
    regs = s.configure_signrge(seed=seed, step0=0, n_samples=b, queries=min(2, bp.n_max), mu=0.1, alpha=0.01)
    return s, regs, s.run_inference()


def fuzz(bp, n: int = 10_000, seed: int = 1, chunk: int = 50, timeout: float = 60.0, phy: str = "stream",
         port: int = 0) -> dict:
    """Run the fuzz campaign described in the module docstring on a virtual BoardTop(bp, phy); a JSON-able report.

    Stops at the first case whose reply differs from the reference (``first_mismatch``) or that
    gets no complete reply within `timeout` seconds of silence (``hang``).
    """
    from ttzo.host.board import Board
    from ttzo.sim.virtual_board_top import start
    t0 = time.monotonic()
    port, stop = start(bp, port=port, phy=phy)
    rep: dict = {"design": bp.name, "phy": phy, "cases": n, "seed": seed}
    try:
        with Board.open(f"socket://127.0.0.1:{port}", timeout=timeout) as b:
            ident = b.info
            s, regs, inf0 = _setup(b, bp, seed)
            before = _snapshot(b, ident)
            model = _model_at(b, ident, bp, before)
            t_setup = time.monotonic()
            fz = BoardFuzzer(ident, bp, regs, seed)
            cases = list(fz.cases(n))
            cats = Counter(c for c, _ in cases)
            answered, statuses, op_errors = Counter(), Counter(), Counter()
            done, hang, mismatch = 0, None, None
            for i0 in range(0, n, chunk):
                part = cases[i0:i0 + chunk]
                probe = P.Frame(P.Cmd.STATUS, fz._seq()).encode()       # closes the chunk: always answered
                lines = [line for _, line in part] + [probe]
                expected = [model.feed(line) for line in lines]
                b.t.write(b"".join(lines))
                want = sum(len(e) for e in expected)
                got = _receive(b.t, want, timeout)
                if got != b"".join(expected):
                    k = _first_difference(expected, got)
                    where = i0 + k
                    info = {"case": where, "category": part[k][0] if k < len(part) else "sync_probe",
                            "line": lines[k].hex(), "expected": expected[k].hex(),
                            "got": got[sum(len(e) for e in expected[:k]):][:len(expected[k]) + 64].hex()}
                    if len(got) < want and got == b"".join(expected)[:len(got)]:
                        hang = info
                    else:
                        mismatch = info
                    break
                for (cat, _), e in zip(part, expected):
                    frames = _frames(e)
                    answered[cat] += bool(frames)
                    statuses.update(P.status_name(f.status) for f in frames)
                    if cat in ("bad_config", "bad_run"):
                        op_errors.update(f"{cat}: op error {P.BoardStatus.decode(f.payload).op_error}" for f in frames
                                         if f.command == P.Cmd.STATUS | P.REPLY_BIT and f.status == P.Status.OK)
                done += len(part)
            t_fuzz = time.monotonic()
            rep.update({"cases_checked": done, "categories": dict(sorted(cats.items())),
                        "answered": dict(sorted(answered.items())),
                        "dropped": {c: cats_done - answered[c] for c, cats_done in
                                    sorted(Counter(c for c, _ in cases[:done]).items())},
                        "reply_statuses": dict(sorted(statuses.items())), "op_errors": dict(sorted(op_errors.items())),
                        "hang": hang, "first_mismatch": mismatch})
            if hang is None and mismatch is None:
                rep["unexpected_bytes"] = len(_receive(b.t, 1, 2.0))     # nothing after the last probe's reply
                after = _snapshot(b, ident)
                rep["regions_unchanged"] = {next(r.name for r in ident.regions if r.id == rid): after[rid] == data
                                            for rid, data in before.items()}
                rep["config_as_model"] = b.read_config() == model.config
                rep["results_as_model"] = b.read_results() == model.results
                rep["identify_ok"] = b.identify() == ident
                b.configure(0, regs)                          # the same forward pass still gives the same answer
                inf1 = s.run_inference()
                same = ("steps", "forwards", "loss0", "correct", "changed", "cycles")
                rep["inference_same"] = all(getattr(inf0, k) == getattr(inf1, k) for k in same)
                rep["inference"] = {"loss0": inf1.loss0, "correct": inf1.correct, "cycles": inf1.cycles}
                rep["regions_unchanged_after_inference"] = _snapshot(b, ident) == before
            rep["retransmits"] = b.stats.retransmits
            rep["seconds"] = {"setup": round(t_setup - t0, 1), "fuzz": round(t_fuzz - t_setup, 1),
                              "total": round(time.monotonic() - t0, 1)}
    finally:
        stop()
    return rep


def passed(rep: dict) -> bool:
    """Every case answered as the reference says, nothing hung, everything read back unchanged."""
    return (rep.get("cases_checked") == rep["cases"] and rep.get("hang") is None and rep.get("first_mismatch") is None
            and rep.get("unexpected_bytes") == 0
            and all(rep.get("regions_unchanged", {None: False}).values()) and rep.get("config_as_model", False)
            and rep.get("results_as_model", False) and rep.get("identify_ok", False)
            and rep.get("inference_same", False) and rep.get("regions_unchanged_after_inference", False))


def main(argv: list[str] | None = None) -> int:
    """`python -m ttzo.sim.board_fuzz --cases N --seed S`: fuzz the virtual BoardTop, print the JSON report."""
    import argparse

    from ttzo.rtl.board_top import profile
    ap = argparse.ArgumentParser(prog="python -m ttzo.sim.board_fuzz", description=main.__doc__)
    ap.add_argument("--cases", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--design", default="ttzo-small", help="board profile (ttzo-small, ttzo-mnist-rR)")
    ap.add_argument("--phy", choices=["stream", "uart"], default="stream")
    a = ap.parse_args(argv)
    rep = fuzz(profile(a.design), n=a.cases, seed=a.seed, phy=a.phy)
    print(json.dumps(rep, indent=2))
    return 0 if passed(rep) else 1


if __name__ == "__main__":
    raise SystemExit(main())
