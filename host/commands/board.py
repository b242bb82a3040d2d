"""`ttzo board identify`: what a board (real, virtual or model://) reports about itself."""
from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    from ttzo.host.cli import group
    g = group(sub, "board", help="talk to a board over UART, socket:// (virtual board) or xdma:// (PCIe)")
    p = g.add_parser("identify", help="print the board's protocol version, capabilities, memory sizes, formats",
                     description="Open the board at --port, send IDENTIFY and print the reply.")
    p.add_argument("--port", required=True,
                   help="board URL: /dev/ttyUSB1, socket://127.0.0.1:N (virtual board), xdma:///dev/xdma0, "
                        "model:// (the Python reference board)")
    p.add_argument("--baud", type=int, default=115200, help="UART baud rate (default 115200)")
    p.add_argument("--timeout", type=float, default=0.5, help="seconds to wait for each reply (default 0.5)")
    p.add_argument("--retries", type=int, default=3, help="retransmissions before giving up (default 3)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run_identify)


def run_identify(args: argparse.Namespace) -> int:
    from ttzo.host.board import Board, BoardError
    try:
        with Board.open(args.port, baudrate=args.baud, timeout=args.timeout, retries=args.retries) as b:
            info = b.info.to_dict()
    except BoardError as exc:
        raise OSError(str(exc)) from None
    info["port"] = args.port
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{info['name']} at {args.port}: protocol v{info['protocol_version']}, "
          f"capabilities {', '.join(info['capabilities']) or 'none'}, max payload {info['max_payload']} B, "
          f"clock {info['clock_hz']} Hz, baud {info['baud']}")
    print("  formats: " + ", ".join(f"{k} {v}" for k, v in info["formats"].items()))
    for r in info["regions"]:
        print(f"  region {r['id']} {r['name']}: {r['depth_words']} x {r['width_bits']} bit "
              f"({r['bytes']} B{'' if r['writable'] else ', read-only'})")
    print(f"  {info['config_registers']} config registers, {info['result_registers']} result registers")
    return 0
