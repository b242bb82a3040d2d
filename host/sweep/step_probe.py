"""`probe`: a stand-in step for testing the sweep machinery itself (seconds, no model).

It sleeps, optionally fails on request, and leaves one marker file per *completed*
execution in `marker_dir` (outside the sweep's folders), so a test can count how often
each point really ran independently of the sweep's own bookkeeping.
"""
from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

from .step import Metrics, Params, StepKind, register


def run_probe(params: Params, workdir: Path) -> Metrics:
    time.sleep(float(params["seconds"]))
    if params["fail"] is not None and params["a"] == params["fail"]:
        raise RuntimeError(f"probe asked to fail at a={params['a']!r}")
    (workdir / "probe.txt").write_text(f"a={params['a']} b={params['b']}\n")
    if params["marker_dir"]:
        d = Path(params["marker_dir"])
        d.mkdir(parents=True, exist_ok=True)
        (d / f"a{params['a']}-b{params['b']}-{uuid.uuid4().hex[:8]}.done").write_text(str(os.getpid()))
    a, b = float(params["a"]), float(params["b"])
    return {"sum": a + b, "product": a * b, "pid": os.getpid()}


def _validate(params: Params) -> None:
    if float(params["seconds"]) < 0:
        raise ValueError(f"seconds={params['seconds']} must be >= 0")


PROBE = register(StepKind(
    name="probe",
    description="test stand-in: sleep `seconds`, fail when a == `fail`, count completions in `marker_dir`",
    params={"a": 0, "b": 0, "seconds": 0.0, "fail": None, "marker_dir": None},
    run=run_probe, label_keys=("a", "b"), validate=_validate))
