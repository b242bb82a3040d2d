"""The ttzo wire protocol (version 1): frames, commands, error codes, region ids, identify payload.

One frame on the wire is ``END, SLIP(header + payload + crc16), END`` (RFC 1055 SLIP, END = 0xC0).
SLIP was chosen over COBS because both of its hardware halves are constant-size state machines
(a COBS encoder must look up to 254 bytes ahead, i.e. buffer a block); its data-dependent
overhead is measured by ``ttzo bench link`` (docs/protocol.md).  Header, little endian::

    u8 version | u8 command | u8 seq | u8 status | u16 length      (6 bytes)

Replies carry ``command | 0x80``, the request's ``seq`` and a status code (0 = OK).  The CRC is
CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, = ``binascii.crc_hqx(data, 0xFFFF)``) over header
and payload, appended big-endian, so the CRC run over a whole good frame leaves residue 0: the
hardware checks it without knowing where the frame ends.

The format itself (constants, command/status/region codes, payload layouts, CRC, identify record)
is ttzo.golden.protocol_spec, shared with the gateware; this module re-exports all of it and adds
the host-side codec (SLIP, frames, the incremental de-framer, the STATUS reply), so
``from ttzo.host import protocol as P`` gives the whole protocol.
"""
from __future__ import annotations

from dataclasses import dataclass

from ttzo.golden.protocol_spec import (  # noqa: F401  (re-exported: the whole protocol is P.*)
    VERSION, END, ESC, ESC_END, ESC_ESC, HEADER, HEADER_SIZE, CRC_SIZE, MIN_FRAME, REPLY_BIT, CRC_INIT, Cmd,
    Status, Region, Op, RUN_COMMANDS, ALLOWED_WHEN_BUSY, REGION_FLAG_WRITABLE, REGION_FLAG_READABLE,
    REGION_FLAG_BUSY_WRITABLE, accepted_while_busy,
    CAP_INFERENCE, CAP_STEPS, CAP_UART, CAP_STREAM, CAP_PINN, WRITE_HDR, READ_REQ, REG_FIRST, REG_RANGE, RUN_REQ,
    STATUS_REPLY, FORMAT_FIELDS, ProtocolError, crc16, RegionInfo, Identify, formats_of, _region_name,
)


# --- SLIP ---------------------------------------------------------------------------------------
def slip_escape(data: bytes) -> bytes:
    return data.replace(bytes([ESC]), bytes([ESC, ESC_ESC])).replace(bytes([END]), bytes([ESC, ESC_END]))


def slip_unescape(data: bytes) -> bytes:
    """Inverse of :func:`slip_escape`; raises ProtocolError on an ESC not followed by ESC_END/ESC_ESC."""
    out = bytearray()
    it = iter(data)
    for b in it:
        if b == ESC:
            nxt = next(it, None)
            if nxt == ESC_END:
                out.append(END)
            elif nxt == ESC_ESC:
                out.append(ESC)
            else:
                raise ProtocolError(f"bad SLIP escape 0xDB {nxt!r}")
        else:
            out.append(b)
    return bytes(out)


# --- frames -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Frame:
    """A decoded frame: header fields and payload."""

    command: int
    seq: int
    payload: bytes = b""
    status: int = 0
    version: int = VERSION

    @property
    def is_reply(self) -> bool:
        return bool(self.command & REPLY_BIT)

    def body(self) -> bytes:
        """Header + payload + CRC, before SLIP escaping."""
        if not 0 <= self.seq <= 255:
            raise ValueError(f"seq {self.seq} outside 0..255")
        if len(self.payload) > 0xFFFF:
            raise ValueError(f"payload of {len(self.payload)} bytes exceeds 65535")
        hdr = HEADER.pack(self.version, self.command, self.seq, self.status, len(self.payload))
        data = hdr + bytes(self.payload)
        return data + crc16(data).to_bytes(2, "big")

    def encode(self) -> bytes:
        """Line bytes: END, escaped body, END (the leading END flushes any garbage before it)."""
        return bytes([END]) + slip_escape(self.body()) + bytes([END])


def decode_body(body: bytes) -> Frame:
    """Check CRC and length of an unescaped body and split it into a Frame."""
    if len(body) < MIN_FRAME:
        raise ProtocolError(f"runt frame of {len(body)} bytes (minimum {MIN_FRAME})")
    if crc16(body) != 0:
        raise ProtocolError("CRC mismatch")
    version, command, seq, status, length = HEADER.unpack_from(body)
    if length != len(body) - MIN_FRAME:
        raise ProtocolError(f"header length {length} but {len(body) - MIN_FRAME} payload bytes")
    return Frame(command=command, seq=seq, payload=body[HEADER_SIZE:-CRC_SIZE], status=status, version=version)


class FrameSplitter:
    """Incremental SLIP de-framer: feed line bytes, get unescaped frame bodies (resyncs on END)."""

    def __init__(self, max_body: int = 1 << 17) -> None:
        self.buf = bytearray()
        self.max_body = max_body
        self.overflow = False

    def feed(self, data: bytes) -> list[bytes]:
        """Return the raw (still escaped) frames completed by `data`; empty frames are skipped."""
        frames = []
        parts = bytes(data).split(bytes([END]))
        for i, part in enumerate(parts):
            if not self.overflow:
                self.buf += part
                if len(self.buf) > 2 * self.max_body:   # garbage without END: drop, wait for the next END
                    self.overflow, self.buf = True, bytearray()
            if i < len(parts) - 1:
                if self.buf and not self.overflow:
                    frames.append(bytes(self.buf))
                self.buf, self.overflow = bytearray(), False
        return frames


@dataclass(frozen=True)
class BoardStatus:
    """Reply to STATUS."""

    busy: bool
    last_op: int
    op_error: int
    rx_ok: int
    rx_bad: int
    op_cycles: int

    @classmethod
    def decode(cls, data: bytes) -> "BoardStatus":
        if len(data) != STATUS_REPLY.size:
            raise ProtocolError(f"status payload of {len(data)} bytes, expected {STATUS_REPLY.size}")
        busy, op, err, _, ok, bad, cycles = STATUS_REPLY.unpack(data)
        return cls(bool(busy), op, err, ok, bad, cycles)

    def encode(self) -> bytes:
        return STATUS_REPLY.pack(int(self.busy), self.last_op, self.op_error, 0, self.rx_ok, self.rx_bad,
                                 self.op_cycles)


def status_name(code: int) -> str:
    try:
        return Status(code).name
    except ValueError:
        return f"status {code}"


def line_bytes(payload_len: int, escapes: int = 0) -> int:
    """Line bytes of one frame with `payload_len` payload bytes and `escapes` escaped body bytes."""
    return 2 + HEADER_SIZE + payload_len + CRC_SIZE + escapes
