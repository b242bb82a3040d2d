"""Board driver: `Board.open(url)` speaks the ttzo protocol (host/protocol.py) over any transport.

Stop-and-wait: one request in flight, replies matched by sequence number.  A lost or corrupted
reply (timeout, CRC error) or a board-side CRC error is answered by retransmitting the SAME frame
(same seq); the board executes reads/writes again (they are idempotent) and answers a repeated
RUN from its record instead of running again.  A board that never answers, answers with our own
bytes (loop://) or speaks another protocol version raises a BoardError that says so.
"""
from __future__ import annotations

import struct
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from . import protocol as P
from .transport import Transport, open_transport


class BoardError(Exception):
    """Base of the driver's errors (message names the port and what went wrong)."""


class BoardAbsent(BoardError):
    """No reply after all retries."""


class VersionMismatch(BoardError):
    """The board answered with another protocol version."""


class CommandError(BoardError):
    """The board answered a request with an error status."""

    def __init__(self, cmd: int, status: int, url: str) -> None:
        self.cmd, self.status = cmd, status
        super().__init__(f"{url}: board refused {_cmd_name(cmd)} with {P.status_name(status)}")


def _cmd_name(cmd: int) -> str:
    try:
        return P.Cmd(cmd).name
    except ValueError:
        return f"command 0x{cmd:02x}"


@dataclass
class LinkStats:
    """What the driver did on the wire (for benchmarks and tests)."""

    requests: int = 0
    retransmits: int = 0
    bad_replies: int = 0        # replies that failed CRC/length checks
    stale_replies: int = 0      # well-formed frames for another seq/command (or our own echo)
    bytes_out: int = 0
    bytes_in: int = 0


class Board:
    """A connected board.  Use :meth:`open`; close with :meth:`close` or a ``with`` block."""

    def __init__(self, transport: Transport, timeout: float = 0.5, retries: int = 3,
                 baudrate: int | None = None) -> None:
        self.t = transport
        self.url = getattr(transport, "url", "?")
        self.timeout = timeout
        self.retries = retries
        self.baudrate = baudrate
        self.stats = LinkStats()
        self._seq = int(time.monotonic_ns()) & 0xFF   # a fresh session rarely repeats the board's last seq
        self._splitter = P.FrameSplitter()
        self.info: P.Identify | None = None

    # --- opening ---------------------------------------------------------------------------------
    @classmethod
    def open(cls, url: str, baudrate: int = 115200, timeout: float = 0.5, retries: int = 3) -> "Board":
        """Open `url` (pyserial URL or xdma://), identify the board and check its protocol version."""
        serial_like = not url.startswith(("xdma://", "socket://", "loop://", "model://"))
        board = cls(open_transport(url, baudrate), timeout, retries, baudrate if serial_like else None)
        try:
            board.identify()
        except BaseException:
            board.close()
            raise
        return board

    def close(self) -> None:
        self.t.close()

    def __enter__(self) -> "Board":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the request/reply engine ----------------------------------------------------------------
    def request(self, cmd: int, payload: bytes = b"") -> P.Frame:
        """Send one request and return its OK reply (retransmitting as the module docstring says)."""
        self._seq = (self._seq + 1) & 0xFF
        seq = self._seq
        line = P.Frame(cmd, seq, payload).encode()
        self.stats.requests += 1
        timeout = self.timeout + self._wire_time(len(line) + P.line_bytes(self._max_reply()))
        echoed = False
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats.retransmits += 1
            self.t.write(line)
            self.stats.bytes_out += len(line)
            reply, echo = self._await(cmd, seq, timeout)
            echoed |= echo
            if reply is None or reply.status == P.Status.CRC:
                continue
            if reply.version != P.VERSION:
                raise VersionMismatch(f"{self.url}: board speaks protocol version {reply.version}, this host "
                                      f"speaks version {P.VERSION}; update the host or the bitstream")
            if reply.status != P.Status.OK:
                raise CommandError(cmd, reply.status, self.url)
            return reply
        hint = ("the port returned our own request (a loopback, not a board)" if echoed else
                "is the board connected and configured with the ttzo bitstream, at this port and baud rate?")
        raise BoardAbsent(f"{self.url}: no reply to {_cmd_name(cmd)} after {self.retries + 1} attempts "
                          f"(timeout {timeout:.2f} s each); {hint}")

    def _await(self, cmd: int, seq: int, timeout: float) -> tuple[P.Frame | None, bool]:
        deadline = time.monotonic() + timeout
        echo = False
        while True:
            left = deadline - time.monotonic()
            data = self.t.read(65536, max(left, 0.0))   # at least one look, even when descheduled past the deadline
            if not data and left <= 0:
                return None, echo
            self.stats.bytes_in += len(data)
            for raw in self._splitter.feed(data):
                try:
                    frame = P.decode_body(P.slip_unescape(raw))
                except P.ProtocolError:
                    self.stats.bad_replies += 1
                    return None, echo          # corrupted reply: retransmit now instead of waiting
                if frame.seq == seq and frame.command == cmd | P.REPLY_BIT:
                    return frame, echo
                if frame.seq == seq and frame.command == cmd:
                    echo = True
                self.stats.stale_replies += 1

    def _max_reply(self) -> int:
        return self.info.max_payload if self.info else 256

    def _wire_time(self, nbytes: int) -> float:
        return nbytes * 10 / self.baudrate if self.baudrate else 0.0

    # --- commands --------------------------------------------------------------------------------
    def identify(self) -> P.Identify:
        self.info = P.Identify.decode(self.request(P.Cmd.IDENTIFY).payload)
        return self.info

    def region(self, rid: int) -> P.RegionInfo:
        assert self.info is not None
        return self.info.region(rid)

    def write_region(self, rid: int, data: bytes, offset: int = 0) -> None:
        """Write `data` at byte `offset` of region `rid`, in frames of at most max_payload bytes."""
        r = self.region(rid)
        self._check_span(r, offset, len(data))
        chunk = (self.info.max_payload - P.WRITE_HDR.size) // r.word_bytes * r.word_bytes
        for pos in range(0, len(data), chunk):
            part = data[pos:pos + chunk]
            self.request(P.Cmd.WRITE_REGION, P.WRITE_HDR.pack(rid, offset + pos) + bytes(part))

    def read_region(self, rid: int, count: int | None = None, offset: int = 0) -> bytes:
        """`count` bytes (default: the rest of the region) from byte `offset` of region `rid`."""
        r = self.region(rid)
        count = r.size - offset if count is None else count
        self._check_span(r, offset, count)
        chunk = self.info.max_payload // r.word_bytes * r.word_bytes
        out = bytearray()
        for pos in range(0, count, chunk):
            n = min(chunk, count - pos)
            reply = self.request(P.Cmd.READ_REGION, P.READ_REQ.pack(rid, offset + pos, n))
            if len(reply.payload) != n:
                raise BoardError(f"{self.url}: asked for {n} bytes of {r.name}, got {len(reply.payload)}")
            out += reply.payload
        return bytes(out)

    def write_words(self, rid: int, codes: Sequence[int] | np.ndarray, offset: int = 0) -> None:
        """Write integer codes (two's complement, region word width) starting at word `offset`."""
        r = self.region(rid)
        a = np.asarray(codes, dtype=np.int64).ravel()
        lo, hi = -(1 << (r.width - 1)), (1 << r.width) - 1
        if a.size and (a.min() < lo or a.max() > hi):
            raise ValueError(f"codes outside {r.width}-bit range for region {r.name}: "
                             f"min {a.min()}, max {a.max()}")
        self.write_region(rid, words_to_bytes(a, r.width), offset * r.word_bytes)

    def read_words(self, rid: int, count: int | None = None, offset: int = 0, signed: bool = True) -> np.ndarray:
        r = self.region(rid)
        count = r.depth - offset if count is None else count
        return bytes_to_words(self.read_region(rid, count * r.word_bytes, offset * r.word_bytes), r.width, signed)

    # --- conveniences for the training loop --------------------------------------------------------
    def load_params(self, codes: Sequence[int] | np.ndarray) -> None:
        """The flat parameter codes (golden TTNet.flatten order) into region PARAMS from word 0."""
        self.write_words(P.Region.PARAMS, codes)

    def read_params(self, n: int) -> np.ndarray:
        """The first `n` parameter codes (signed) from region PARAMS."""
        return self.read_words(P.Region.PARAMS, n, signed=True)

    def load_batch(self, inputs: np.ndarray, labels: np.ndarray | None = None) -> None:
        """A batch of input codes into BATCH (bytes for 8-bit regions) and, if given, labels into LABELS."""
        r = self.region(P.Region.BATCH)
        self.write_words(P.Region.BATCH, np.asarray(inputs).ravel()) if r.width > 8 else \
            self.write_region(P.Region.BATCH, np.asarray(inputs, dtype=np.uint8).tobytes())
        if labels is not None:
            self.write_region(P.Region.LABELS, np.asarray(labels, dtype=np.uint8).tobytes())

    def load_table(self, rid: int, codes: Sequence[int] | np.ndarray) -> None:
        """A node table (NODES) or collocation points (COLLOC) as integer codes from word 0."""
        self.write_words(rid, codes)

    def load_node_table(self, table) -> int:
        """A fixed-point node table (golden.stein_fixed.TableCodes) into NODES: its body words in
        golden/nodetable.py's record layout [delta_1..D, w, a_1..D, b], int32 codes; returns J nodes."""
        self.write_words(P.Region.NODES, np.asarray(table.body_words(), dtype=np.int64))
        return table.count

    def load_points(self, codes: np.ndarray) -> int:
        """Collocation points (P, D) as input-format codes into COLLOC, point p coordinate i at word
        p*D + i; returns P."""
        a = np.asarray(codes, dtype=np.int64)
        if a.ndim != 2:
            raise ValueError(f"collocation points must be a (points, dim) array of codes, got shape {a.shape}")
        self.write_words(P.Region.COLLOC, a.reshape(-1))
        return int(a.shape[0])

    def configure(self, first: int, values: Sequence[int]) -> None:
        vals = [int(v) & 0xFFFFFFFF for v in values]
        self.request(P.Cmd.CONFIGURE, P.REG_FIRST.pack(first) + struct.pack(f"<{len(vals)}I", *vals))

    def read_config(self, first: int = 0, count: int | None = None) -> list[int]:
        count = self.info.n_config - first if count is None else count
        return list(struct.unpack(f"<{count}I", self.request(P.Cmd.READ_CONFIG, P.REG_RANGE.pack(first, count))
                                  .payload))

    def read_results(self, first: int = 0, count: int | None = None) -> list[int]:
        count = self.info.n_results - first if count is None else count
        return list(struct.unpack(f"<{count}I", self.request(P.Cmd.READ_RESULTS, P.REG_RANGE.pack(first, count))
                                  .payload))

    def status(self) -> P.BoardStatus:
        return P.BoardStatus.decode(self.request(P.Cmd.STATUS).payload)

    def reset(self) -> None:
        self.request(P.Cmd.RESET)

    def run_inference(self, arg: int = 0, wait: bool = True, timeout: float = 60.0) -> P.BoardStatus:
        self.request(P.Cmd.RUN_INFERENCE, P.RUN_REQ.pack(arg))
        return self.wait_idle(timeout) if wait else self.status()

    def run_steps(self, k: int, wait: bool = True, timeout: float = 600.0) -> P.BoardStatus:
        """Start K training steps; with `wait`, poll STATUS until the board is idle again."""
        if not 0 <= k <= 0xFFFFFFFF:
            raise ValueError(f"steps {k} outside 0..2**32-1")
        self.request(P.Cmd.RUN_STEPS, P.RUN_REQ.pack(k))
        return self.wait_idle(timeout) if wait else self.status()

    def wait_idle(self, timeout: float, poll: float = 0.01) -> P.BoardStatus:
        end = time.monotonic() + timeout
        while True:
            st = self.status()
            if not st.busy:
                if st.op_error:
                    raise BoardError(f"{self.url}: operation {st.last_op} ended with engine error {st.op_error}")
                return st
            if time.monotonic() > end:
                raise BoardError(f"{self.url}: operation {st.last_op} still running after {timeout} s")
            time.sleep(poll)

    def _check_span(self, r: P.RegionInfo, offset: int, count: int) -> None:
        if offset < 0 or count < 0 or offset + count > r.size or offset % r.word_bytes or count % r.word_bytes:
            raise ValueError(f"{self.url}: bytes {offset}..{offset + count} are not whole {r.width}-bit words "
                             f"inside region {r.name} ({r.size} bytes)")


def words_to_bytes(codes: np.ndarray, width: int) -> bytes:
    """Little-endian `width`-bit words (two's complement for negative codes)."""
    nb = width // 8
    u = np.asarray(codes, dtype=np.int64) & ((1 << width) - 1)
    return (u[:, None] >> (8 * np.arange(nb))[None, :] & 0xFF).astype(np.uint8).tobytes()


def bytes_to_words(data: bytes, width: int, signed: bool = True) -> np.ndarray:
    nb = width // 8
    b = np.frombuffer(data, dtype=np.uint8).astype(np.int64).reshape(-1, nb)
    u = (b << (8 * np.arange(nb))[None, :]).sum(axis=1)
    if signed:
        u = np.where(u >= 1 << (width - 1), u - (1 << width), u)
    return u
