"""`ttzo sim pinn-loss`: the HJB residual loss on chip (rtl/pinn_loss.py + TT engine) against golden."""
from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    from ttzo.host.cli import group
    g = group(sub, "sim", help="co-simulate RTL against the golden model (cocotb: Verilator or Icarus)")
    p = g.add_parser("pinn-loss", help="run the sparse-grid Stein HJB loss on the RTL, compare with golden",
                     description="Build (or reuse) the PINN loss block around the TT engine, load a level-K "
                                 "sparse-grid node table and P collocation points, run it in cocotb and report "
                                 "cycles per collocation point, nodes, network evaluations and whether every "
                                 "gradient, Laplacian, residual and loss code equals golden/stein_fixed.py.  "
                                 "D = 21 runs the paper's HJB-20 network (21 -> 768 -> 768 -> 1); other D a tiny "
                                 "D -> 8 -> 4 -> 1 sine TT net.  Exit code 1 when anything differs.")
    p.add_argument("--dim", type=int, required=True, help="inputs D (x_1..x_{D-1}, t); 21 = HJB-20")
    p.add_argument("--level", type=int, default=3, help="sparse-grid level K; default 3")
    p.add_argument("--points", type=int, default=2, help="collocation points; default 2")
    p.add_argument("--sine", choices=["interp", "table"], default="interp",
                   help="engine sine: interpolated table (default) or plain table")
    p.add_argument("--sim", choices=["verilator", "icarus"], default="verilator", help="simulator")
    p.add_argument("--seed", type=int, default=0, help="seed of parameters and points; default 0")
    p.add_argument("--golden-only", action="store_true",
                   help="skip the RTL: golden's integer loss against float64 only (accuracy of the sine choice)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import time
    from dataclasses import replace

    import numpy as np

    from ttzo.golden.nodetable import sparse_grid_table
    from ttzo.golden.stein_fixed import float_reference
    from ttzo.golden.sparse_grid import smolyak_gauss_hermite
    from ttzo.sim import pinn_cosim as pc
    if args.dim < 2:
        raise ValueError(f"--dim {args.dim}: needs at least one space coordinate and t (>= 2)")
    if args.level < 1 or args.points < 1:
        raise ValueError("--level and --points must be >= 1")
    nodes = smolyak_gauss_hermite(args.dim, args.level).count
    if args.dim == 21:
        spec = replace(pc.HJB_SPEC, max_points=max(pc.HJB_SPEC.max_points, args.points))
        spec = replace(spec, max_nodes=max(spec.max_nodes, nodes))
        case = pc.hjb_case(args.points, args.seed, args.level, spec)
    else:
        spec = replace(pc.SMALL_SPEC, max_dim=args.dim, max_nodes=nodes, max_points=args.points)
        case = pc.small_case(args.dim, args.level, args.points, args.seed, spec)
    case.sine = args.sine
    table = sparse_grid_table(args.dim, args.level, pc.SIGMA, lap_dims=args.dim - 1)
    ref = float_reference(case.net, case.net.dequantize(case.codes, spec.cfg), spec.cfg.input.to_float(case.x), table)
    if args.golden_only:
        from ttzo.golden.stein_fixed import SteinFixedHJB
        f = SteinFixedHJB(case.net, spec.cfg, spec.fmts, args.sine).evaluate(case.codes, case.x, case.table).floats()
        out = {"dim": args.dim, "level": args.level, "net": case.net.name, "sine": args.sine,
               "sine_bits": spec.cfg.sine_bits, "nodes": nodes, "points": args.points,
               "loss_mean": f["loss"], "loss_mean_float64": ref["loss"],
               "max_abs_grad_error_vs_float64": float(np.abs(f["grad"] - ref["grad"]).max()),
               "max_abs_lap_error_vs_float64": float(np.abs(f["lap"] - ref["lap"]).max()),
               "max_abs_residual_error_vs_float64": float(np.abs(f["res"] - ref["res"]).max())}
        print(json.dumps(out, indent=2) if args.json else out)
        return 0
    t0 = time.time()
    (r,) = pc.cosimulate_pinn([case], spec, sim=args.sim)
    wall = time.time() - t0
    f = r.want.floats()
    out = {"dim": args.dim, "level": args.level, "net": case.net.name, "sim": args.sim, "sine": args.sine,
           "lanes": spec.engine.lanes, "drains": spec.engine.drains, "nodes": r.nodes, "points": r.points,
           "evaluations_per_point": r.nodes, "evaluations_eq13_per_point": 2 * r.nodes - 1,
           "cycles": r.cycles, "cycles_per_point": r.cycles_per_point,
           "cycles_per_evaluation": r.cycles_per_point / r.nodes,
           "bit_exact": r.bit_exact, "mismatches": r.mismatches,
           "loss_mean": f["loss"], "loss_mean_float64": ref["loss"],
           "max_abs_grad_error_vs_float64": float(np.abs(f["grad"] - ref["grad"]).max()),
           "max_abs_lap_error_vs_float64": float(np.abs(f["lap"] - ref["lap"]).max()),
           "max_abs_residual_error_vs_float64": float(np.abs(f["res"] - ref["res"]).max()),
           "wall_seconds": round(wall, 1)}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"D={args.dim} level {args.level} ({r.nodes} nodes), {r.points} points on {args.sim}: "
              f"{out['cycles_per_point']:.0f} cycles/point ({out['cycles_per_evaluation']:.0f}/evaluation), "
              f"bit exact: {r.bit_exact}")
    return 0 if r.bit_exact else 1
