"""The wire format lives in golden/protocol_spec.py: the gateware imports it, the host re-exports it.

Guards the layering golden -> rtl -> sim -> host for the protocol: no rtl module imports ttzo.host,
and ``ttzo.host.protocol`` hands out the very same objects as the spec (so ``P.Cmd`` on the host and
in the gateware are one enum, and an Identify built by either side is the same class).
"""
from __future__ import annotations

import ast
import types
from pathlib import Path

from ttzo.golden import protocol_spec as S
from ttzo.host import protocol as P

RTL = Path(__file__).resolve().parents[1] / "rtl"


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


def test_rtl_does_not_import_host() -> None:
    offenders = {p.name: sorted(m for m in _imports(p) if m.startswith("ttzo.host"))
                 for p in sorted(RTL.glob("*.py"))}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_host_protocol_reexports_the_spec() -> None:
    public = [n for n in dir(S) if not n.startswith("_") and not isinstance(getattr(S, n), types.ModuleType)
              and n not in ("annotations", "dataclass", "field")]
    assert public, "spec module lists nothing"
    for name in public:
        assert getattr(P, name) is getattr(S, name), name
    assert P.Identify is S.Identify and P.Cmd is S.Cmd and P.crc16(b"123456789") == 0x29B1


def test_busy_writable_flag_and_rule() -> None:
    """REGION_FLAG_BUSY_WRITABLE survives the identify record; while busy only the four read/abort
    commands and WRITE_REGION (whole header) to a flagged region pass the BUSY check."""
    flags = S.REGION_FLAG_WRITABLE | S.REGION_FLAG_BUSY_WRITABLE
    ident = S.Identify(formats=((8, 0, False),) * len(S.FORMAT_FIELDS), name="t",
                       regions=(S.RegionInfo(S.Region.BATCH, 8, 16), S.RegionInfo(S.Region.BATCH_NEXT, 8, 16, flags)))
    back = S.Identify.decode(ident.encode())
    assert back == ident and back.region(S.Region.BATCH_NEXT).busy_writable
    assert not back.region(S.Region.BATCH).busy_writable
    assert [r.get("writable_while_busy", False) for r in back.to_dict()["regions"]] == [False, True]
    W = S.WRITE_HDR.pack
    ok = [(c, b"") for c in S.ALLOWED_WHEN_BUSY] + [(S.Cmd.WRITE_REGION, W(S.Region.BATCH_NEXT, 0) + b"ab"),
                                                    (S.Cmd.WRITE_REGION, W(S.Region.BATCH_NEXT, 99))]  # range: checked later
    refused = [(S.Cmd.WRITE_REGION, W(S.Region.BATCH, 0) + b"ab"), (S.Cmd.WRITE_REGION, bytes([S.Region.BATCH_NEXT])),
               (S.Cmd.WRITE_REGION, W(7, 0) + b"a"), (S.Cmd.READ_REGION, S.READ_REQ.pack(S.Region.BATCH_NEXT, 0, 1)),
               (S.Cmd.CONFIGURE, S.REG_FIRST.pack(0)), (S.Cmd.RUN_STEPS, S.RUN_REQ.pack(1)), (0x7F, b"")]
    assert all(S.accepted_while_busy(c, p, ident) for c, p in ok)
    assert not any(S.accepted_while_busy(c, p, ident) for c, p in refused)
