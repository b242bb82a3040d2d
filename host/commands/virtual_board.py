"""`ttzo virtual-board --port N`: serve the simulated board (cocotb + Verilator) on a local TCP port.

Then `--port socket://127.0.0.1:N` works with every host command (e.g. `ttzo board identify`).
The served design is one of the real board designs (`--design`, rtl/board_top.profile: the full
design at a profile, or the serial design) or the standalone link design (`--design link`).
"""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("virtual-board", help="serve the simulated board on a local TCP port",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=5555, help="TCP port on 127.0.0.1 (0: any free one; default 5555)")
    p.add_argument("--phy", choices=["stream", "uart"], default="stream",
                   help="stream: the command processor's byte stream (fast, default); uart: bit-level UART pins")
    p.add_argument("--design", default="ttzo-small",
                   help="ttzo-small (default), ttzo-mnist-rR, or the HJB-loss designs ttzo-hjb-small / ttzo-hjb: "
                        "rtl/board_top.BoardTop with the TT engine and ZO trainer; ttzo-serial-tiny / ttzo-serial-rR: "
                        "the serial design that fits the UP5K (rtl/serial_top.SerialTop, docs/rtl-serial.md); "
                        "link: the standalone link design with its stub engine")
    p.add_argument("--max-payload", type=int, default=1024, help="frame payload limit of the design (default 1024)")
    p.add_argument("--uart-divisor", type=int, default=8, help="clocks per UART bit in --phy uart (default 8)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ttzo.sim.link_model import default_identify
    from ttzo.sim.virtual_board import serve
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port {args.port} outside 0..65535")
    if args.uart_divisor < 4:
        raise ValueError(f"--uart-divisor {args.uart_divisor} must be at least 4")
    if args.design != "link":
        from ttzo.rtl.board_top import profile
        from ttzo.sim.virtual_board_top import serve as serve_board
        serve_board(profile(args.design), args.port, args.phy)
        return 0
    from ttzo.sim.virtual_board import CLOCK_NS
    ident = default_identify(max_payload=args.max_payload, uart_divisor=args.uart_divisor, name="ttzo-virtual",
                             clock_hz=10**9 // CLOCK_NS)
    serve(ident, args.port, args.phy)
    return 0
