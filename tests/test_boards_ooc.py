"""boards/ooc: every registered block elaborates as `top`; the nextpnr report parser; one real OOC run (slow)."""
from __future__ import annotations

from pathlib import Path

import pytest

from ttzo.boards import ooc


@pytest.mark.parametrize("name", sorted(ooc.BLOCKS))
def test_every_block_elaborates_to_rtlil(tmp_path: Path, name: str) -> None:
    il = ooc.write_rtlil(name, tmp_path)
    text = il.read_text()
    assert "module \\top" in text and "attribute \\top 1" in text


def test_unknown_block_is_refused_with_the_known_names() -> None:
    with pytest.raises(SystemExit, match="signrge-update"):
        ooc.make_block("no-such-block")


def test_critical_path_sums_logic_and_routing() -> None:
    report = {"critical_paths": [{"path": [
        {"type": "clk-to-q", "delay": 1.5, "from": {"cell": "a", "port": "CLK"}, "to": {"cell": "a", "port": "Q"}},
        {"type": "routing", "delay": 2.25, "from": {"cell": "a", "port": "Q"}, "to": {"cell": "b", "port": "A"}},
        {"type": "setup", "delay": 0.5, "from": {"cell": "b", "port": "A"}, "to": {"cell": "b", "port": "D"}}]}]}
    cp = ooc._critical_path(report)
    assert cp == {"from": "a.CLK", "to": "b.D", "total_ns": 4.25, "logic_ns": 2.0, "routing_ns": 2.25}
    assert ooc._critical_path({}) == {}


@pytest.mark.slow
def test_stream_seeder_routes_out_of_context(tmp_path: Path) -> None:
    res = ooc.run_ooc("stream-seeder", tmp_path)
    assert res.fmax_mhz is not None and res.fmax_mhz > 20
    assert res.cells.get("TRELLIS_FF", 0) > 32 and res.critical_path["total_ns"] > 0
