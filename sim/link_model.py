"""Python reference model of the board's link: SLIP decoder, CRC check, command processor, memories.

Byte for byte what the gateware (ttzo.rtl.link_top) answers: the RTL fuzz test compares its reply
to this model's for every frame, and the host driver tests talk to it over a TCP socket
(:func:`serve`) exactly as they would talk to the virtual board.  The order of the checks here
IS the specification of docs/protocol.md ("Error handling").
"""
from __future__ import annotations

import socket
import struct
import threading
from dataclasses import dataclass, field
from typing import Callable

from ttzo.host import protocol as P

#: Engine hook: (model, op, arg) -> op_error; may change regions and results.
Engine = Callable[["LinkModel", int, int], int]


def stub_engine(model: "LinkModel", op: int, arg: int) -> int:
    """What the standalone link_top's placeholder engine does: busy for arg + 1 cycles, then record the
    op, its argument and a count of completed operations in results[0..2]."""
    model.op_cycles = (arg + 1) & 0xFFFFFFFF
    if model.ident.n_results >= 3:
        model.results[0] = op
        model.results[1] = arg
        model.results[2] = (model.results[2] + 1) & 0xFFFFFFFF
    return 0


def default_identify(max_payload: int = 1024, n_config: int = 16, n_results: int = 8,
                     regions: tuple[P.RegionInfo, ...] | None = None, clock_hz: int = 12_000_000,
                     uart_divisor: int = 104, name: str = "ttzo-link") -> P.Identify:
    """The identify record of the standalone link design with small test memories."""
    from ttzo.golden.formats import DEFAULT_CONFIG
    fmts, sine = P.formats_of(DEFAULT_CONFIG)
    if regions is None:
        regions = (P.RegionInfo(P.Region.PARAMS, 16, 512), P.RegionInfo(P.Region.BATCH, 8, 2048),
                   P.RegionInfo(P.Region.LABELS, 8, 64), P.RegionInfo(P.Region.NODES, 16, 128),
                   P.RegionInfo(P.Region.COLLOC, 16, 128),
                   P.RegionInfo(P.Region.OUTPUTS, 32, 64, P.REGION_FLAG_READABLE))
    return P.Identify(P.VERSION, P.CAP_INFERENCE | P.CAP_STEPS | P.CAP_UART | P.CAP_STREAM, max_payload,
                      clock_hz, uart_divisor, n_config, n_results, fmts, sine, name, tuple(regions))


@dataclass
class _Rx:
    """Decoder state of the frame being received."""

    data: bytearray = field(default_factory=bytearray)
    esc: bool = False
    bad_escape: bool = False
    overflow: bool = False
    count: int = 0


class LinkModel:
    """The command processor as a byte-in, byte-out function: `feed(line_bytes) -> reply line bytes`."""

    def __init__(self, ident: P.Identify | None = None, engine: Engine = stub_engine) -> None:
        self.ident = ident or default_identify()
        self.engine = engine
        self.mem = {r.id: bytearray(r.size) for r in self.ident.regions}
        self.config = [0] * self.ident.n_config
        self.results = [0] * self.ident.n_results
        self.rx_ok = self.rx_bad = 0
        self.last: tuple[int, int, int] | None = None   # (seq, cmd, status) of the last accepted request
        self.last_op = self.op_error = 0
        self.op_cycles = 0         # clock cycles of the last operation (engine-defined)
        self.rx = _Rx()
        self.max_frame = P.HEADER_SIZE + self.ident.max_payload + P.CRC_SIZE

    # --- decoder ---------------------------------------------------------------------------------
    def feed(self, data: bytes) -> bytes:
        out = bytearray()
        for b in data:
            rx = self.rx
            if b == P.END:
                if rx.esc:
                    rx.bad_escape = True
                self.rx = _Rx()
                reply = self._frame_end(rx)
                if reply is not None:
                    out += reply.encode()
                continue
            if rx.esc:
                rx.esc = False
                if b == P.ESC_END:
                    b = P.END
                elif b == P.ESC_ESC:
                    b = P.ESC
                else:
                    rx.bad_escape = True
            elif b == P.ESC:
                rx.esc = True
                continue
            if rx.count < self.max_frame:
                rx.data.append(b)
                rx.count += 1
            else:
                rx.overflow = True
        return bytes(out)

    def _frame_end(self, rx: _Rx) -> P.Frame | None:
        n = len(rx.data)
        if n == 0 and not rx.bad_escape and not rx.overflow:
            return None                                   # idle END: not a frame
        if n < P.MIN_FRAME:
            self.rx_bad += 1                              # runt: nothing trustworthy to answer
            return None
        body = bytes(rx.data)
        cmd, seq = body[1], body[2]
        if rx.bad_escape or rx.overflow:
            self.rx_bad += 1
            return self._reply(cmd, seq, P.Status.FRAME)
        if P.crc16(body) != 0:
            self.rx_bad += 1
            return self._reply(cmd, seq, P.Status.CRC)
        self.rx_ok += 1
        version, _, _, status, length = P.HEADER.unpack_from(body)
        payload = body[P.HEADER_SIZE:-P.CRC_SIZE]
        if version != P.VERSION:
            st, data = P.Status.VERSION, b""
        elif status != 0:
            st, data = P.Status.HEADER, b""
        elif length != len(payload):
            st, data = P.Status.LENGTH, b""
        elif cmd not in P.Cmd.__members__.values():
            st, data = P.Status.COMMAND, b""
        elif cmd in P.RUN_COMMANDS and self.last is not None and self.last[:2] == (seq, cmd):
            st, data = P.Status(self.last[2]), b""        # retransmission: answer, do not run again
        elif self.busy and not P.accepted_while_busy(cmd, payload, self.ident):
            st, data = P.Status.BUSY, b""
        else:
            st, data = self._execute(P.Cmd(cmd), payload)
        self.last = (seq, cmd, int(st))
        if cmd == P.Cmd.RESET and st == P.Status.OK:
            self.rx_ok = self.rx_bad = 0
        return self._reply(cmd, seq, st, data)

    @staticmethod
    def _reply(cmd: int, seq: int, status: int, payload: bytes = b"") -> P.Frame:
        return P.Frame(cmd | P.REPLY_BIT, seq, payload, int(status))

    busy = False   # the model's operations finish at once

    # --- commands --------------------------------------------------------------------------------
    def _execute(self, cmd: P.Cmd, pl: bytes) -> tuple[P.Status, bytes]:
        S = P.Status
        n = len(pl)
        if cmd == P.Cmd.IDENTIFY:
            return (S.LENGTH, b"") if n else (S.OK, self.ident.encode())
        if cmd == P.Cmd.STATUS:
            if n:
                return S.LENGTH, b""
            return S.OK, P.BoardStatus(False, self.last_op, self.op_error, self.rx_ok, self.rx_bad,
                                      self.op_cycles).encode()
        if cmd == P.Cmd.RESET:
            if n:
                return S.LENGTH, b""
            self.config = [0] * len(self.config)
            self.results = [0] * len(self.results)
            self.last_op = self.op_error = 0
            return S.OK, b""
        if cmd == P.Cmd.WRITE_REGION:
            if n < P.WRITE_HDR.size:
                return S.LENGTH, b""
            rid, off = P.WRITE_HDR.unpack_from(pl)
            data = pl[P.WRITE_HDR.size:]
            r = self._region(rid)
            if r is None:
                return S.REGION, b""
            if not r.writable:
                return S.READ_ONLY, b""
            if off % r.word_bytes or len(data) % r.word_bytes or off + len(data) > r.size:
                return S.RANGE, b""
            self.mem[rid][off:off + len(data)] = data
            return S.OK, b""
        if cmd == P.Cmd.READ_REGION:
            if n != P.READ_REQ.size:
                return S.LENGTH, b""
            rid, off, count = P.READ_REQ.unpack(pl)
            r = self._region(rid)
            if r is None:
                return S.REGION, b""
            if off % r.word_bytes or count % r.word_bytes or count > self.ident.max_payload \
                    or off + count > r.size:
                return S.RANGE, b""
            return S.OK, bytes(self.mem[rid][off:off + count])
        if cmd == P.Cmd.CONFIGURE:
            if n < P.REG_FIRST.size or (n - P.REG_FIRST.size) % 4:
                return S.LENGTH, b""
            (first,) = P.REG_FIRST.unpack_from(pl)
            values = struct.unpack_from(f"<{(n - 2) // 4}I", pl, 2)
            if first + len(values) > len(self.config):
                return S.RANGE, b""
            self.config[first:first + len(values)] = values
            return S.OK, b""
        if cmd in (P.Cmd.READ_CONFIG, P.Cmd.READ_RESULTS):
            if n != P.REG_RANGE.size:
                return S.LENGTH, b""
            first, count = P.REG_RANGE.unpack(pl)
            regs = self.config if cmd == P.Cmd.READ_CONFIG else self.results
            if first + count > len(regs):
                return S.RANGE, b""
            return S.OK, struct.pack(f"<{count}I", *regs[first:first + count])
        if cmd in P.RUN_COMMANDS:
            if n != P.RUN_REQ.size:
                return S.LENGTH, b""
            (arg,) = P.RUN_REQ.unpack(pl)
            op = P.Op.INFERENCE if cmd == P.Cmd.RUN_INFERENCE else P.Op.STEPS
            self.last_op = int(op)
            self.op_error = self.engine(self, int(op), arg)
            return S.OK, b""
        raise AssertionError(cmd)   # every Cmd member is handled above

    def _region(self, rid: int) -> P.RegionInfo | None:
        for r in self.ident.regions:
            if r.id == rid:
                return r
        return None


def serve(model: LinkModel, host: str = "127.0.0.1", port: int = 0) -> tuple[int, Callable[[], None]]:
    """Serve `model` on a TCP port in a daemon thread (one client at a time); returns (port, stop)."""
    srv = socket.create_server((host, port))
    srv.settimeout(0.1)
    stop = threading.Event()
    lock = threading.Lock()

    def run() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(0.1)
                while not stop.is_set():
                    try:
                        data = conn.recv(65536)
                    except (TimeoutError, socket.timeout):
                        continue
                    except OSError:
                        break
                    if not data:
                        break
                    with lock:
                        reply = model.feed(data)
                    if reply:
                        conn.sendall(reply)

    t = threading.Thread(target=run, name="link-model", daemon=True)
    t.start()

    def close() -> None:
        stop.set()
        t.join(2)
        srv.close()

    return srv.getsockname()[1], close


class ModelTransport:
    """An in-process transport to a LinkModel (``model://``): what is written is answered at once."""

    def __init__(self, model: LinkModel | None = None, url: str = "model://") -> None:
        self.model = model or LinkModel()
        self.url = url
        self._in = bytearray()
        self.bytes_written = 0

    def write(self, data: bytes) -> None:
        self.bytes_written += len(data)
        self._in += self.model.feed(data)

    def read(self, max_bytes: int, timeout: float) -> bytes:
        out = bytes(self._in[:max_bytes])
        del self._in[:max_bytes]
        return out

    def reset_input(self) -> None:
        self._in.clear()

    def close(self) -> None:
        pass
