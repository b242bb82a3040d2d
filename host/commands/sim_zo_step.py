"""`ttzo sim zo-step`: run whole ZO training steps on the trainer + TT engine RTL, compare with golden."""
from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    from ttzo.host.cli import group
    g = group(sub, "sim", help="co-simulate RTL against the golden model (cocotb: Verilator or Icarus)")
    p = g.add_parser("zo-step", help="run ZO training steps on chip (RTL), compare with golden bit for bit",
                     description="Build (or reuse) the ZO trainer around the TT engine, load a real MNIST "
                                 "training batch and seeded parameters, run K signRGE steps or one CGE step "
                                 "in cocotb (start, await done) and report cycles per step, the forward "
                                 "passes run, every batch loss, and bit_exact: parameters, momentum and "
                                 "every loss equal golden/zo_fixed.py's.  Exit code 1 when anything differs.")
    p.add_argument("--optimizer", choices=["signrge", "cge"], default="signrge", help="ZO optimizer")
    p.add_argument("--net", choices=["mnist", "small"], default="mnist",
                   help="mnist: the paper's TT-MLP (--rank); small: 784 -> 16 -> 10 TT net, rank 2 (210 params)")
    p.add_argument("--rank", type=int, default=6, help="TT rank of the MNIST net; default 6")
    p.add_argument("--batch", type=int, default=64, help="MNIST training samples in the batch; default 64")
    p.add_argument("--steps", type=int, default=3, help="signRGE steps K; default 3 (CGE runs one step)")
    p.add_argument("--queries", type=int, default=10, help="signRGE queries N; default 10")
    p.add_argument("--mu", type=float, default=0.1, help="signRGE mu; default 0.1")
    p.add_argument("--alpha", type=float, default=0.005, help="signRGE step alpha; default 0.005")
    p.add_argument("--cge-fraction", type=float, default=None,
                   help="CGE: fraction of coordinates visited (golden zo.sample_coordinates); default 1 for "
                        "the small net, 0.01 for the MNIST net")
    p.add_argument("--lanes", type=int, default=16,
                   help="TT engine MAC lanes P for the MNIST net; default 16 (the small net's model has 4)")
    p.add_argument("--sim", choices=["verilator", "icarus"], default="verilator", help="simulator")
    p.add_argument("--seed", type=int, default=0, help="seed of the parameters and the PRNG; default 0")
    p.add_argument("--data", default=None, help="MNIST directory (default: golden.mnist's search path)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import time

    import numpy as np

    from ttzo.golden.formats import DEFAULT_CONFIG
    from ttzo.golden.mnist import load_mnist
    from ttzo.golden.network import mnist_tt
    from ttzo.rtl.descriptors import EngineParams
    from ttzo.sim.tb_zo_nets import small_mnist_net
    from ttzo.sim.tt_cosim import seeded_params
    from ttzo.sim.zo_cosim import SMALL_ENGINE, SMALL_LOG_DEPTH, SMALL_N_MAX, ZoCase, cosimulate_zo

    if args.batch < 1 or args.steps < 1 or args.queries < 1:
        raise ValueError("--batch, --steps and --queries must be >= 1")
    net = small_mnist_net() if args.net == "small" else mnist_tt(args.rank)
    ds = load_mnist(args.data)
    x = np.asarray(ds.train_images[:args.batch], dtype=np.int64).reshape(args.batch, -1)
    y = np.asarray(ds.train_labels[:args.batch], dtype=np.int64)
    theta = net.flatten(seeded_params(net, DEFAULT_CONFIG, args.seed))
    fraction = args.cge_fraction if args.cge_fraction is not None else (1.0 if args.net == "small" else 0.01)
    case = ZoCase(f"{net.name}-{args.optimizer}", net, theta, x, y, args.optimizer, seed=args.seed,
                  k_steps=args.steps if args.optimizer == "signrge" else 1, n_queries=args.queries, mu=args.mu,
                  alpha=args.alpha, fraction=fraction)
    if args.net == "small":   # the default cocotb suite's model (built once, reused)
        if args.queries > SMALL_N_MAX:
            raise ValueError(f"--queries {args.queries}: the small-net model holds at most {SMALL_N_MAX}")
        params, n_max, log_depth = SMALL_ENGINE, SMALL_N_MAX, SMALL_LOG_DEPTH
    else:
        params, n_max = EngineParams(lanes=args.lanes), max(args.queries, 1)
        log_depth = max(64, 1 << (net.n_params + 1).bit_length()) if args.optimizer == "cge" else 64
    t0 = time.time()
    (r,) = cosimulate_zo([case], params, sim=args.sim, n_max=n_max, log_depth=log_depth)
    out = {"net": net.name, "optimizer": args.optimizer, "sim": args.sim, "lanes": params.lanes,
           "batch": args.batch, "params": net.n_params, **r.to_dict(),
           "forward_passes_per_step": r.forwards / max(1, r.steps), "wall_seconds": round(time.time() - t0, 1)}
    if args.optimizer == "cge":
        out["cge_fraction"] = fraction
    else:
        out["queries"] = args.queries
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"{net.name} {args.optimizer} on {args.sim} (P={args.lanes}, batch {args.batch}): "
              f"{r.steps} steps, {r.forwards} forward passes, {r.cycles_per_step:.0f} cycles/step, "
              f"bit exact: {r.bit_exact}")
    return 0 if r.bit_exact else 1
