"""`ttzo build`: Verilog, bitstream (iCE40/ECP5 via YoWASP), resource/Fmax report and derived performance."""
from __future__ import annotations

import argparse
import json
import shlex
import sys


def register(sub: argparse._SubParsersAction) -> None:
    from ttzo.boards.profiles import PROFILES
    from ttzo.boards.top import CORES
    boards = ", ".join(f"{n} ({p.title}, P={p.lanes}, {p.clock_hz / 1e6:g} MHz)" for n, p in PROFILES.items())
    p = sub.add_parser("build", help="build a board: Verilog, bitstream, resource and Fmax report",
                       description="Elaborate the board top, export Verilog and constraints, and for iCE40/ECP5 "
                                   "synthesise, place and route with the YoWASP tools (7-series: Yosys resource "
                                   f"estimate). Boards: {boards}. Writes report.json and report.md into --out.")
    p.add_argument("--board", required=True, help="board name: " + ", ".join(PROFILES))
    p.add_argument("--lanes", type=int, default=None, help="MAC lanes P (default: the board profile's)")
    p.add_argument("--clock", type=float, default=None, metavar="MHZ",
                   help="sync clock in MHz (PLL output; default: the board profile's). Timing is checked "
                        "against it and the UART divisor follows it")
    p.add_argument("--out", default=None, help="output folder (default: build/BOARD)")
    p.add_argument("--core", default=None, choices=sorted(CORES),
                   help="registered core (default: the board's, 'full' = the training design where it fits)")
    p.add_argument("--rank", type=int, default=None,
                   help="MNIST TT rank the memories are sized for (default: the largest that fits the board)")
    p.add_argument("--verilog-only", action="store_true", help="stop after Verilog + constraints")
    p.add_argument("--utilisation", type=float, default=None,
                   help="measured lane utilisation for the cycle model (default: 0.9 assumed)")
    p.add_argument("--no-golden", action="store_true", help="skip timing the golden model on this CPU")
    p.add_argument("--golden-steps", type=int, default=3, help="golden signRGE steps to time (default 3)")
    p.add_argument("--seed", type=_seeds, default=None, metavar="N[,N...]",
                   help="nextpnr seeds, tried in order until routing converges (default: the board "
                        "profile's, e.g. 5,4,1,2,3 on ulx3s-85f)")
    p.add_argument("--no-router-watch", action="store_true",
                   help="let nextpnr's router run until it finishes, even when it stops converging")
    p.add_argument("--router2-heatmap", action="store_true",
                   help="nextpnr also writes router2's congestion CSVs every routing iteration into "
                        "OUT/router2-heatmap/ (four files per iteration); the report then has congestion by block")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.set_defaults(func=run)


def _seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(t) for t in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seed {text!r}: expected integers separated by commas, e.g. 1,2,3")
    if any(s < 0 for s in seeds):
        raise argparse.ArgumentTypeError(f"--seed {text!r}: seeds must be >= 0")
    return seeds


def run(args: argparse.Namespace) -> int:
    from ttzo.boards.build import build
    from ttzo.boards.perf import golden_step_seconds
    from ttzo.boards.report import make_report, markdown, write_report

    from ttzo.boards.build import DoesNotFit, sigterm_as_interrupt
    command = "ttzo " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["build"] else None
    try:
        with sigterm_as_interrupt():      # a killed build stops its Yosys/nextpnr too
            result = build(args.board, args.out, lanes=args.lanes, rank=args.rank, core=args.core,
                           verilog_only=args.verilog_only, clock_mhz=args.clock, seeds=args.seed,
                           watch_router=not args.no_router_watch, router2_heatmap=args.router2_heatmap)
    except KeyboardInterrupt:
        print("ttzo build: interrupted; the running tool was stopped", file=sys.stderr)
        return 130
    except DoesNotFit as exc:            # report what synthesis needs against what the device has
        rep = make_report(exc.result, None, command=command)
        rep["fits"] = False
        rep["overflow"] = {k: {"used": u, "available": a} for k, (u, a) in exc.over.items()}
        rep["timing"] = {"target_mhz": exc.result.profile.clock_hz / 1e6, "achieved_mhz": None, "met": False,
                         "note": "not placed: the design does not fit the device"}
        write_report(rep, exc.result.out)
        if args.json:
            print(json.dumps(rep, indent=2, default=str))
        print(f"ttzo build: error: {exc}", file=sys.stderr)
        return 1
    except (RuntimeError, ValueError) as exc:
        print(f"ttzo build: error: {exc}", file=sys.stderr)
        return 1
    golden = None
    if not (args.no_golden or args.verilog_only):
        golden = golden_step_seconds(6, steps=max(1, args.golden_steps), batch=result.profile.batch,
                                     queries=result.profile.queries)
    rep = make_report(result, golden, utilisation=args.utilisation, command=command)
    js, md = write_report(rep, result.out)
    if args.json:
        print(json.dumps(rep, indent=2, default=str))
    else:
        print(markdown(rep))
        print(f"\nwritten: {js} {md}")
    met = rep["timing"].get("met")
    return 0 if met in (True, None) else 1
