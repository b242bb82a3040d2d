"""`ttzo bench golden`: sample-forwards/s of our TT forward vs the authors' einsum sweep, CGE step time."""
from __future__ import annotations

import argparse
import json

from ttzo.host.cli import group


def register(sub: argparse._SubParsersAction) -> None:
    g = group(sub, "bench", help="measure throughput (golden model, link)")
    p = g.add_parser("golden", help="golden-model throughput: batched TT forward vs einsum sweep, CGE step",
                     description="Measure in one process the sample-forwards per second of the batched TT forward "
                                 "(fixed and float) against a plain einsum left-to-right sweep over the same cores, "
                                 "and the time of one fixed-point CGE step with and without partial reuse.")
    p.add_argument("--rank", type=int, default=6)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--queries", type=int, default=11, help="parameter sets per batched call (N+1 = 11)")
    p.add_argument("--min-time", type=float, default=3.0, help="seconds per throughput measurement")
    p.add_argument("--cge-fraction", type=float, default=0.05)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ttzo.golden.bench import run_bench
    r = run_bench(args.rank, args.batch, args.queries, args.min_time, args.cge_fraction)
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    print(f"TT-MLP r={r['rank']}: {r['params']} parameters, batch {r['batch']}, {r['queries']} parameter sets")
    for k in ("ours_fixed", "ours_float", "einsum_sweep", "einsum_sweep_opt"):
        print(f"  {k:18s} {r[k]:10.0f} sample-forwards per CPU second")
    print(f"  ratio fixed/einsum {r['ratio_fixed_vs_einsum']:.1f}x, float/einsum {r['ratio_float_vs_einsum']:.1f}x, "
          f"fixed/einsum(optimize) {r['ratio_fixed_vs_einsum_opt']:.1f}x")
    print(f"  CGE step (all {r['params']} coordinates): {r['cge_step_seconds_all']:.2f} s with reuse, "
          f"~{r['cge_plain_seconds_all_estimated']:.1f} s plain ({r['cge_reuse_speedup']:.1f}x); "
          f"fraction {r['cge_fraction']}: {r['cge_step_seconds_fraction']:.2f} s")
    return 0
