"""Virtual board with the real engines: rtl/board_top.BoardTop served on a local TCP port (cocotb + Verilator).

    port, stop = start(small_profile(), port=0, phy="stream")   # background; socket://127.0.0.1:{port}
    serve(small_profile(), port=5555)                            # foreground until Ctrl-C / SIGTERM

Same launcher/bench split and TCP side as E's sim/virtual_board.py (whose `_Net` and UART serving
loop it reuses); the difference is the design and the stream PHY's *fast path*: whenever no byte is in flight
(an operation runs, or the command processor copies/checks a request) but the design is not idle,
the bench lets the simulator run the clock on its own (a Timer of JUMP_CYCLES cycles, cut short when
the design's `idle` or `o.valid` rises) instead of waking Python on every edge, then looks at the
socket again.  A training step of many thousand cycles thus costs a few Python wake-ups, not one
per cycle.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from . import virtual_board as vb

CLOCK_NS = vb.CLOCK_NS
JUMP_CYCLES = 4096
TB_MODULE = "ttzo.sim.virtual_board_top"
TESTCASE = "run_board_server"


def build(bp, phy: str = "stream", sim: str = "verilator"):
    """Build (cached by hash under build/sim) the simulation model of BoardTop(bp, phy), or of
    rtl/serial_top.SerialTop(bp, phy) for a serial design (``bp.serial``)."""
    from ttzo.rtl.board_top import BoardTop

    from . import runner
    name = f"board_top_{bp.name.replace('-', '_')}" + ("" if phy == "stream" else "_uart")
    if bp.serial:
        from ttzo.rtl.serial_top import SerialTop
        return runner.build(SerialTop(bp, phy), name, sim=sim)
    return runner.build(BoardTop(bp, phy), name, sim=sim)


def start(bp, port: int = 0, phy: str = "stream", sim: str = "verilator",
          start_timeout: float = 600.0) -> tuple[int, Callable[[], None]]:
    """Build (cached) and start the virtual board in a background thread; returns (port, stop)."""
    model = build(bp, phy, sim)
    return vb.launch(model, TB_MODULE, port, phy,
                     {"TTZO_VB_CONNECTIONS": "0", "TTZO_VB_DIVISOR": str(bp.uart_divisor),
                      # cocotbext-uart logs every byte at INFO: thousands of lines per batch, and slow
                      "COCOTB_LOG_LEVEL": os.environ.get("COCOTB_LOG_LEVEL", "WARNING")},
                     testcase=TESTCASE, start_timeout=start_timeout, join_timeout=60.0, name="virtual-board-top")


def serve(bp, port: int, phy: str = "stream") -> None:
    """Run the virtual board in the foreground until Ctrl-C or SIGTERM."""
    vb.interrupt_on_signals()
    port, stop = start(bp, port, phy)
    vb.serve_until_interrupted(port, stop, phy, bp.name)


# ---------------------------------------------------------------------------------------------------
# cocotb bench (simulator process)
# ---------------------------------------------------------------------------------------------------
try:
    import cocotb
    from cocotb.triggers import First, ReadOnly, RisingEdge, Timer
except ImportError:
    cocotb = None


if cocotb is not None:
    @cocotb.test()
    async def run_board_server(dut):
        port = int(os.environ["TTZO_VB_PORT"])
        phy = os.environ.get("TTZO_VB_PHY", "stream")
        stop_file = Path(os.environ["TTZO_VB_STOP"])
        net = vb._Net(port)
        await vb.start_design(dut, phy, port)
        if phy == "stream":
            await _serve_stream_fast(dut, net, stop_file)
        else:
            await vb._serve_uart(dut, net, 0, stop_file, int(os.environ["TTZO_VB_DIVISOR"]))

    async def _serve_stream_fast(dut, net, stop_file: Path) -> None:
        out = bytearray()
        quiet = 0

        def take() -> None:      # in ReadOnly: record the byte the design offers (consumed at the next edge)
            nonlocal quiet
            if dut.o__valid.value:
                v = int(dut.o__payload.value)
                out.append(v & 0xFF)
                quiet = 0
                if v >> 8:       # `last`: reply complete
                    net.send(bytes(out))
                    out.clear()
            else:
                quiet += 1

        while not vb._done(net, 0, stop_file):
            if not net.rx and quiet > 2:
                if dut.idle.value:
                    net.send(bytes(out))
                    out.clear()
                    net.poll(0.05)                  # idle: block on the socket, simulated time stands still
                    continue
                else:                               # engine running or a request being copied/checked,
                    #                                     no byte in flight: let the simulator run the clock
                    await RisingEdge(dut.clk)
                    dut.i__valid.value = 0
                    await ReadOnly()
                    take()
                    if quiet == 0:
                        continue
                    trig = await First(Timer(JUMP_CYCLES * CLOCK_NS + CLOCK_NS // 2, unit="ns"),
                                       RisingEdge(dut.idle), RisingEdge(dut.o__valid))
                    if not isinstance(trig, Timer):
                        await ReadOnly()
                        quiet = 3
                        take()
                        net.poll(0)
                    else:                           # nothing happened: a running engine goes on at once; a
                        net.poll(0 if dut.busy.value else 0.05)   # partial request waits for its bytes
                    continue
            await RisingEdge(dut.clk)
            sending = bool(net.rx)
            dut.i__valid.value = int(sending)
            if sending:
                dut.i__payload.value = net.rx[0]
            await ReadOnly()
            take()
            if sending and dut.i__ready.value:
                del net.rx[0]
                quiet = 0
        await RisingEdge(dut.clk)


def main(argv: list[str] | None = None) -> int:
    """`python -m ttzo.sim.virtual_board_top --port N [--phy stream|uart] [--design NAME]`: serve the board."""
    import argparse

    from ttzo.rtl.board_top import profile
    ap = argparse.ArgumentParser(prog="python -m ttzo.sim.virtual_board_top", description=main.__doc__)
    ap.add_argument("--port", type=int, default=5555, help="TCP port on 127.0.0.1 (0: any free one)")
    ap.add_argument("--phy", choices=["stream", "uart"], default="stream")
    ap.add_argument("--design", default="ttzo-small",
                    help="board profile (ttzo-small, ttzo-mnist-rR, ttzo-hjb-small, ttzo-hjb)")
    a = ap.parse_args(argv)
    serve(profile(a.design), a.port, a.phy)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
