"""`ttzo sweep SPEC.yaml --out DIR`: run a design-space sweep, resumably, on Ray or serially."""
from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep", help="design-space sweep over ranks/formats/optimizers/lanes/boards (Ray or serial)",
        description="Run every point of a sweep spec (YAML) into DIR: one folder per run, finished runs are "
                    "never rerun (rerun the same command to resume), failed runs are recorded with their "
                    "traceback. Uses a local Ray instance on this machine's cores when Ray is installed "
                    "(pip install 'ttzo[sweep]'), an existing cluster with --address, else runs serially. "
                    "Writes DIR/summary.csv, DIR/summary.json and DIR/pareto.png. See docs/sweeps.md.")
    p.add_argument("spec", help="sweep spec (YAML), e.g. examples/sweeps/tiny.yaml")
    p.add_argument("--out", required=True, help="output folder (created; reused to resume)")
    p.add_argument("--address", help="join an existing Ray cluster (e.g. 'auto' on a cluster node, or HEAD_IP:6379)")
    p.add_argument("--serial", action="store_true", help="run in this process, one run at a time (no Ray)")
    p.add_argument("--max-parallel", type=int, metavar="N", help="at most N runs at once (default: all CPUs)")
    p.add_argument("--num-cpus", type=int, metavar="N", help="CPUs of the local Ray instance (default: all)")
    p.add_argument("--retry-failed", action="store_true", help="rerun runs that failed before")
    p.add_argument("--dry-run", action="store_true", help="list the points and runs with their status, run nothing")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ttzo.host.sweep import load_spec, plan, run_sweep
    from ttzo.host.sweep.store import SweepStore

    if args.serial and args.address:
        raise ValueError("--serial and --address exclude each other")
    if args.max_parallel is not None and args.max_parallel < 1:
        raise ValueError(f"--max-parallel {args.max_parallel}: must be >= 1")
    spec = load_spec(args.spec)
    if args.dry_run:
        store = SweepStore(args.out)
        todo, counts = plan(spec, store, args.retry_failed)
        runs = [{**r.to_dict(), "status": store.status(r.id)} for r in spec.runs]
        if args.json:
            print(json.dumps({"points": len(spec.points), "runs": runs, "counts": counts, "to_run": len(todo)},
                             indent=2, default=str))
        else:
            for r in runs:
                print(f"{r['status']:8s} runs/{r['id']}")
            print(f"{len(spec.points)} points, {len(runs)} runs, {len(todo)} to run")
        return 0
    try:
        summary = run_sweep(spec, args.out, executor="serial" if args.serial else ("ray" if args.address else "auto"),
                            address=args.address, max_parallel=args.max_parallel, num_cpus=args.num_cpus,
                            retry_failed=args.retry_failed)
    except RuntimeError as exc:  # e.g. --address without Ray, lock held
        raise ValueError(str(exc)) from None
    if args.json:
        print(json.dumps({k: v for k, v in summary.items() if k != "spec"}, indent=2, default=str))
    else:
        c = summary["counts"]
        print(f"{summary['points']} points, {summary['runs']} runs: "
              + ", ".join(f"{v} {k}" for k, v in sorted(c.items()))
              + f"\nsummary: {args.out}/summary.csv, {args.out}/summary.json"
              + (f"\nplot: {summary['plot']}" if summary.get("plot") else ""))
    return 0 if summary["counts"].get("failed", 0) == 0 else 1
