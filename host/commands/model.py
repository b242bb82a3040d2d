"""`ttzo model`: sizes, MAC counts and contraction orders of a network, optionally as JSON."""
from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("model", help="describe a network: parameters, MACs per sample, contraction orders",
                       description="Describe a network: parameter count, per-sample MACs of the chosen "
                                   "contraction order, of the paper's left-to-right sweep and of the dense matrix.")
    p.add_argument("net", choices=["mnist", "mnist-dense"], help="which network")
    p.add_argument("--rank", type=int, default=6, help="TT rank r (ranks [1,r,r,r,1]); default 6")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ttzo.golden.network import dense_mlp, mnist_tt
    from ttzo.golden.memory_budget import model_memory_fields
    net = mnist_tt(args.rank) if args.net == "mnist" else dense_mlp()
    info = net.describe()
    info.update(model_memory_fields(net))
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{info['name']}: {info['params']} parameters")
    for i, layer in enumerate(info["layers"]):
        print(f"  layer {i}: {layer['in_modes']} -> {layer['out_modes']} ranks {layer['ranks']} "
              f"{layer['activation']}, order {layer['order']}: {layer['macs']} MACs "
              f"(left-to-right {layer['macs_left_to_right']}, dense {layer['macs_dense']})")
    print(f"  per sample: {info['macs_per_sample']} MACs (left-to-right {info['macs_left_to_right']}, "
          f"dense {info['macs_dense']})")
    return 0
