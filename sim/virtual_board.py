"""Virtual board: the simulated design's byte stream served on a local TCP port (cocotb + Verilator).

    port, stop = start(ident, port=0, phy="stream")      # background; `socket://127.0.0.1:{port}`
    serve(ident, port=5555)                                # foreground until Ctrl-C

This module is both the launcher (start/serve, run in the host process) and the cocotb bench
(`run_server`, run inside the simulator).  The bench accepts one TCP client at a time, feeds the
bytes it receives into the design and sends back what the design emits, so unchanged host code
(`Board.open("socket://127.0.0.1:N")`) talks to the simulated gateware.  ``phy="stream"`` drives
the command processor's byte-stream port directly (fast path: one byte per clock);
``phy="uart"`` drives the UART pins bit by bit through cocotbext-uart (slow, exercises the PHY).
While the design is idle the bench blocks on the socket, so simulated time only advances when
there is work.  The design is rtl/link_top.LinkTop (stub engine); the integration swaps in the
top with the real engines.
"""
from __future__ import annotations

import json
import os
import select
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

from ttzo.host import protocol as P

CLOCK_NS = 10


# ---------------------------------------------------------------------------------------------------
# launcher (host process)
# ---------------------------------------------------------------------------------------------------
def build(ident: P.Identify, phy: str = "stream", sim: str = "verilator"):
    from ttzo.rtl.link_top import LinkTop

    from . import runner
    return runner.build(LinkTop(ident, phy), "link_top" if phy == "stream" else "link_top_uart", sim=sim)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that the OS reports free."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(model, tb_module: str, port: int, phy: str, env_extra: dict[str, str], testcase: str | None = None,
           start_timeout: float = 120.0, join_timeout: float = 30.0, name: str = "virtual-board"
           ) -> tuple[int, Callable[[], None]]:
    """Run cocotb bench `tb_module` on a built `model` in a background thread, serving TCP `port`.

    Shared by every virtual-board design (this file's LinkTop, sim/virtual_board_top.py's BoardTop):
    waits for the bench's ready file; the returned stop() writes the stop file and joins.
    """
    from . import runner
    port = port or free_port()
    tmp = Path(tempfile.mkdtemp(prefix=f"ttzo-{name}-"))
    ready, stop_file = tmp / "ready", tmp / "stop"
    env = {"TTZO_VB_PORT": str(port), "TTZO_VB_PHY": phy, "TTZO_VB_READY": str(ready),
           "TTZO_VB_STOP": str(stop_file), **env_extra}
    errors: list[BaseException] = []

    def run() -> None:
        try:
            kw = {"testcase": testcase} if testcase else {}
            runner.run(model, tb_module, env=env, test_dir=tmp / "run", **kw)
        except BaseException as exc:   # reported by stop()
            errors.append(exc)

    t = threading.Thread(target=run, name=name, daemon=True)
    t.start()
    end = time.monotonic() + start_timeout
    while not ready.exists():
        if not t.is_alive() or time.monotonic() > end:
            stop_file.write_text("stop\n")
            raise RuntimeError(f"virtual board did not start: {errors[0] if errors else 'timeout'} "
                               f"(log {tmp / 'run' / 'sim.log'})")
        time.sleep(0.05)

    def stop() -> None:
        stop_file.write_text("stop\n")
        t.join(join_timeout)
        if errors:
            raise errors[0]
        shutil.rmtree(tmp, ignore_errors=True)     # kept (with sim.log) when the simulation failed

    return port, stop


def start(ident: P.Identify, port: int = 0, phy: str = "stream", connections: int = 0,
          sim: str = "verilator") -> tuple[int, Callable[[], None]]:
    """Build (cached) and start the virtual board in a background thread; returns (port, stop).

    `connections` > 0 ends the simulation after that many clients have disconnected; `stop()`
    ends it at once.  The TCP port is chosen by the OS when `port` is 0.
    """
    model = build(ident, phy, sim)
    return launch(model, "ttzo.sim.virtual_board", port, phy,
                  {"TTZO_VB_CONNECTIONS": str(connections), "TTZO_VB_DIVISOR": str(ident.uart_divisor)})


def serve_until_interrupted(port: int, stop: Callable[[], None], phy: str, board: str) -> None:
    """Print the board's URL as JSON, then keep serving until Ctrl-C or SIGTERM."""
    print(json.dumps({"port": port, "url": f"socket://127.0.0.1:{port}", "phy": phy, "board": board}), flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        stop()


def interrupt_on_signals() -> None:
    """SIGTERM (and SIGINT in background jobs) raise KeyboardInterrupt so the simulator stops cleanly."""
    import signal

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)


def serve(ident: P.Identify, port: int, phy: str = "stream") -> None:
    """Run the virtual board in the foreground until interrupted (Ctrl-C or SIGTERM)."""
    interrupt_on_signals()
    port, stop = start(ident, port, phy)
    serve_until_interrupted(port, stop, phy, ident.name)


# ---------------------------------------------------------------------------------------------------
# cocotb bench (simulator process)
# ---------------------------------------------------------------------------------------------------
try:
    import cocotb
    from cocotb.clock import Clock
    from cocotb.triggers import ReadOnly, RisingEdge, Timer
except ImportError:   # the launcher half works without cocotb's simulator side
    cocotb = None


class _Net:
    """Non-blocking TCP side of the bench: one client at a time."""

    def __init__(self, port: int) -> None:
        self.srv = socket.create_server(("127.0.0.1", port))
        self.srv.setblocking(False)
        self.conn: socket.socket | None = None
        self.rx = bytearray()
        self.closed_clients = 0

    def poll(self, timeout: float) -> None:
        """Accept a client / receive its bytes, waiting at most `timeout` seconds."""
        socks = [self.conn] if self.conn else [self.srv]
        r, _, _ = select.select(socks, [], [], timeout)
        if not r:
            return
        if self.conn is None:
            self.conn, _ = self.srv.accept()
            self.conn.setblocking(False)
            return
        try:
            data = self.conn.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if data:
            self.rx += data
        else:
            self.conn.close()
            self.conn, self.rx = None, bytearray()
            self.closed_clients += 1

    def send(self, data: bytes) -> None:
        if self.conn is not None and data:
            self.conn.setblocking(True)
            try:
                self.conn.sendall(data)
            except OSError:
                pass
            self.conn.setblocking(False)


if cocotb is not None:
    @cocotb.test()
    async def run_server(dut):
        port = int(os.environ["TTZO_VB_PORT"])
        phy = os.environ.get("TTZO_VB_PHY", "stream")
        connections = int(os.environ.get("TTZO_VB_CONNECTIONS", "0"))
        stop_file = Path(os.environ["TTZO_VB_STOP"])
        net = _Net(port)
        await start_design(dut, phy, port)
        if phy == "stream":
            await _serve_stream(dut, net, connections, stop_file)
        else:
            await _serve_uart(dut, net, connections, stop_file, int(os.environ["TTZO_VB_DIVISOR"]))

    async def start_design(dut, phy: str, port: int) -> None:
        """Clock, idle inputs, three reset cycles, then tell the launcher (ready file) we serve `port`."""
        cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
        dut.rst.value = 1
        if phy == "stream":
            dut.i__valid.value = 0
            dut.o__ready.value = 1
        else:
            dut.rx.value = 1
        for _ in range(3):
            await RisingEdge(dut.clk)
        dut.rst.value = 0
        Path(os.environ["TTZO_VB_READY"]).write_text(str(port))

    def _done(net: _Net, connections: int, stop_file: Path) -> bool:
        return stop_file.exists() or (connections > 0 and net.closed_clients >= connections)

    async def _serve_stream(dut, net: _Net, connections: int, stop_file: Path) -> None:
        out = bytearray()
        quiet = 0
        while not _done(net, connections, stop_file):
            if not net.rx and quiet > 2 and dut.idle.value:
                net.send(bytes(out)); out.clear()
                net.poll(0.05)                      # idle: block on the socket, simulated time stands still
                continue
            await RisingEdge(dut.clk)
            sending = bool(net.rx)
            dut.i__valid.value = int(sending)
            if sending:
                dut.i__payload.value = net.rx[0]
            await ReadOnly()
            if dut.o__valid.value:
                v = int(dut.o__payload.value)
                out.append(v & 0xFF)
                quiet = 0
                if v >> 8:                          # `last`: the reply frame is complete
                    net.send(bytes(out)); out.clear()
            else:
                quiet += 1
            if sending and dut.i__ready.value:
                del net.rx[0]
                quiet = 0
        await RisingEdge(dut.clk)

    async def _serve_uart(dut, net: _Net, connections: int, stop_file: Path, divisor: int) -> None:
        from cocotbext.uart import UartSink, UartSource
        baud = 1e9 / (CLOCK_NS * divisor)
        source = UartSource(dut.rx, baud=baud, bits=8)
        sink = UartSink(dut.tx, baud=baud, bits=8)
        byte_ns = int(10 * CLOCK_NS * divisor)
        out = bytearray()
        quiet = 0
        while not _done(net, connections, stop_file):
            if net.rx:
                source.write_nowait(bytes(net.rx))
                net.rx.clear()
            if source.empty() and quiet > 2 and not sink.count() and dut.idle.value:
                net.send(bytes(out)); out.clear()
                net.poll(0.05)
                continue
            await Timer(byte_ns, unit="ns")
            net.poll(0)     # bytes that arrive while the design runs (STATUS during RUN_STEPS) go in at once
            got = False
            while sink.count():
                out += sink.read_nowait(1)
                got = True
            quiet = 0 if (got or not source.empty()) else quiet + 1
            if out and out[-1] == P.END and len(out) > 1:
                net.send(bytes(out)); out.clear()
