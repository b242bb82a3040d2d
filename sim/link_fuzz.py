"""Fuzz cases for the link: malformed, unknown and out-of-range requests, plus harmless probes.

Every case is line bytes to send and a category name.  Mutating commands (WRITE_REGION,
CONFIGURE, RUN_*, RESET) only ever appear broken (bad CRC, bad escape, wrong length, out of
range, unknown region, read-only region, wrong version ...), so a correct board answers each with
an error or drops it, and its memories and registers stay as they were.  Valid read-only
requests (IDENTIFY, STATUS, READ_REGION, READ_CONFIG) are mixed in as resynchronisation probes.
"""
from __future__ import annotations

import random
import struct
from typing import Iterator

from ttzo.host import protocol as P

CATEGORIES = ("random_bytes", "bit_flips", "truncated", "wrong_length", "unknown_command", "out_of_range",
              "bad_header", "too_long", "bad_escape", "probe")


def _raw(body: bytes, fix_crc: bool = True) -> bytes:
    if fix_crc:
        body = body + P.crc16(body).to_bytes(2, "big")
    return bytes([P.END]) + P.slip_escape(body) + bytes([P.END])


class Fuzzer:
    """Deterministic (seeded) generator of fuzz cases for a board described by `ident`.

    A design-specific fuzzer subclasses it: it lists more names in ``categories`` and builds
    those cases in :meth:`extra_case` (sim/board_fuzz.py adds the trainer's bad configurations and
    refused operations).  The base categories draw the same random numbers either way, so a seed
    gives the same cases as before.
    """

    categories: tuple[str, ...] = CATEGORIES

    def __init__(self, ident: P.Identify, seed: int = 0) -> None:
        self.ident = ident
        self.rng = random.Random(seed)
        self.seq = 0

    def _seq(self) -> int:
        self.seq = (self.seq + 1) & 0xFF
        return self.seq

    def _valid_mutating(self) -> bytes:
        """Body (header + payload + CRC) of a VALID state-changing request (only ever sent broken)."""
        r = self.rng
        writable = [g for g in self.ident.regions if g.writable]
        kind = r.randrange(4)
        if kind == 0 and writable:
            g = r.choice(writable)
            n = r.randrange(1, min(g.depth, 16) + 1)
            off = r.randrange(0, g.depth - n + 1) * g.word_bytes
            pl = P.WRITE_HDR.pack(g.id, off) + bytes(r.randrange(256) for _ in range(n * g.word_bytes))
            return P.Frame(P.Cmd.WRITE_REGION, self._seq(), pl).body()
        if kind == 1:
            first = r.randrange(self.ident.n_config)
            vals = [r.getrandbits(32) for _ in range(r.randrange(1, self.ident.n_config - first + 1))]
            return P.Frame(P.Cmd.CONFIGURE, self._seq(), struct.pack(f"<H{len(vals)}I", first, *vals)).body()
        if kind == 2:
            cmd = r.choice(P.RUN_COMMANDS)
            return P.Frame(cmd, self._seq(), P.RUN_REQ.pack(r.randrange(1, 50))).body()
        return P.Frame(P.Cmd.RESET, self._seq()).body()

    def case(self) -> tuple[str, bytes]:
        r = self.rng
        cat = r.choice(self.categories)
        body = self._valid_mutating()
        if cat not in CATEGORIES:
            return cat, self.extra_case(cat)
        if cat == "random_bytes":
            return cat, bytes(r.randrange(256) for _ in range(r.randrange(0, 80)))
        if cat == "bit_flips":
            line = bytearray(_raw(body, fix_crc=False))
            for pos in r.sample(range(8, 8 * (len(line) - 1)), r.randrange(1, 4)):   # distinct bits
                line[pos // 8] ^= 1 << (pos % 8)
            return cat, bytes(line)
        if cat == "truncated":
            line = _raw(body, fix_crc=False)
            cut = r.randrange(1, len(line) - 1)
            # either stop mid-frame (the next case's leading END resynchronises) or close it early
            return cat, line[:cut] + (bytes([P.END]) if r.random() < 0.5 else b"")
        if cat == "wrong_length":
            hdr = bytearray(body[:P.HEADER_SIZE])
            true_len = len(body) - P.MIN_FRAME
            wrong = r.choice([l for l in (0, 1, true_len - 1, true_len + 1, r.randrange(65536)) if l != true_len])
            hdr[4:6] = struct.pack("<H", wrong & 0xFFFF)
            return cat, _raw(bytes(hdr) + body[P.HEADER_SIZE:-P.CRC_SIZE])
        if cat == "unknown_command":
            known = {int(c) for c in P.Cmd}
            cmd = r.choice([c for c in range(256) if c not in known])
            pl = bytes(r.randrange(256) for _ in range(r.randrange(0, 20)))
            return cat, P.Frame(cmd, self._seq(), pl).encode()
        if cat == "out_of_range":
            return cat, self._out_of_range()
        if cat == "bad_header":
            hdr = bytearray(body[:P.HEADER_SIZE])
            if r.random() < 0.5:
                hdr[0] = r.choice([v for v in range(256) if v != P.VERSION])
            else:
                hdr[3] = r.randrange(1, 256)
            return cat, _raw(bytes(hdr) + body[P.HEADER_SIZE:-P.CRC_SIZE])
        if cat == "too_long":
            extra = r.randrange(1, 40)
            pl = P.WRITE_HDR.pack(self.ident.regions[0].id, 0) + bytes(self.ident.max_payload - 5 + extra)
            return cat, P.Frame(P.Cmd.WRITE_REGION, self._seq(), pl).encode()
        if cat == "bad_escape":
            line = bytearray(_raw(body, fix_crc=False))
            i = r.randrange(1, len(line) - 1)
            line[i:i] = bytes([P.ESC, r.choice([b for b in range(256) if b not in (P.ESC_END, P.ESC_ESC, P.END)])])
            return cat, bytes(line)
        return cat, self._probe()

    def extra_case(self, cat: str) -> bytes:
        """Line bytes of a design-specific category (subclasses); the base fuzzer has none."""
        raise ValueError(f"unknown fuzz category {cat!r}")

    def _out_of_range(self) -> bytes:
        r = self.rng
        regs = self.ident.regions
        ids = {g.id for g in regs}
        kind = r.randrange(7)
        seq = self._seq()
        if kind == 0:                                  # unknown region
            rid = r.choice([v for v in range(256) if v not in ids])
            return P.Frame(P.Cmd.WRITE_REGION, seq, P.WRITE_HDR.pack(rid, 0) + b"\0\0\0\0").encode()
        if kind == 1:                                  # write past the end / huge offset
            g = r.choice(regs)
            off = r.choice([g.size, g.size - g.word_bytes * 0 + r.randrange(1, 1 << 20) * g.word_bytes,
                            0xFFFFFFFF & -g.word_bytes])
            return P.Frame(P.Cmd.WRITE_REGION, seq, P.WRITE_HDR.pack(g.id, off) + bytes(2 * g.word_bytes)).encode()
        if kind == 2:                                  # misaligned write
            wide = [g for g in regs if g.word_bytes > 1] or list(regs)
            g = r.choice(wide)
            off = r.randrange(g.depth) * g.word_bytes + (1 if g.word_bytes > 1 else g.size)
            return P.Frame(P.Cmd.WRITE_REGION, seq, P.WRITE_HDR.pack(g.id, off) + bytes(g.word_bytes)).encode()
        if kind == 3:                                  # read out of range or longer than a frame
            g = r.choice(regs)
            off, cnt = r.choice([(g.size, g.word_bytes), (0, g.size + g.word_bytes),
                                 (0, (self.ident.max_payload // g.word_bytes + 1) * g.word_bytes)])
            cnt &= 0xFFFF                              # the count field is u16 (regions may be larger)
            if cnt <= self.ident.max_payload and off + cnt <= g.size:
                off = g.size
            return P.Frame(P.Cmd.READ_REGION, seq, P.READ_REQ.pack(g.id, off, cnt)).encode()
        if kind == 4:                                  # configure beyond the register file
            first = r.randrange(self.ident.n_config - 1, 300)
            n = max(1, self.ident.n_config - first + 1)
            return P.Frame(P.Cmd.CONFIGURE, seq, struct.pack(f"<H{n}I", first, *([0xA5A5A5A5] * n))).encode()
        if kind == 5:                                  # read registers beyond the file
            cmd = r.choice([P.Cmd.READ_CONFIG, P.Cmd.READ_RESULTS])
            n = self.ident.n_config if cmd == P.Cmd.READ_CONFIG else self.ident.n_results
            first = r.randrange(0, n + 3)
            return P.Frame(cmd, seq, P.REG_RANGE.pack(first, max(0, n - first + 1 + r.randrange(3)))).encode()
        ro = [g for g in regs if not g.writable]       # write to a read-only region
        if ro:
            g = r.choice(ro)
            return P.Frame(P.Cmd.WRITE_REGION, seq, P.WRITE_HDR.pack(g.id, 0) + bytes(g.word_bytes)).encode()
        return P.Frame(P.Cmd.WRITE_REGION, seq, b"\x00").encode()

    def _probe(self) -> bytes:
        r = self.rng
        seq = self._seq()
        kind = r.randrange(4)
        if kind == 0:
            return P.Frame(P.Cmd.IDENTIFY, seq).encode()
        if kind == 1:
            return P.Frame(P.Cmd.STATUS, seq).encode()
        if kind == 2:
            g = r.choice(self.ident.regions)
            n = r.randrange(1, min(g.depth, 8) + 1)
            off = r.randrange(0, g.depth - n + 1) * g.word_bytes
            return P.Frame(P.Cmd.READ_REGION, seq, P.READ_REQ.pack(g.id, off, n * g.word_bytes)).encode()
        first = r.randrange(self.ident.n_config)
        return P.Frame(P.Cmd.READ_CONFIG, seq, P.REG_RANGE.pack(first, self.ident.n_config - first)).encode()

    def cases(self, n: int) -> Iterator[tuple[str, bytes]]:
        for _ in range(n):
            yield self.case()


def preload(ident: P.Identify, seed: int = 1) -> list[bytes]:
    """Valid requests that fill every writable region and the config registers with a known pattern."""
    rng = random.Random(seed)
    out, seq = [], 100
    for g in ident.regions:
        if not g.writable:
            continue
        data = bytes(rng.randrange(256) for _ in range(g.size))
        chunk = (ident.max_payload - P.WRITE_HDR.size) // g.word_bytes * g.word_bytes
        for pos in range(0, g.size, chunk):
            seq = (seq + 1) & 0xFF
            out.append(P.Frame(P.Cmd.WRITE_REGION, seq, P.WRITE_HDR.pack(g.id, pos) + data[pos:pos + chunk]).encode())
    vals = [rng.getrandbits(32) for _ in range(ident.n_config)]
    out.append(P.Frame(P.Cmd.CONFIGURE, (seq + 1) & 0xFF, struct.pack(f"<H{len(vals)}I", 0, *vals)).encode())
    return out


def readback(ident: P.Identify, seq0: int = 200) -> list[bytes]:
    """Requests that read every region and the config registers back."""
    out, seq = [], seq0
    for g in ident.regions:
        chunk = ident.max_payload // g.word_bytes * g.word_bytes
        for pos in range(0, g.size, chunk):
            seq = (seq + 1) & 0xFF
            out.append(P.Frame(P.Cmd.READ_REGION, seq, P.READ_REQ.pack(g.id, pos, min(chunk, g.size - pos))).encode())
    out.append(P.Frame(P.Cmd.READ_CONFIG, (seq + 1) & 0xFF, P.REG_RANGE.pack(0, ident.n_config)).encode())
    return out
