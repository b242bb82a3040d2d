"""`ttzo data`: find, verify (and optionally download) the MNIST files; print where and how many."""
from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="check (or download) the MNIST files and print where they are",
                       description="Load the four MNIST IDX files from --data DIR, $TTZO_DATA, the per-user cache "
                                   "or ../shared/datasets/mnist (in that order), verifying checksums; with "
                                   "--download, first fetch missing official files into that directory "
                                   "(MD5-verified).")
    p.add_argument("--data", help="MNIST directory")
    p.add_argument("--download", action="store_true", help="download missing official files first")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ttzo.golden.mnist import MNISTError, load_mnist
    try:
        m = load_mnist(args.data, download=args.download)
    except MNISTError as exc:
        print(f"ttzo data: error: {exc}", file=sys.stderr)
        return 2
    info = m.summary()
    if args.json:
        print(json.dumps(info))
    else:
        print(f"MNIST in {info['source']}: {info['train']} training and {info['test']} test images "
              f"of {info['pixels']} pixels")
    return 0
