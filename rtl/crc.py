"""CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, MSB first), one byte per clock.

The same CRC as ``binascii.crc_hqx(data, 0xFFFF)`` on the host (ttzo.host.protocol.crc16).  A
receiver runs it over the whole frame including the two big-endian CRC bytes and checks for
residue 0, so it needs no knowledge of where the payload ends.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Value

POLY = 0x1021
INIT = 0xFFFF


def crc16_update(crc: Value, byte: Value) -> Value:
    """Next CRC after `byte` (combinational: the bit-serial LFSR unrolled eight times)."""
    bits = [crc[i] for i in range(16)]
    for k in range(7, -1, -1):
        fb = bits[15] ^ byte[k]
        shifted = [0] + bits[:15]
        bits = [(shifted[i] ^ fb) if (POLY >> i) & 1 else shifted[i] for i in range(16)]
    return Cat(*bits)
