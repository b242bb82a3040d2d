"""Design-space sweeps: spec parsing, run identity, resumption after a kill, failures, summary, Pareto front.

The kill/resume tests run `ttzo sweep` in a child process (its own session), kill that whole
session with SIGKILL after the first point finished, rerun the same command, and count how
often each point's work completed through marker files the `probe` step writes outside the
sweep folder: each point must have completed exactly once and the summary must be complete.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ttzo.host.sweep import SpecError, parse_spec, run_sweep
from ttzo.host.sweep.plot import pareto_front
from ttzo.host.sweep.store import SweepStore

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "examples" / "sweeps" / "tiny.yaml"


def _probe_spec(markers: Path, slow: float = 5.0, fail=None, fast: float | None = None) -> dict:
    """2x2 probe grid; b=10 points take `fast` s, b=20 points `slow` s, so a kill lands while they run."""
    fast = min(1.0, slow) if fast is None else fast
    return {"name": "t", "axes": {"a": [1, 2], "b": [{"b": 10, "seconds": fast}, {"b": 20, "seconds": slow}]},
            "fixed": {"marker_dir": str(markers), "fail": fail}, "steps": {"probe": {}}}


def _markers(markers: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for p in markers.glob("*.done") if markers.exists() else []:
        key = p.name.rsplit("-", 1)[0]
        counts[key] = counts.get(key, 0) + 1
    return counts


def _kill_session(sid: int) -> None:
    """SIGKILL every process of the session we created for the sweep (driver, Ray daemons, workers)."""
    for _ in range(50):
        alive = []
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    zombie = open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"
                    if os.getsid(int(d)) == sid and not zombie:
                        alive.append(int(d))
                except (OSError, IndexError):
                    pass
        if not alive:
            return
        for pid in alive:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    raise AssertionError(f"processes of session {sid} survive SIGKILL")


def _sweep_cmd(spec: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "ttzo.host.cli", "sweep", str(spec), "--out", str(out), *extra]


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)  # always a private local instance
    return env


def _kill_after_first_point_then_resume(tmp_path: Path, extra: list[str]) -> None:
    import yaml
    markers, out, spec = tmp_path / "markers", tmp_path / "out", tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(_probe_spec(markers)))
    proc = subprocess.Popen(_sweep_cmd(spec, out, *extra), start_new_session=True, env=_child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 180
        while not list(out.glob("runs/*/DONE")):
            assert proc.poll() is None, f"sweep ended before the first point finished:\n{proc.stdout.read()}"
            assert time.time() < deadline, "no point finished within 180 s"
            time.sleep(0.05)
    finally:
        _kill_session(proc.pid)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    first = _markers(markers)
    assert sum(first.values()) == 1, f"expected exactly one finished point at the kill, got {first}"
    assert len(list(out.glob("runs/*/DONE"))) == 1

    done = subprocess.run(_sweep_cmd(spec, out, *extra, "--json"), env=_child_env(), capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "3 to run" in done.stderr  # the finished point was not resubmitted
    counts = _markers(markers)
    assert counts == {"a1-b10": 1, "a1-b20": 1, "a2-b10": 1, "a2-b20": 1}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and summary["counts"] == {"done": 4}
    rows = {(r["a"], r["b"]): r for r in summary["rows"]}
    assert set(rows) == {(1, 10), (1, 20), (2, 10), (2, 20)}
    for (a, b), r in rows.items():
        assert r["probe.status"] == "done" and r["probe.sum"] == a + b and r["probe.product"] == a * b
    csv_lines = (out / "summary.csv").read_text().strip().splitlines()
    assert len(csv_lines) == 5 and "probe.sum" in csv_lines[0]
    # a third invocation runs nothing
    again = subprocess.run(_sweep_cmd(spec, out, *extra), env=_child_env(), capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0 and "0 to run" in again.stderr
    assert _markers(markers) == counts


def test_kill_and_resume_ray_local(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="Ray not installed (optional extra 'sweep'); the serial variant still runs")
    _kill_after_first_point_then_resume(tmp_path, ["--max-parallel", "2", "--num-cpus", "2"])


def test_kill_and_resume_serial(tmp_path: Path) -> None:
    _kill_after_first_point_then_resume(tmp_path, ["--serial"])


def test_failed_point_recorded_and_not_rerun(tmp_path: Path) -> None:
    markers = tmp_path / "m"
    spec = parse_spec(_probe_spec(markers, slow=0.0, fail=2))
    logs: list[str] = []
    summary = run_sweep(spec, tmp_path / "out", executor="serial", log=logs.append)
    assert summary["counts"] == {"done": 2, "failed": 2} and not summary["complete"]
    assert _markers(markers) == {"a1-b10": 1, "a1-b20": 1}
    store = SweepStore(tmp_path / "out")
    for run in spec.runs:
        d = store.run_dir(run.id)
        if run.params["a"] == 2:
            assert (d / "FAILED").exists() and not (d / "DONE").exists()
            assert "probe asked to fail at a=2" in (d / "error.txt").read_text()
            assert "Traceback" in (d / "error.txt").read_text()
        else:
            assert (d / "DONE").exists()
    # resuming does not retry failures unless asked
    run_sweep(spec, tmp_path / "out", executor="serial", log=logs.append)
    assert _markers(markers) == {"a1-b10": 1, "a1-b20": 1}
    fixed = parse_spec(_probe_spec(markers, slow=0.0, fail=None))  # a different spec: new runs
    assert {r.id for r in fixed.runs}.isdisjoint({r.id for r in spec.runs})


def test_retry_failed_reruns_only_failures(tmp_path: Path) -> None:
    markers = tmp_path / "m"
    spec = parse_spec(_probe_spec(markers, slow=0.0, fail=2))
    run_sweep(spec, tmp_path / "out", executor="serial", log=lambda s: None)
    summary = run_sweep(spec, tmp_path / "out", executor="serial", retry_failed=True, log=lambda s: None)
    assert summary["counts"] == {"done": 2, "failed": 2}
    assert _markers(markers) == {"a1-b10": 1, "a1-b20": 1}


def test_cli_serial_tiny_example_and_dry_run(tmp_path: Path) -> None:
    out = tmp_path / "o"
    dry = subprocess.run(_sweep_cmd(TINY, out, "--dry-run", "--json"), capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    info = json.loads(dry.stdout)
    assert info["points"] == 4 and info["to_run"] == 4
    res = subprocess.run(_sweep_cmd(TINY, out, "--serial"), capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert len(list(out.glob("runs/*/DONE"))) == 4
    dry = subprocess.run(_sweep_cmd(TINY, out, "--dry-run", "--json"), capture_output=True, text=True)
    assert json.loads(dry.stdout)["to_run"] == 0


def test_no_ray_falls_back_to_serial_with_note(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ttzo.host.sweep.runner as runner
    monkeypatch.setattr(runner, "ray_missing", lambda: "Ray is not installed (test)")
    logs: list[str] = []
    summary = run_sweep(parse_spec(_probe_spec(tmp_path / "m", slow=0.0)), tmp_path / "o", log=logs.append)
    assert summary["complete"]
    assert any("note: Ray is not installed (test)" in line and "serially" in line for line in logs)
    with pytest.raises(RuntimeError, match="Ray is not installed"):
        run_sweep(parse_spec(_probe_spec(tmp_path / "m2", slow=0.0)), tmp_path / "o2", executor="ray",
                  log=logs.append)


def test_interrupted_commit_is_rerun(tmp_path: Path) -> None:
    """Files without DONE (a kill during the commit) count as pending."""
    markers = tmp_path / "m"
    spec = parse_spec(_probe_spec(markers, slow=0.0))
    run_sweep(spec, tmp_path / "out", executor="serial", log=lambda s: None)
    store = SweepStore(tmp_path / "out")
    victim = spec.runs[0]
    (store.run_dir(victim.id) / "DONE").unlink()
    assert store.status(victim.id) != "done"
    run_sweep(spec, tmp_path / "out", executor="serial", log=lambda s: None)
    assert store.status(victim.id) == "done"
    assert sum(_markers(markers).values()) == 5  # the victim ran again, nothing else did


def test_second_sweep_on_same_folder_is_refused(tmp_path: Path) -> None:
    store = SweepStore(tmp_path / "o")
    store.lock()
    try:
        with pytest.raises(OSError, match="another 'ttzo sweep' is running"):
            run_sweep(parse_spec(_probe_spec(tmp_path / "m", slow=0.0)), tmp_path / "o", executor="serial",
                      log=lambda s: None)
    finally:
        store.unlock()


# --- specs ---------------------------------------------------------------------------------------
def test_runs_are_shared_between_points_that_differ_only_in_ignored_params() -> None:
    spec = parse_spec({"axes": {"rank": [2, 4], "lanes": [1, 4, 16]},
                       "steps": {"quant-eval": {"train_samples": 100}, "cosim": {"optional": True}}})
    assert len(spec.points) == 6
    steps = [r.step for r in spec.runs]
    assert steps.count("quant-eval") == 2 and steps.count("cosim") == 6
    # identity is the parameter set, not the YAML's key order
    again = parse_spec({"steps": {"cosim": {"optional": True}, "quant-eval": {"train_samples": 100}},
                        "axes": {"lanes": [1, 4, 16], "rank": [2, 4]}})
    assert {r.id for r in again.runs} == {r.id for r in spec.runs}
    assert all(r.id.startswith(r.step + "-") for r in spec.runs)


def test_mapping_axis_sets_several_params() -> None:
    spec = parse_spec({"axes": {"rank": [2], "formats": [{"weight_format": "s16.13", "act_format": "s16.8"},
                                                         {"weight_format": "s12.9", "act_format": "s12.6"}]},
                       "steps": {"quant-eval": {}}})
    assert [p.values for p in spec.points] == [
        {"rank": 2, "weight_format": "s16.13", "act_format": "s16.8"},
        {"rank": 2, "weight_format": "s12.9", "act_format": "s12.6"}]
    assert len({r.id for r in spec.runs}) == 2


@pytest.mark.parametrize("bad, field", [
    ({"axes": {"rank": [2]}, "steps": {"nosuch": {}}}, "steps.nosuch: unknown step"),
    ({"axes": {"colour": [1]}, "steps": {"probe": {}}}, "axes.colour: no step"),
    ({"axes": {"a": []}, "steps": {"probe": {}}}, "axes.a must be a non-empty list"),
    ({"axes": {"a": [1]}, "steps": {}}, "'steps' must name at least one step"),
    ({"axes": {"rank": [2]}, "steps": {"quant-eval": {"weight_format": "q16"}}}, "cannot parse format 'q16'"),
    ({"axes": {"rank": [0]}, "steps": {"quant-eval": {}}}, "rank=0 must be >= 1"),
    ({"axes": {"a": [1]}, "steps": {"probe": {"speed": 3}}}, "steps.probe: unknown parameter(s) ['speed']"),
    ({"axis": {"a": [1]}, "steps": {"probe": {}}}, "unknown top-level field(s) ['axis']"),
    ({"fixed": {"lanez": 4}, "steps": {"cosim": {}}}, "fixed.lanez: no step"),
])
def test_bad_specs_name_the_field(bad: dict, field: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(bad, source="s.yaml")
    assert str(info.value).startswith("s.yaml: ") and field in str(info.value)


def test_cli_reports_bad_spec_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("axes: {rank: [2]\n")
    res = subprocess.run(_sweep_cmd(bad, tmp_path / "o"), capture_output=True, text=True)
    assert res.returncode == 2 and f"{bad}: not valid YAML" in res.stderr
    res = subprocess.run(_sweep_cmd(tmp_path / "missing.yaml", tmp_path / "o"), capture_output=True, text=True)
    assert res.returncode == 2 and "cannot read sweep spec" in res.stderr


def test_example_specs_parse() -> None:
    from ttzo.host.sweep import load_spec
    for path in sorted((ROOT / "examples" / "sweeps").glob("*.yaml")):
        spec = load_spec(path)
        assert spec.points and spec.runs, path


# --- cost and Pareto front ------------------------------------------------------------------------
def test_param_bytes_of_the_papers_network() -> None:
    from ttzo.golden.formats import DEFAULT_CONFIG
    from ttzo.host.sweep.cost import param_bytes
    # paper Table 1: 3,962 parameters at r=6; 16-bit cores and 16-bit biases -> 2 bytes each
    assert param_bytes(6, DEFAULT_CONFIG) == 3962 * 2
    # 12-bit cores (3962 - 1034 biases = 2928 entries) packed, 16-bit biases
    assert param_bytes(6, DEFAULT_CONFIG.with_(weight="s12.9")) == (2928 * 12 + 1034 * 16 + 7) // 8


def _dominated(i: int, cost: list[float], gain: list[float]) -> bool:
    return any(cost[j] <= cost[i] and gain[j] >= gain[i] and (cost[j] < cost[i] or gain[j] > gain[i])
               for j in range(len(cost)))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 20)), min_size=1, max_size=25))
def test_pareto_front_is_exactly_the_nondominated_set(pts: list[tuple[int, int]]) -> None:
    cost, gain = [float(c) for c, _ in pts], [float(g) for _, g in pts]
    front = pareto_front(cost, gain)
    expected = {(cost[i], gain[i]) for i in range(len(pts)) if not _dominated(i, cost, gain)}
    assert {(cost[i], gain[i]) for i in front} == expected
    assert len(front) == len(expected)
    assert [cost[i] for i in front] == sorted(cost[i] for i in front)
    # higher-is-better cost axis (e.g. Fmax) is the mirror image
    mirrored = pareto_front([-c for c in cost], gain)
    assert {(cost[i], gain[i]) for i in pareto_front(cost, gain, lower_cost_is_better=False)} == \
        {(cost[i], gain[i]) for i in mirrored}


# --- real steps on MNIST (small) ----------------------------------------------------------------
def test_train_step_runs_the_golden_loop_with_the_points_settings(tmp_path: Path, mnist_dir: Path) -> None:
    """The sweep's train run gives exactly what train_mnist gives for the same explicit config."""
    train = pytest.importorskip("ttzo.golden.train")
    from ttzo.golden.optim import OptimConfig
    spec = parse_spec({"axes": {"formats": [{"weight_format": "s12.10", "bias_format": "s12.8",
                                             "state_format": "s12.8", "act_format": "s12.5"}]},
                       "fixed": {"rank": 2, "optimizer": "signrge", "lr": 0.01, "queries": 4, "epochs": 1,
                                 "batch": 32, "train_samples": 96, "test_samples": 200, "seed": 3,
                                 "data": str(mnist_dir)},
                       "steps": {"train": {}}})
    summary = run_sweep(spec, tmp_path / "out", executor="serial", log=lambda s: None)
    assert summary["complete"], summary["rows"]
    row = summary["rows"][0]
    ref = train.train_mnist(train.TrainConfig(
        arith="fixed", rank=2, epochs=1, seed=3, batch=32, out=str(tmp_path / "ref"), data=str(mnist_dir),
        train_samples=96, test_samples=200, optim=OptimConfig(optimizer="signrge", lr=0.01, queries=4),
        formats={"weight": "s12.10", "bias": "s12.8", "state": "s12.8", "act": "s12.5"}), progress=False)
    assert row["train.test_acc"] == ref.final["test_acc"] and row["train.train_loss"] == ref.final["train_loss"]
    assert row["train.evaluations"] == ref.final["evaluations"] == 3 * (4 + 1)  # 3 steps of N+1 evaluations
    run_dir = tmp_path / "out" / row["train.run"]
    assert json.loads((run_dir / "config.json").read_text())["formats"]["weight"] == "s12.10"
    assert row["param_bytes"] == (1530 - 1034) * 12 // 8 + 1034 * 12 // 8 and row["n_params"] == 1530


def test_quant_eval_reports_golden_fixed_point_accuracy_of_its_model(tmp_path: Path, mnist_dir: Path) -> None:
    """quant-eval's accuracy is golden's fixed_eval of the parameters it saved, in the point's formats."""
    import numpy as np
    from ttzo.golden.formats import DEFAULT_CONFIG
    from ttzo.golden.formatsweep import fixed_eval
    from ttzo.golden.mnist import load_mnist
    from ttzo.golden.network import mnist_tt
    from ttzo.host.sweep.step_train import _subset
    spec = parse_spec({"axes": {"weight_format": ["s12.10"]},
                       "fixed": {"rank": 2, "epochs": 1, "train_samples": 256, "test_samples": 300, "seed": 5,
                                 "data": str(mnist_dir)},
                       "steps": {"quant-eval": {}}})
    row = run_sweep(spec, tmp_path / "out", executor="serial", log=lambda s: None)["rows"][0]
    assert row["quant-eval.status"] == "done", row.get("quant-eval.error")
    net = mnist_tt(2)
    theta = np.load(tmp_path / "out" / row["quant-eval.run"] / "params.npz")["theta"]
    data = load_mnist(mnist_dir)
    xte, yte = _subset(data.test_images, data.test_labels, 300, 6)
    ref = fixed_eval(net, net.unflatten(theta), DEFAULT_CONFIG.with_(weight="s12.10"), xte, yte)
    assert row["quant-eval.test_acc"] == ref["acc"] and row["test_acc_pct"] == pytest.approx(100 * ref["acc"])


@pytest.mark.slow
def test_quant_eval_step_learns(tmp_path: Path, mnist_dir: Path) -> None:
    spec = parse_spec({"axes": {"weight_format": ["s16.13", "s8.6"]},
                       "fixed": {"rank": 2, "epochs": 2, "train_samples": 2000, "test_samples": 500,
                                 "data": str(mnist_dir)},
                       "steps": {"quant-eval": {}}})
    summary = run_sweep(spec, tmp_path / "out", executor="serial", log=lambda s: None)
    assert summary["complete"]
    wide = {r["weight_format"]: r for r in summary["rows"]}["s16.13"]
    # two FO epochs on 2,000 images (~69 % measured): far above chance; 16-bit weights within 2 points of float
    assert wide["quant-eval.float_test_acc"] > 0.5
    assert abs(wide["quant-eval.test_acc"] - wide["quant-eval.float_test_acc"]) < 0.02
    assert (tmp_path / "out" / "pareto.png").stat().st_size > 1000


# --- hardware steps ------------------------------------------------------------------------------
def test_cli_json_parsing() -> None:
    from ttzo.host.sweep.step_hw import flatten, last_json
    text = 'building...\n{"not": "this"}\nlog {\n{"board": "b", "resources": {"logic": {"used": 5}}, "l": [1]}\n'
    rep = last_json(text)
    assert rep["board"] == "b"
    assert flatten(rep) == {"board": "b", "resources.logic.used": 5}
    with pytest.raises(ValueError, match="no JSON object"):
        last_json("no json here")


def test_pareto_plot_adds_board_panels(tmp_path: Path) -> None:
    from ttzo.host.sweep.plot import board_columns, pareto_plot
    rows = [{"rank": r, "weight_format": "s16.13", "param_bytes": 1000 * r, "onchip_bytes": 60000 + 1000 * r,
             "test_acc_pct": 50.0 + r, "build.resources.logic.used": 2000 + 100 * r,
             "build.timing.achieved_mhz": 40.0 - r} for r in (2, 4)]
    assert board_columns(rows) == {"luts": [2200.0, 2400.0], "bram": [None, None], "fmax_mhz": [38.0, 36.0]}
    import matplotlib.image as mpimg
    png = pareto_plot(rows, tmp_path / "p.png")
    four = mpimg.imread(png).shape[:2]
    png2 = pareto_plot([{k: v for k, v in r.items() if not k.startswith("build.")} for r in rows], tmp_path / "q.png")
    two = mpimg.imread(png2).shape[:2]
    assert four[0] > 1.4 * two[0]  # 2x2 panels vs 1x2 (at a lower dpi)
    rows[0]["build.resources.bram.used"] = 8
    five = mpimg.imread(pareto_plot(rows, tmp_path / "r.png")).shape[:2]
    assert five[1] > 1.3 * four[1]  # 2x3 panels
    assert pareto_plot([{"rank": 2, "param_bytes": 10}], tmp_path / "none.png") is None


def test_build_step_through_ttzo_build(tmp_path: Path) -> None:
    from ttzo.host.sweep.step_hw import subcommand_missing
    if subcommand_missing("build"):
        pytest.skip("'ttzo build' is not part of this installation yet")
    spec = parse_spec({"axes": {"rank": [2]}, "steps": {"build": {"board": "icebreaker", "verilog_only": True}}})
    summary = run_sweep(spec, tmp_path / "out", executor="serial", log=lambda s: None)
    row = summary["rows"][0]
    assert row["build.status"] == "done", row.get("build.error")
    assert row["build.board"] == "icebreaker" and row["build.design_rank"] == 2
    run_dir = tmp_path / "out" / row["build.run"]
    assert (run_dir / "build" / "top.v").stat().st_size > 0 and (run_dir / "report.json").exists()


@pytest.mark.slow
def test_cosim_step_through_ttzo_sim_tt_engine(tmp_path: Path, mnist_dir: Path) -> None:
    """A cosim run per (rank, lanes): the engine's report arrives in the summary (Verilator build: minutes)."""
    from ttzo.host.sweep.step_hw import subcommand_missing
    if subcommand_missing("sim", "tt-engine"):
        pytest.skip("'ttzo sim tt-engine' is not part of this installation yet")
    spec = parse_spec({"axes": {"lanes": [1, 4]},
                       "steps": {"cosim": {"rank": 2, "samples": 2, "data": str(mnist_dir)}}})
    summary = run_sweep(spec, tmp_path / "out", executor="serial", log=lambda s: None)
    rows = {r["lanes"]: r for r in summary["rows"]}
    for lanes, row in rows.items():
        assert row["cosim.status"] == "done", row.get("cosim.error")
        assert row["cosim.bit_exact"] is True and row["cosim.lanes"] == lanes
    from ttzo.golden.network import mnist_tt
    assert rows[1]["cosim.macs_per_sample"] == rows[4]["cosim.macs_per_sample"] == mnist_tt(2).macs()
    assert rows[4]["cosim.cycles_per_sample"] < rows[1]["cosim.cycles_per_sample"]
