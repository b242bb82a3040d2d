"""Transports: pyserial loop:// and socket://, the XDMA character-device double, timeouts, clear errors."""
from __future__ import annotations

import socket
import time

import pytest

from ttzo.host.transport import FakeXdmaDevice, TransportError, XdmaTransport, open_transport


def _read_all(t, n, timeout=2.0):
    out, end = b"", time.monotonic() + timeout
    while len(out) < n and time.monotonic() < end:
        out += t.read(n - len(out), 0.1)
    return out


def test_loop_echo_and_timeout():
    t = open_transport("loop://")
    data = bytes(range(256)) * 4
    t.write(data)
    assert _read_all(t, len(data)) == data
    start = time.monotonic()
    assert t.read(10, 0.2) == b""
    assert 0.15 <= time.monotonic() - start < 1.0
    t.close()


def test_socket_url():
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    t = open_transport(f"socket://127.0.0.1:{port}")
    conn, _ = srv.accept()
    t.write(b"hello")
    assert conn.recv(5) == b"hello"
    conn.sendall(b"world")
    assert _read_all(t, 5) == b"world"
    t.close(); conn.close(); srv.close()


def test_bad_urls_give_clear_errors(tmp_path):
    with pytest.raises(TransportError, match="cannot open"):
        open_transport(str(tmp_path / "no-such-tty"))
    with pytest.raises(TransportError, match="does not exist"):
        open_transport(f"xdma://{tmp_path}/xdma9")


@pytest.mark.parametrize("channel", [0, 1])
def test_xdma_double(channel):
    dev = FakeXdmaDevice(lambda data: data[::-1], channel=channel)   # the "card" reverses each transfer
    try:
        t = open_transport(dev.url)
        assert isinstance(t, XdmaTransport)
        assert t.h2c_path.endswith(f"_h2c_{channel}") and t.c2h_path.endswith(f"_c2h_{channel}")
        t.write(b"abcdef")
        assert _read_all(t, 6) == b"fedcba"
        assert t.read(3, 0.1) == b""          # timeout without data
        t.write(b"xyz")
        assert t.read(2, 1.0) == b"zy"         # partial reads keep the rest
        assert t.read(5, 1.0) == b"x"
        t.close()
        assert bytes(dev.received) == b"abcdefxyz"
    finally:
        dev.close()


def test_xdma_double_closes_without_host():
    dev = FakeXdmaDevice(lambda d: d)
    dev.close()
    assert not dev.h2c_path.exists()
