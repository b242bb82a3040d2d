"""Wire protocol: CRC known answers, SLIP round trips, frame decode, resync after garbage, identify."""
from __future__ import annotations

import binascii

import pytest
from hypothesis import given, settings, strategies as st

from ttzo.host import protocol as P
from ttzo.sim.link_model import default_identify


def test_crc_known_answer():
    # CRC-16/CCITT-FALSE check value from the CRC catalogue (reveng): 0x29B1 for "123456789".
    assert P.crc16(b"123456789") == 0x29B1


def _crc_bitwise(data: bytes) -> int:
    """Independent bit-serial CRC-16 (poly 0x1021, init 0xFFFF, MSB first)."""
    crc = 0xFFFF
    for byte in data:
        for i in range(7, -1, -1):
            fb = ((crc >> 15) ^ (byte >> i)) & 1
            crc = ((crc << 1) & 0xFFFF) ^ (0x1021 if fb else 0)
    return crc


@given(st.binary(max_size=300))
def test_crc_matches_bitwise_and_residue_zero(data):
    c = P.crc16(data)
    assert c == _crc_bitwise(data)
    assert P.crc16(data + c.to_bytes(2, "big")) == 0


@given(st.binary(max_size=500))
def test_slip_round_trip_and_no_end_inside(data):
    esc = P.slip_escape(data)
    assert P.END not in esc
    assert P.slip_unescape(esc) == data


def test_slip_bad_escape():
    with pytest.raises(P.ProtocolError, match="escape"):
        P.slip_unescape(bytes([P.ESC, 0x00]))


@given(cmd=st.integers(0, 255), seq=st.integers(0, 255), status=st.integers(0, 255),
       payload=st.binary(max_size=300))
def test_frame_round_trip(cmd, seq, status, payload):
    f = P.Frame(cmd, seq, payload, status)
    line = f.encode()
    assert line[0] == P.END and line[-1] == P.END and P.END not in line[1:-1]
    (raw,) = P.FrameSplitter().feed(line)
    assert P.decode_body(P.slip_unescape(raw)) == f


@settings(max_examples=200)
@given(garbage=st.binary(max_size=200), payload=st.binary(max_size=64), split=st.integers(1, 50))
def test_resync_after_garbage(garbage, payload, split):
    """Garbage before a frame never hides it: the frame's own leading END resynchronises."""
    f = P.Frame(P.Cmd.WRITE_REGION, 7, payload)
    line = garbage + f.encode()
    sp = P.FrameSplitter()
    raws = []
    for i in range(0, len(line), split):          # any chunking of the byte stream
        raws += sp.feed(line[i:i + split])
    good = []
    for r in raws:
        try:
            good.append(P.decode_body(P.slip_unescape(r)))
        except P.ProtocolError:
            pass
    assert good[-1] == f


@given(st.binary(min_size=P.MIN_FRAME, max_size=64), st.integers(0, 8 * 64 - 1))
def test_single_bit_flip_detected(payload, bit):
    body = P.Frame(1, 2, payload).body()
    bit %= 8 * len(body)
    bad = bytearray(body)
    bad[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(P.ProtocolError):
        P.decode_body(bytes(bad))


def test_decode_rejects_runt_and_length():
    with pytest.raises(P.ProtocolError, match="runt"):
        P.decode_body(b"\x01\x02\x03")
    hdr = P.HEADER.pack(1, 1, 0, 0, 5)      # claims 5 payload bytes, has 0
    body = hdr + P.crc16(hdr).to_bytes(2, "big")
    with pytest.raises(P.ProtocolError, match="length"):
        P.decode_body(body)


def test_identify_round_trip_and_dict():
    ident = default_identify()
    again = P.Identify.decode(ident.encode())
    assert again == ident
    d = again.to_dict()
    assert d["formats"]["weight"] == "s16.13" and d["formats"]["input"] == "u8.8"
    assert {r["name"] for r in d["regions"]} >= {"params", "batch", "labels", "nodes", "colloc"}
    assert again.fixed_config() == __import__("ttzo.golden.formats", fromlist=["x"]).DEFAULT_CONFIG
    with pytest.raises(P.ProtocolError, match="truncated"):
        P.Identify.decode(ident.encode()[:-3])
    with pytest.raises(P.ProtocolError, match="magic|TTZO"):
        P.Identify.decode(b"XXXX" + ident.encode()[4:])


def test_crc_is_binascii():
    assert P.crc16(b"abc") == binascii.crc_hqx(b"abc", 0xFFFF)
