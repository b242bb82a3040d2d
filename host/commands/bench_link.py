"""`ttzo bench link`: payload efficiency of the wire protocol for batch transfers (payload / line bytes).

Runs the real driver (ttzo.host.board) against the Python reference board in process and counts the
bytes it puts on the line while loading a batch (MNIST images + labels when the data set is found,
else uniform random bytes) and a parameter vector.  Efficiency = payload bytes / line bytes; a UART
sends 10 bits (start, 8 data, stop) per line byte, so payload throughput = baud / 10 * efficiency.
"""
from __future__ import annotations

import argparse
import json

import numpy as np


def register(sub: argparse._SubParsersAction) -> None:
    from ttzo.host.cli import group
    g = group(sub, "bench", help="benchmarks")
    p = g.add_parser("link", help="protocol payload efficiency for batch transfers at a given baud rate",
                     description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--baud", type=int, default=115200, help="UART baud rate for the time estimate (default 115200)")
    p.add_argument("--batch", type=int, default=64, help="samples per batch (default 64)")
    p.add_argument("--max-payload", type=int, default=1024, help="board frame payload limit in bytes (default 1024)")
    p.add_argument("--data", default=None, help="MNIST directory (default: TTZO_DATA / cache / shared copy)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def _batch(n: int, data: str | None) -> tuple[np.ndarray, np.ndarray, str]:
    try:
        from ttzo.golden.mnist import load_mnist
        m = load_mnist(data)
        return m.train_images[:n], m.train_labels[:n], f"MNIST train[0:{n}] from {m.source}"
    except Exception as exc:  # no data set here: fall back, and say so in the report
        rng = np.random.default_rng(0)
        return (rng.integers(0, 256, (n, 784), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8),
                f"uniform random bytes (MNIST not loaded: {exc})")


def measure(images: np.ndarray, labels: np.ndarray, params: np.ndarray, max_payload: int, baud: int) -> dict:
    from ttzo.host import protocol as P
    from ttzo.host.board import Board
    from ttzo.sim.link_model import LinkModel, ModelTransport, default_identify
    regions = (P.RegionInfo(P.Region.PARAMS, 16, max(params.size, 1)),
               P.RegionInfo(P.Region.BATCH, 8, images.size), P.RegionInfo(P.Region.LABELS, 8, labels.size))
    t = ModelTransport(LinkModel(default_identify(max_payload=max_payload, regions=regions)))
    board = Board(t, timeout=0.1, retries=0)
    board._seq = 0                      # deterministic sequence numbers: a seq of 0xC0/0xDB costs an escape
    board.identify()
    out = {}
    for name, rid, data in (("batch", P.Region.BATCH, images.tobytes()), ("labels", P.Region.LABELS, labels.tobytes()),
                            ("params", P.Region.PARAMS, None)):
        before_out, before_in, before_req = board.stats.bytes_out, board.stats.bytes_in, board.stats.requests
        if data is None:
            board.write_words(rid, params)
            payload = params.size * 2
        else:
            board.write_region(rid, data)
            payload = len(data)
        line = board.stats.bytes_out - before_out
        out[name] = {"payload_bytes": payload, "line_bytes": line, "frames": board.stats.requests - before_req,
                     "reply_bytes": board.stats.bytes_in - before_in,
                     "efficiency": round(payload / line, 4), "seconds_at_baud": round(line * 10 / baud, 4)}
    b = out["batch"]
    b_l = out["labels"]
    payload, line = b["payload_bytes"] + b_l["payload_bytes"], b["line_bytes"] + b_l["line_bytes"]
    out["batch_transfer"] = {"payload_bytes": payload, "line_bytes": line, "efficiency": round(payload / line, 4),
                             "seconds_at_baud": round(line * 10 / baud, 4),
                             "payload_bytes_per_s": round(baud / 10 * payload / line, 1)}
    return out


def run(args: argparse.Namespace) -> int:
    from ttzo.host import protocol as P
    if not 16 <= args.max_payload <= 65535:
        raise ValueError(f"--max-payload {args.max_payload} outside 16..65535")
    if args.batch < 1:
        raise ValueError(f"--batch {args.batch} must be at least 1")
    images, labels, source = _batch(args.batch, args.data)
    from ttzo.golden.network import mnist_tt
    from ttzo.golden.formats import DEFAULT_CONFIG
    net = mnist_tt(6)
    # The initial parameter codes of the paper's MNIST TT-MLP (rank 6), golden TTNet.flatten order.
    params = np.asarray(net.flatten(net.quantize(net.init(np.random.default_rng(0)), DEFAULT_CONFIG)),
                        dtype=np.int64)
    res = measure(images, labels, params, args.max_payload, args.baud)
    report = {"baud": args.baud, "max_payload": args.max_payload, "batch": args.batch, "data": source,
              "frame_overhead_bytes": P.line_bytes(0) + P.WRITE_HDR.size,
              "uart_bits_per_byte": 10, "goal_efficiency": 0.90,
              "meets_goal": res["batch_transfer"]["efficiency"] >= 0.90, **res}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    bt = res["batch_transfer"]
    print(f"batch of {args.batch} ({source}): {bt['payload_bytes']} payload bytes in {bt['line_bytes']} line bytes, "
          f"efficiency {bt['efficiency']:.1%} (goal 90%), {bt['seconds_at_baud']} s at {args.baud} baud")
    for k in ("batch", "labels", "params"):
        r = res[k]
        print(f"  {k}: {r['payload_bytes']} B in {r['frames']} frames, {r['line_bytes']} line B, "
              f"efficiency {r['efficiency']:.1%}")
    return 0
