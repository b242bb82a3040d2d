"""`ttzo train hjb`: train the HJB-20 PINN BP-free (ZO-signRGE / ZO-RGE / hybrid) or with the FO baseline."""
from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    from ttzo.host.cli import group
    g = group(sub, "train", help="train a network with the golden model (zeroth-order or first-order)")
    p = g.add_parser("hjb", help="the 20-dim HJB PINN (paper section 5.2)",
                     description="Train the 20-dim HJB PINN: loss by a sparse-grid (sg) or Monte Carlo (mc) "
                                 "Stein estimator or finite differences (fd); ZO-signRGE, ZO-RGE (eq. 2, "
                                 "magnitude-carrying), hybrid (signRGE then CGE, RGE or ZO Gauss-Newton) or a first-order baseline "
                                 "(fo, needs jax). Writes metrics.json, checkpoint.npz and diagonal.png to --out.")
    p.add_argument("--estimator", choices=["sg", "mc", "fd"], default="sg")
    p.add_argument("--optimizer", choices=["fo", "signrge", "rge", "hybrid"], default="signrge")
    p.add_argument("--arith", choices=["float", "fixed"], default="float")
    p.add_argument("--net", default="tt", help="tt (7,745 params), fc3-768, fc3-78 or fc2-320")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--points", type=int, default=8, help="collocation points per step (authors: 100)")
    p.add_argument("--lr", type=float, default=3e-3, help="initial learning rate")
    p.add_argument("--lr-final", type=float, default=3e-5, help="learning rate at the last step (exp. decay)")
    p.add_argument("--mu", type=float, default=0.1, help="ZO perturbation radius (paper 0.1)")
    p.add_argument("--mu-per-entry", action="store_true",
                   help="perturb every parameter by mu * N(0,1) (default: mu is the radius of the whole "
                        "perturbation, i.e. mu / sqrt(d) per entry)")
    p.add_argument("--queries", type=int, default=10, help="ZO directions N per step (paper 10)")
    p.add_argument("--forward-difference", action="store_true", help="RGE with forward instead of central "
                                                                      "differences (N + 1 instead of 2N + 1 losses)")
    p.add_argument("--switch", type=int, default=0, help="hybrid: step of the switch to CGE (0: 80%% of steps)")
    p.add_argument("--fine", choices=["cge", "rge", "gn"], default="cge",
                   help="hybrid: fine stage after the switch, ZO-CGE with --momentum (paper), ZO-RGE with "
                        "--rge-momentum, or ZO Gauss-Newton on the output layer (gn: residual Jacobian from "
                        "forward queries, Levenberg-Marquardt on the host; needs --dtype delta32)")
    p.add_argument("--gn-points", type=int, default=0,
                   help="hybrid --fine gn: collocation points per GN step (0: --points); >= ~1,000 for the 769 "
                        "output-layer parameters")
    p.add_argument("--gn-lambda", type=float, default=1e-6,
                   help="hybrid --fine gn: initial Levenberg-Marquardt damping (adapted step to step)")
    p.add_argument("--gn-inner", type=int, default=3,
                   help="hybrid --fine gn: LM iterations per GN step on the step's queried Stein map")
    p.add_argument("--gn-mu", type=float, default=1e-3, help="hybrid --fine gn: finite-difference step of the queries")
    p.add_argument("--gn-central", action="store_true",
                   help="hybrid --fine gn: central differences (1 + 2K queries per step instead of 1 + K)")
    p.add_argument("--cge-lr", "--fine-lr", dest="cge_lr", type=float, default=1e-3,
                   help="hybrid: learning rate of the fine stage (CGE or RGE; decays like --lr)")
    p.add_argument("--cge-mu", type=float, default=0.0,
                   help="hybrid: CGE coordinate step (0: the RGE's per-entry mu, i.e. --mu / sqrt(d)); forward "
                        "differences are biased by cge_mu * L''/2, so use a small one (1e-6) with --cge-layers last "
                        "--dtype delta32, whose output-layer losses are float64 functions of the weights")
    p.add_argument("--cge-fraction", type=float, default=0.02, help="hybrid: fraction of coordinates per CGE step")
    p.add_argument("--cge-layers", choices=["all", "last"], default="all",
                   help="hybrid: CGE on coordinates of all layers, or of the output layer only (exact fast path "
                        "with --dtype delta32: no network evaluation per coordinate)")
    p.add_argument("--average-tail", type=float, default=0.0,
                   help="also report the validation MSE of the mean of the iterates over this final fraction of "
                        "the steps (Polyak-Ruppert tail averaging; 0: off)")
    p.add_argument("--momentum", type=float, default=0.9, help="hybrid: CGE momentum")
    p.add_argument("--rge-momentum", type=float, default=0.0,
                   help="rge (and hybrid --fine rge): heavy-ball momentum of the RGE step (0: plain RGE)")
    p.add_argument("--dtype", choices=["float32", "float64", "delta32"], default="float32",
                   help="float training loss: float32, float64, or delta32 (node differences NN(x+delta)-NN(x) "
                        "carried in float32 exactly; ~100x smaller residual error than float32)")
    p.add_argument("--f64-from", type=float, default=0.75, help="fraction of steps after which the float "
                                                                 "loss uses float64")
    p.add_argument("--sine", choices=["interp", "table"], default="interp",
                   help="fixed point: linearly interpolated table sine (default) or the plain table")
    p.add_argument("--val-points", type=int, default=10000)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.npz")
    p.add_argument("--json", action="store_true", help="print the final metrics as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ttzo.golden.hjb_train import HJBTrainConfig, train_hjb
    cfg = HJBTrainConfig(estimator=args.estimator, optimizer=args.optimizer, arith=args.arith, net=args.net,
                         steps=args.steps, points=args.points, lr=args.lr, lr_final=args.lr_final, mu=args.mu,
                         queries=args.queries, mu_is_radius=not args.mu_per_entry,
                         central=not args.forward_difference, switch=args.switch,
                         dtype=args.dtype, f64_from=args.f64_from, val_points=args.val_points,
                         log_every=args.log_every, seed=args.seed,
                         fixed_sine=args.sine, cge_lr=args.cge_lr, cge_fraction=args.cge_fraction,
                         momentum=args.momentum, cge_layers=args.cge_layers,
                         average_tail=args.average_tail, fine=args.fine, rge_momentum=args.rge_momentum,
                         cge_mu=args.cge_mu, gn_points=args.gn_points, gn_lambda=args.gn_lambda,
                         gn_inner=args.gn_inner, gn_mu=args.gn_mu, gn_central=args.gn_central)
    final = train_hjb(cfg, args.out, resume=args.resume, progress=not args.json,
                      log=lambda s: print(s, flush=True))
    if args.json:
        print(json.dumps(final, indent=2))
    else:
        print(f"final validation MSE {final['val_mse']:.3e} after {final['steps']} steps, {final['wall_s']:.0f} s; "
              f"outputs in {args.out}")
    return 0
