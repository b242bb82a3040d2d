"""`ttzo sparse-grid`: a Smolyak Gauss-Hermite grid's node count, weight sum and moment error; node tables."""
from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sparse-grid", help="sparse Gauss-Hermite grid facts; export a node table",
                       description="Build the level-K Smolyak sparse Gauss-Hermite rule for N(0, I_D) and print "
                                   "its node count, weight sum and largest moment error over all monomials up to "
                                   "degree 2K-1. With --table FILE also write the node table (nodes, weights, "
                                   "Stein factors for sigma) that the host streams to the board.")
    p.add_argument("--dim", type=int, required=True, help="dimension D (21 for the HJB's (x, t))")
    p.add_argument("--level", type=int, required=True, help="level K (3: 2D^2 + 2D + 1 nodes)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--table", help="write the node table to this file")
    p.add_argument("--sigma", type=float, default=0.1, help="smoothing radius of the table (default 0.1)")
    p.add_argument("--lap-dims", type=int, default=None,
                   help="Laplacian over the first N coordinates (HJB: 20); default all")
    p.add_argument("--fixed", action="store_true", help="write int32 fixed-point codes instead of float64")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ttzo.golden import nodetable
    from ttzo.golden.sparse_grid import summary
    if args.dim < 1 or args.level < 1:
        raise ValueError(f"--dim and --level must be >= 1 (got {args.dim}, {args.level})")
    if args.dim > 64 or (args.level > 3 and args.dim > 21) or args.level > 6:
        raise ValueError(f"dim {args.dim} at level {args.level} is too large for the moment check here")
    info = summary(args.dim, args.level)
    if args.table:
        lap = args.dim if args.lap_dims is None else args.lap_dims
        table = nodetable.sparse_grid_table(args.dim, args.level, args.sigma, lap)
        fmts = nodetable.DEFAULT_TABLE_FORMATS if args.fixed else None
        n = nodetable.write(args.table, table, fmts)
        info["table"] = {"path": args.table, "bytes": n, "kind": "fixed" if args.fixed else "float64",
                         "sigma": args.sigma, "lap_dims": lap,
                         "formats": {k: str(v) for k, v in fmts.items()} if fmts else None}
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"level-{info['level']} sparse Gauss-Hermite grid in D = {info['dim']}: {info['nodes']} nodes, "
          f"weight sum {info['weight_sum']:.15g}")
    print(f"  largest moment error up to degree {info['exact_degree']}: {info['max_moment_error']:.3e}; "
          f"error of E[z_0^{2 * info['level']}]: {info['degree_2k_error_z0']:.3g}")
    if args.table:
        print(f"  node table written to {args.table} ({info['table']['bytes']} bytes, {info['table']['kind']})")
    return 0
