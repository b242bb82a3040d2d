"""Byte transports to a board: any pyserial URL (UART device, socket://, loop://), Linux XDMA, model://.

A transport moves bytes and nothing else: ``write(data)``, ``read(max_bytes, timeout) -> bytes``
(returns what arrived within `timeout`, possibly b""), ``reset_input()``, ``close()``.  Framing,
CRC and retries live in ttzo.host.board.

XDMA (``xdma:///dev/xdma0`` or ``xdma:///dev/xdma0?channel=1``) writes the host-to-card file
``/dev/xdma0_h2c_<channel>`` and reads the card-to-host file ``/dev/xdma0_c2h_<channel>`` of
the Xilinx XDMA driver in AXI-Stream mode; a reader thread turns its blocking reads into reads
with a timeout.  ``model://`` is the Python reference board (ttzo.sim.link_model) in process.
:class:`FakeXdmaDevice` is a test double built from two named pipes that behave
like those files (a write is one host-to-card transfer, a read returns what the card sent).
"""
from __future__ import annotations

import os
import queue
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Protocol
from urllib.parse import parse_qs, urlparse


class TransportError(OSError):
    """The transport could not be opened or failed while moving bytes (message names the URL)."""


class Transport(Protocol):
    url: str

    def write(self, data: bytes) -> None: ...
    def read(self, max_bytes: int, timeout: float) -> bytes: ...
    def reset_input(self) -> None: ...
    def close(self) -> None: ...


class SerialTransport:
    """pyserial ``serial_for_url``: ``/dev/ttyUSB0``, ``socket://host:port``, ``loop://`` ..."""

    def __init__(self, url: str, baudrate: int = 115200) -> None:
        import serial
        self.url = url
        try:
            self.port = serial.serial_for_url(url, baudrate=baudrate, timeout=0.05, write_timeout=10)
        except (serial.SerialException, ValueError, OSError) as exc:
            raise TransportError(f"cannot open {url!r}: {exc}") from None

    def write(self, data: bytes) -> None:
        import serial
        try:
            self.port.write(data)
            self.port.flush()
        except (serial.SerialException, OSError) as exc:
            raise TransportError(f"write to {self.url!r} failed: {exc}") from None

    def read(self, max_bytes: int, timeout: float) -> bytes:
        import serial
        timeout = max(timeout, 0.0)
        if self.port.timeout != timeout:      # setting it reconfigures a real port: only when it changes
            self.port.timeout = timeout
        try:
            first = self.port.read(1)
            if not first:
                return b""
            waiting = self.port.in_waiting
            return first + (self.port.read(min(waiting, max_bytes - 1)) if waiting and max_bytes > 1 else b"")
        except (serial.SerialException, OSError) as exc:
            raise TransportError(f"read from {self.url!r} failed: {exc}") from None

    def reset_input(self) -> None:
        try:
            self.port.reset_input_buffer()
        except Exception:   # socket:// may raise on a closed peer; nothing to discard then
            pass

    def close(self) -> None:
        self.port.close()


class XdmaTransport:
    """Linux XDMA character devices: write to ``<dev>_h2c_<ch>``, read from ``<dev>_c2h_<ch>``."""

    CHUNK = 4096

    def __init__(self, url: str) -> None:
        self.url = url
        u = urlparse(url)
        base = u.path or u.netloc
        ch = int(parse_qs(u.query).get("channel", ["0"])[0])
        self.h2c_path, self.c2h_path = f"{base}_h2c_{ch}", f"{base}_c2h_{ch}"
        for p in (self.h2c_path, self.c2h_path):
            if not os.path.exists(p):
                raise TransportError(f"{url!r}: XDMA device {p} does not exist (driver not loaded, no card?)")
        self._q: queue.Queue[bytes] = queue.Queue()
        self._pending = b""
        self._closed = threading.Event()
        try:
            # Open c2h first: a named-pipe double blocks until both ends are open.
            self.c2h = os.open(self.c2h_path, os.O_RDONLY)
            self.h2c = os.open(self.h2c_path, os.O_WRONLY)
        except OSError as exc:
            raise TransportError(f"cannot open XDMA device of {url!r}: {exc}") from None
        self._reader = threading.Thread(target=self._read_loop, name="xdma-c2h", daemon=True)
        self._reader.start()

    def _read_loop(self) -> None:
        while not self._closed.is_set():
            try:
                data = os.read(self.c2h, self.CHUNK)
            except OSError:
                break
            if not data:          # end of file: the card side went away
                break
            self._q.put(data)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                n = os.write(self.h2c, view)
                view = view[n:]
        except OSError as exc:
            raise TransportError(f"write to {self.h2c_path} failed: {exc}") from None

    def read(self, max_bytes: int, timeout: float) -> bytes:
        if not self._pending:
            try:
                self._pending = self._q.get(timeout=max(timeout, 1e-3))
            except queue.Empty:
                return b""
        out, self._pending = self._pending[:max_bytes], self._pending[max_bytes:]
        return out

    def reset_input(self) -> None:
        self._pending = b""
        while not self._q.empty():
            self._q.get_nowait()

    def close(self) -> None:
        self._closed.set()
        for fd in (self.h2c, self.c2h):
            try:
                os.close(fd)
            except OSError:
                pass


def open_transport(url: str, baudrate: int = 115200) -> Transport:
    """A transport for `url`: ``xdma://DEVICE`` for PCIe, anything else goes to pyserial."""
    if url.startswith("xdma://"):
        return XdmaTransport(url)
    if url.startswith("model://"):   # the Python reference board, in process (demos, tests)
        from ttzo.sim.link_model import ModelTransport
        return ModelTransport(url=url)
    return SerialTransport(url, baudrate)


class FakeXdmaDevice:
    """A double of the XDMA character devices: ``<dir>/xdma0_h2c_0`` and ``..._c2h_0`` named pipes.

    `handler(bytes) -> bytes` plays the card: it gets every chunk the host writes to h2c and its
    return value appears on c2h.  Use ``device.url`` with :func:`open_transport`; ``close()`` it.
    """

    def __init__(self, handler: Callable[[bytes], bytes], name: str = "xdma0", channel: int = 0) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="fake-xdma-"))
        self.base = self.dir / name
        self.h2c_path = Path(f"{self.base}_h2c_{channel}")
        self.c2h_path = Path(f"{self.base}_c2h_{channel}")
        os.mkfifo(self.h2c_path)
        os.mkfifo(self.c2h_path)
        self.url = f"xdma://{self.base}" + (f"?channel={channel}" if channel else "")
        self.handler = handler
        self.received = bytearray()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="fake-xdma", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            c2h = os.open(self.c2h_path, os.O_WRONLY)   # pairs with the host's O_RDONLY open
            h2c = os.open(self.h2c_path, os.O_RDONLY)
        except OSError:
            return
        try:
            while not self._stop.is_set():
                data = os.read(h2c, 65536)
                if not data:
                    break
                self.received += data
                reply = self.handler(data)
                if reply:
                    os.write(c2h, reply)
        except OSError:
            pass
        finally:
            os.close(h2c)
            os.close(c2h)

    def close(self) -> None:
        self._stop.set()
        # Unblock our thread if it still waits in open() because the host never opened its ends.
        end = time.monotonic() + 2
        while self._thread.is_alive() and time.monotonic() < end:
            for p, flags in ((self.c2h_path, os.O_RDONLY | os.O_NONBLOCK),
                             (self.h2c_path, os.O_WRONLY | os.O_NONBLOCK)):
                try:
                    os.close(os.open(p, flags))
                except OSError:
                    pass
            self._thread.join(0.01)
        for p in (self.h2c_path, self.c2h_path):
            p.unlink(missing_ok=True)
        try:
            self.dir.rmdir()
        except OSError:
            pass


def wait_until(pred: Callable[[], bool], timeout: float) -> bool:
    """Poll `pred` until it holds or `timeout` seconds pass (for tests and drivers)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.005)
    return pred()
