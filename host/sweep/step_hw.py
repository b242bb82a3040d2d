"""`cosim` and `build`: the RTL co-simulation and the board build, run through their CLI.

Both are driven through `ttzo sim tt-engine ... --json` and `ttzo build ... --json` in a
child process: those JSON outputs are the documented interface of the engine and board
work, and a child process isolates simulator/toolchain crashes from the sweep.  When the
subcommand does not exist on this installation the step is *unavailable*: an `optional`
step is then recorded as skipped instead of failed.
"""
from __future__ import annotations

import json
import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

from .step import Metrics, Params, StepKind, StepUnavailable, register

CLI = [sys.executable, "-m", "ttzo.host.cli"]


@lru_cache(maxsize=None)
def subcommand_missing(*words: str) -> str | None:
    """None if `ttzo WORDS --help` works, else the reason (the command is not part of this install)."""
    proc = subprocess.run(CLI + list(words) + ["--help"], capture_output=True, text=True)
    return None if proc.returncode == 0 else f"'ttzo {' '.join(words)}' is not available here"


def last_json(text: str) -> dict[str, Any]:
    """The last top-level JSON object printed on stdout (tools may log before it)."""
    dec = json.JSONDecoder()
    found: dict[str, Any] | None = None
    i = 0
    while (i := text.find("{", i)) != -1:
        try:
            obj, end = dec.raw_decode(text, i)
        except json.JSONDecodeError:
            i += 1
            continue
        if isinstance(obj, dict):
            found = obj
        i = end
    if found is None:
        raise ValueError("the command printed no JSON object")
    return found


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> {'a.b': scalar}; lists are kept only when short and scalar."""
    out: dict[str, Any] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}{k}."))
    elif isinstance(obj, (int, float, str, bool)) or obj is None:
        out[prefix[:-1]] = obj
    return out


def run_cli(command: list[str], args: list[str], workdir: Path, timeout: float | None) -> dict[str, Any]:
    """Run `ttzo COMMAND ARGS` in `workdir`; its JSON report (also saved as report.json)."""
    missing = subcommand_missing(*command)
    if missing:
        raise StepUnavailable(missing)
    words = command + args
    proc = subprocess.run(CLI + words, capture_output=True, text=True, timeout=timeout, cwd=workdir)
    (workdir / "stdout.txt").write_text(proc.stdout)
    (workdir / "stderr.txt").write_text(proc.stderr)
    try:
        report = last_json(proc.stdout)
    except ValueError:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"'ttzo {' '.join(words)}' exited with {proc.returncode} and no JSON report:\n{tail}") \
            from None
    # A report with a non-zero exit (e.g. `ttzo build` when timing is not met) is a data point, not a failure.
    report["exit_code"] = proc.returncode
    (workdir / "report.json").write_text(json.dumps(report, indent=2))
    return report


def run_cosim(params: Params, workdir: Path) -> Metrics:
    words = ["--net", str(params["net"]), "--rank", str(params["rank"]), "--lanes", str(params["lanes"]),
             "--sim", str(params["sim"]), "--json"]
    for key in ("samples", "data"):
        if params[key] is not None:
            words += [f"--{key}", str(params[key])]
    report = run_cli(["sim", "tt-engine"], words, workdir, params["timeout_s"])
    if report.get("bit_exact") is False:  # the check failed: keep the report, fail the run
        raise RuntimeError(f"RTL differs from golden: {report.get('mismatches')} of {report.get('outputs')} "
                           "outputs (report.json in this folder)")
    return flatten(report)


def run_build(params: Params, workdir: Path) -> Metrics:
    words = ["--board", str(params["board"]), "--json", "--out", str(workdir / "build")]
    for key in ("lanes", "rank", "core"):
        if params[key] is not None:
            words += [f"--{key}", str(params[key])]
    if not params["time_golden"]:
        words.append("--no-golden")
    if params["verilog_only"]:
        words.append("--verilog-only")
    return flatten(run_cli(["build"], words, workdir, params["timeout_s"]))


COSIM = register(StepKind(
    name="cosim",
    description="RTL engine against golden, bit for bit: 'ttzo sim tt-engine --json' (cycles, utilisation)",
    params={"net": "mnist", "rank": 6, "lanes": 4, "sim": "verilator", "samples": None, "data": None,
            "timeout_s": 3600},
    run=run_cosim, label_keys=("rank", "lanes"), available=lambda: subcommand_missing("sim", "tt-engine")))

BUILD = register(StepKind(
    name="build",
    description="board build and report: 'ttzo build --board B --json' (resources, Fmax); slow",
    params={"board": "icebreaker", "lanes": None, "rank": None, "core": None, "verilog_only": False,
            "time_golden": False, "timeout_s": 7200},
    run=run_build, label_keys=("board", "rank", "lanes"), available=lambda: subcommand_missing("build")))
