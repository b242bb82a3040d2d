"""`ttzo sim tt-engine`: co-simulate the TT engine RTL against golden and report cycles and lane use."""
from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    from ttzo.host.cli import group
    g = group(sub, "sim", help="co-simulate RTL against the golden model (cocotb: Verilator or Icarus)")
    p = g.add_parser("tt-engine", help="run a TT network on the engine RTL, compare with golden bit for bit",
                     description="Build (or reuse) the TT engine with P lanes, run a network on a batch of "
                                 "samples in cocotb and report cycles per sample, MACs per sample, lane "
                                 "utilisation = MACs / (cycles x P) and whether every output equals golden's "
                                 "fixed-point forward.  Exit code 1 when any output differs.")
    p.add_argument("--net", choices=["mnist", "hjb", "random"], default="mnist",
                   help="mnist: the paper's TT-MLP on real MNIST test images (seeded init); hjb: the HJB "
                        "TT net (golden/hjb.py, PINN formats) on random points; random: random nets/formats")
    p.add_argument("--rank", type=int, default=6, help="TT rank of the MNIST net; default 6")
    p.add_argument("--lanes", type=int, default=4, help="MAC lanes P (power of two); default 4")
    p.add_argument("--drains", type=int, default=None, choices=[1, 2],
                   help="results written per cycle (2 needs two write ports per buffer); default 2 when P >= 2")
    p.add_argument("--sim", choices=["verilator", "icarus"], default="verilator", help="simulator")
    p.add_argument("--samples", type=int, default=None,
                   help="batch size (default: 100 on Verilator, 5 on Icarus; random: cases)")
    p.add_argument("--seed", type=int, default=0, help="seed of parameters and inputs; default 0")
    p.add_argument("--data", default=None, help="MNIST directory (default: golden.mnist's search path)")
    p.add_argument("--waves", action="store_true", help="write waveforms (VCD/FST) in the run directory")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import time

    from ttzo.rtl.descriptors import EngineParams, compile_network, step_cycles_model
    from ttzo.sim import tt_cosim
    if args.lanes < 1 or args.lanes & (args.lanes - 1):
        raise ValueError(f"--lanes {args.lanes}: must be a power of two")
    n = args.samples if args.samples is not None else (100 if args.sim == "verilator" else 5)
    if n < 1:
        raise ValueError("--samples must be >= 1")
    drains = args.drains if args.drains is not None else (2 if args.lanes >= 2 else 1)
    params = EngineParams(lanes=args.lanes, drains=drains)
    if args.net == "mnist":
        cases = [tt_cosim.mnist_case(args.rank, n, args.seed, args.data)]
    elif args.net == "hjb":
        cases = [tt_cosim.hjb_case(n, args.seed)]
    else:
        from ttzo.sim.random_nets import random_case
        cases = [random_case(args.seed + i, params) for i in range(n)]
    t0 = time.time()
    results = tt_cosim.cosimulate(cases, params, sim=args.sim, waves=args.waves)
    wall = time.time() - t0
    cycles = sum(r.cycles for r in results)
    samples = sum(r.batch for r in results)
    macs = sum(r.macs_per_sample * r.batch for r in results)
    ideal = sum(step_cycles_model(compile_network(c.net, c.codes, c.cfg, params)) * len(c.x) for c in cases)
    out = {
        "net": args.net if args.net != "mnist" else f"mnist-r{args.rank}",
        "sim": args.sim, "lanes": args.lanes, "drains": drains, "samples": samples,
        "cycles_per_sample": cycles / samples,
        "macs_per_sample": macs / samples,
        "lane_utilisation": macs / (cycles * args.lanes),
        "datapath_bound_utilisation": macs / (ideal * args.lanes),
        "bit_exact": all(r.bit_exact for r in results),
        "mismatches": sum(r.mismatches for r in results),
        "outputs": sum(r.outputs for r in results),
        "wall_seconds": round(wall, 1),
    }
    if args.waves:
        out["waves_dir"] = str(results[0].run_dir)
    if args.net == "random":
        out["cases"] = [r.to_dict() for r in results]
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"{out['net']} on {args.sim}, P={args.lanes}, {samples} samples: "
              f"{out['cycles_per_sample']:.0f} cycles/sample, {out['macs_per_sample']:.0f} MACs/sample, "
              f"lane utilisation {100 * out['lane_utilisation']:.1f} %, "
              f"bit exact: {out['bit_exact']} ({out['mismatches']} of {out['outputs']} outputs differ)")
    return 0 if out["bit_exact"] else 1
