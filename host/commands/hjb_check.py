"""`ttzo hjb-check`: float vs fixed point for a trained HJB network (validation MSE, Stein estimate errors)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("hjb-check", help="fixed-point effect on a trained HJB network's solution and Stein estimates",
                       description="Load OUT/checkpoint.npz of `ttzo train hjb`, evaluate the network in float64 and "
                                   "in several fixed-point configurations (plain table sine vs interpolated sine, "
                                   "narrow vs wide formats) and print the validation MSE and the largest errors of "
                                   "the Stein gradient, Laplacian and residual against float64.")
    p.add_argument("run", help="output folder of `ttzo train hjb` (with checkpoint.npz and metrics.json)")
    p.add_argument("--points", type=int, default=4, help="collocation points for the estimate errors")
    p.add_argument("--val-points", type=int, default=2000)
    p.add_argument("--estimator", choices=["sg", "mc", "fd"], default="sg")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from ttzo.golden import hjb
    folder = Path(args.run)
    ck = folder / "checkpoint.npz"
    if not ck.exists():
        raise FileNotFoundError(f"{ck} not found (run `ttzo train hjb --out {folder}` first)")
    net_name = "tt"
    meta = folder / "metrics.json"
    if meta.exists():
        net_name = json.loads(meta.read_text())["config"].get("net", "tt")
    net = hjb.make_net(net_name)
    theta = np.load(ck)["theta"]
    if theta.shape != (net.n_params,):
        raise ValueError(f"{ck}: {theta.shape[0]} parameters, network {net_name!r} has {net.n_params}")
    rep = hjb.fixed_point_report(net, net.unflatten(theta), args.points, args.val_points, estimator=args.estimator)
    if args.json:
        print(json.dumps(rep, indent=2))
        return 0
    print(f"float64: validation MSE {rep['val_mse_float64']:.4e}, residual RMS {rep['residual_float64_rms']:.3g}")
    for c in rep["cases"]:
        print(f"  {c['case']:52s} val {c['val_mse']:.4e}  |d grad| {c['grad_err']:.2e}  |d lap| {c['lap_err']:.3g}"
              f"  saturated {c['saturated']}")
    return 0
