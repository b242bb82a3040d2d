"""The ttzo wire protocol's format (version 1): the numbers and layouts both ends of the link agree on.

Command codes, status codes, region ids, operation codes, capability and region flags, the header
and payload layouts, the CRC, and the identify record (RegionInfo, Identify) that the gateware
serialises into its ROM and the host parses.  docs/protocol.md describes the protocol; this module
is its executable form.

It lives in golden/ because it is a specification every layer implements, like golden/formats.py's
number formats: the gateware (ttzo.rtl.cmdproc, framing, link_top, board_top) builds from it, the
host (ttzo.host.protocol adds the SLIP/frame codec and re-exports these names) and the reference
board (ttzo.sim.link_model) speak it, so rtl/ never imports host/.  No HDL and no I/O here.
"""
from __future__ import annotations

import binascii
import enum
import struct
from dataclasses import dataclass, field


VERSION = 1

END, ESC, ESC_END, ESC_ESC = 0xC0, 0xDB, 0xDC, 0xDD

HEADER = struct.Struct("<BBBBH")
HEADER_SIZE = HEADER.size          # 6
CRC_SIZE = 2
MIN_FRAME = HEADER_SIZE + CRC_SIZE  # decoded bytes of the shortest valid frame
REPLY_BIT = 0x80
CRC_INIT = 0xFFFF


class Cmd(enum.IntEnum):
    """Request commands (a reply carries ``cmd | REPLY_BIT``)."""

    IDENTIFY = 0x01       # -> identify payload
    WRITE_REGION = 0x02   # u8 region, u32 byte offset, data...
    READ_REGION = 0x03    # u8 region, u32 byte offset, u16 byte count -> data
    CONFIGURE = 0x04      # u16 first register, u32 values...
    READ_CONFIG = 0x05    # u16 first register, u16 count -> u32 values
    RUN_INFERENCE = 0x06  # u32 argument (e.g. number of samples); reply = started
    RUN_STEPS = 0x07      # u32 K training steps; reply = started
    STATUS = 0x08         # -> status payload (busy, last op, counters)
    READ_RESULTS = 0x09   # u16 first register, u16 count -> u32 values
    RESET = 0x0A          # abort the operation, clear config/results/counters; memories kept


class Status(enum.IntEnum):
    """Status byte of a reply.  Every non-zero status leaves the board's state unchanged."""

    OK = 0
    CRC = 1           # frame CRC mismatch (reply echoes the received seq; the host retransmits)
    FRAME = 2         # bad SLIP escape or frame longer than the board's buffer
    VERSION = 3       # protocol version differs (the reply carries the board's version)
    LENGTH = 4        # header length != payload bytes, or wrong payload size for the command
    COMMAND = 5       # unknown command
    REGION = 6        # unknown region id
    RANGE = 7         # offset/count outside the region or register file, misaligned, or too long
    READ_ONLY = 8     # write to a region the host may not write
    BUSY = 9          # an operation is running; only IDENTIFY, STATUS, READ_RESULTS, RESET allowed
    HEADER = 10       # reserved header field (status byte of a request) not zero


class Region(enum.IntEnum):
    """Memory region ids (the board lists the ones it has, with sizes, in IDENTIFY)."""

    PARAMS = 0    # flat parameter vector (golden TTNet.flatten order), weight/bias codes
    BATCH = 1     # input batch (MNIST pixel bytes, or PINN inputs)
    LABELS = 2    # class labels, one per sample
    NODES = 3     # sparse-grid node table (HJB loss)
    COLLOC = 4    # collocation points (HJB)
    OUTPUTS = 5   # network outputs of the last inference (read-only for the host)
    PROGRAM = 6   # TT-engine program words (descriptors; write-only), see docs/board.md
    LOG = 8       # per-forward-pass loss and correct count of the last operation (read-only)
    BATCH_NEXT = 9    # the other bank of a double-buffered BATCH (write-only, writable while busy)
    LABELS_NEXT = 10  # the other bank of a double-buffered LABELS (write-only, writable while busy)


class Op(enum.IntEnum):
    """Named operations the command processor starts (``op_code`` on the engine interface)."""

    NONE = 0
    INFERENCE = 1
    STEPS = 2


#: Commands that start an operation; a repeat of the previous request (same seq and command) is
#: answered from the stored status instead of running again (idempotent retransmission).
RUN_COMMANDS = (Cmd.RUN_INFERENCE, Cmd.RUN_STEPS)
#: Commands that are allowed while an operation runs (plus WRITE_REGION to a region flagged
#: REGION_FLAG_BUSY_WRITABLE: see :func:`accepted_while_busy`).
ALLOWED_WHEN_BUSY = (Cmd.IDENTIFY, Cmd.STATUS, Cmd.READ_RESULTS, Cmd.RESET)

REGION_FLAG_WRITABLE = 0x01
REGION_FLAG_READABLE = 0x02
#: The region may be written while an operation runs (the engine does not read it then): the
#: other bank of a double-buffered batch, so the host uploads batch k+1 while step k computes.
REGION_FLAG_BUSY_WRITABLE = 0x04

CAP_INFERENCE = 0x0001
CAP_STEPS = 0x0002
CAP_UART = 0x0004
CAP_STREAM = 0x0008
CAP_PINN = 0x0010        # the forward pass is the HJB residual loss (NODES/COLLOC regions, docs/board.md)

#: Payload layouts of the commands (little endian).
WRITE_HDR = struct.Struct("<BI")      # region, byte offset; data follows
READ_REQ = struct.Struct("<BIH")      # region, byte offset, byte count
REG_FIRST = struct.Struct("<H")       # CONFIGURE: first register; u32 values follow
REG_RANGE = struct.Struct("<HH")      # READ_CONFIG / READ_RESULTS: first, count
RUN_REQ = struct.Struct("<I")         # argument
STATUS_REPLY = struct.Struct("<BBBBIII")  # busy, last op, op error, reserved, rx_ok, rx_bad, op cycles

#: FixedConfig fields in identify order (golden/formats.py).
FORMAT_FIELDS = ("input", "weight", "bias", "state", "act", "loss")


class ProtocolError(Exception):
    """A frame that cannot be decoded (bad escape, CRC, length) or a reply that makes no sense."""


def crc16(data: bytes, crc: int = CRC_INIT) -> int:
    """CRC-16/CCITT-FALSE (check value crc16(b'123456789') == 0x29B1)."""
    return binascii.crc_hqx(data, crc)



# --- payloads -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class RegionInfo:
    """One memory region as the board describes it: id, word width, depth in words, flags."""

    id: int
    width: int          # bits per word, a multiple of 8 (8..32)
    depth: int          # words
    flags: int = REGION_FLAG_WRITABLE | REGION_FLAG_READABLE

    STRUCT = struct.Struct("<BBBxI")

    @property
    def word_bytes(self) -> int:
        return self.width // 8

    @property
    def size(self) -> int:
        """Bytes the region holds."""
        return self.depth * self.word_bytes

    @property
    def writable(self) -> bool:
        return bool(self.flags & REGION_FLAG_WRITABLE)

    @property
    def busy_writable(self) -> bool:
        """WRITE_REGION is not refused with BUSY while an operation runs (flag BUSY_WRITABLE)."""
        return bool(self.flags & REGION_FLAG_BUSY_WRITABLE)

    @property
    def name(self) -> str:
        try:
            return Region(self.id).name.lower()
        except ValueError:
            return f"region{self.id}"


@dataclass(frozen=True)
class Identify:
    """What the board reports about itself (reply to IDENTIFY)."""

    version: int = VERSION
    capabilities: int = 0
    max_payload: int = 1024
    clock_hz: int = 0
    uart_divisor: int = 0
    n_config: int = 0
    n_results: int = 0
    formats: tuple[tuple[int, int, bool], ...] = ()   # (bits, frac, signed) per FORMAT_FIELDS
    sine_bits: int = 0
    name: str = ""
    regions: tuple[RegionInfo, ...] = field(default_factory=tuple)

    FIXED = struct.Struct("<4sBBBBHHII")   # magic, version, n_regions, n_config, n_results,
    #                                        max_payload, capabilities, clock_hz, uart_divisor
    FORMAT = struct.Struct("<BbB")
    MAGIC = b"TTZO"
    NAME_BYTES = 16

    def encode(self) -> bytes:
        if len(self.formats) != len(FORMAT_FIELDS):
            raise ValueError(f"identify needs {len(FORMAT_FIELDS)} formats, got {len(self.formats)}")
        out = self.FIXED.pack(self.MAGIC, self.version, len(self.regions), self.n_config, self.n_results,
                              self.max_payload, self.capabilities, self.clock_hz, self.uart_divisor)
        for bits, frac, signed in self.formats:
            out += self.FORMAT.pack(bits, frac, int(signed))
        out += bytes([self.sine_bits])
        out += self.name.encode("ascii")[:self.NAME_BYTES].ljust(self.NAME_BYTES, b"\0")
        for r in self.regions:
            out += RegionInfo.STRUCT.pack(r.id, r.width, r.flags, r.depth)
        return out

    @classmethod
    def decode(cls, data: bytes) -> "Identify":
        try:
            magic, version, n_regions, n_config, n_results, max_payload, caps, clock, div = \
                cls.FIXED.unpack_from(data)
            if magic != cls.MAGIC:
                raise ProtocolError(f"identify payload starts with {magic!r}, not {cls.MAGIC!r}")
            pos = cls.FIXED.size
            formats = []
            for _ in FORMAT_FIELDS:
                bits, frac, signed = cls.FORMAT.unpack_from(data, pos)
                formats.append((bits, frac, bool(signed)))
                pos += cls.FORMAT.size
            sine_bits = data[pos]
            pos += 1
            name = data[pos:pos + cls.NAME_BYTES].rstrip(b"\0").decode("ascii", "replace")
            pos += cls.NAME_BYTES
            regions = []
            for _ in range(n_regions):
                rid, width, flags, depth = RegionInfo.STRUCT.unpack_from(data, pos)
                regions.append(RegionInfo(rid, width, depth, flags))
                pos += RegionInfo.STRUCT.size
        except (struct.error, IndexError) as exc:
            raise ProtocolError(f"identify payload of {len(data)} bytes is truncated: {exc}") from None
        if pos != len(data):
            raise ProtocolError(f"identify payload has {len(data) - pos} trailing bytes")
        return cls(version, caps, max_payload, clock, div, n_config, n_results, tuple(formats), sine_bits,
                   name, tuple(regions))

    def region(self, rid: int) -> RegionInfo:
        for r in self.regions:
            if r.id == rid:
                return r
        raise KeyError(f"board has no region {rid} ({_region_name(rid)}); it has "
                       f"{[r.name for r in self.regions]}")

    def fixed_config(self):
        """The board's formats as a golden FixedConfig."""
        from ttzo.golden.fixed import QFormat
        from ttzo.golden.formats import FixedConfig
        kw = {n: QFormat(b, f, s) for n, (b, f, s) in zip(FORMAT_FIELDS, self.formats)}
        return FixedConfig(sine_bits=self.sine_bits, **kw)

    def to_dict(self) -> dict:
        caps = [n for n, bit in (("inference", CAP_INFERENCE), ("steps", CAP_STEPS), ("uart", CAP_UART),
                                 ("stream", CAP_STREAM), ("pinn", CAP_PINN)) if self.capabilities & bit]
        fmts = {n: f"{'s' if s else 'u'}{b}.{f}" for n, (b, f, s) in zip(FORMAT_FIELDS, self.formats)}
        fmts["sine_bits"] = self.sine_bits
        return {
            "name": self.name, "protocol_version": self.version, "capabilities": caps,
            "max_payload": self.max_payload, "clock_hz": self.clock_hz, "uart_divisor": self.uart_divisor,
            "baud": (self.clock_hz // self.uart_divisor) if self.uart_divisor else None,
            "config_registers": self.n_config, "result_registers": self.n_results, "formats": fmts,
            "regions": [{"id": r.id, "name": r.name, "width_bits": r.width, "depth_words": r.depth,
                         "bytes": r.size, "writable": r.writable,
                         **({"writable_while_busy": True} if r.busy_writable else {})} for r in self.regions],
        }


def accepted_while_busy(cmd: int, payload: bytes, ident: Identify) -> bool:
    """Rule 6 of docs/protocol.md "Error handling": is a request spared the BUSY refusal while an
    operation runs?  IDENTIFY, STATUS, READ_RESULTS and RESET are; so is a WRITE_REGION whose payload
    holds the whole write header and names a region flagged REGION_FLAG_BUSY_WRITABLE (its offset,
    length and data are then checked as when idle).  Everything else is refused with BUSY.
    """
    if cmd in ALLOWED_WHEN_BUSY:
        return True
    if cmd != Cmd.WRITE_REGION or len(payload) < WRITE_HDR.size:
        return False
    return any(r.id == payload[0] and r.busy_writable for r in ident.regions)


def formats_of(cfg) -> tuple[tuple[tuple[int, int, bool], ...], int]:
    """(formats, sine_bits) of a golden FixedConfig, in identify order."""
    return tuple((getattr(cfg, n).bits, getattr(cfg, n).frac, getattr(cfg, n).signed)
                 for n in FORMAT_FIELDS), cfg.sine_bits



def _region_name(rid: int) -> str:
    try:
        return Region(rid).name.lower()
    except ValueError:
        return "unknown"
