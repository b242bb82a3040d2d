"""Run one sweep run in a scratch folder and hand back everything it produced.

This is the function a Ray worker (or the serial loop) executes.  It never touches the
sweep's output folder: the run's files come back as bytes inside the result, and the
driver commits them.  That works identically on one machine and on a cluster without a
shared filesystem, and a run killed half-way leaves nothing behind that looks finished.
"""
from __future__ import annotations

import os
import platform
import shutil
import socket
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from . import step as steps

#: Refuse to ship more than this many bytes of files per run back to the driver.
MAX_RUN_BYTES = 200 * 1024 * 1024


def collect_files(root: Path) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    total = 0
    for p in sorted(root.rglob("*")):
        if p.is_file():
            total += p.stat().st_size
            if total > MAX_RUN_BYTES:
                raise RuntimeError(f"run produced more than {MAX_RUN_BYTES >> 20} MiB of files; "
                                   "write large artefacts elsewhere")
            files[str(p.relative_to(root))] = p.read_bytes()
    return files


def execute_run(run: dict[str, Any]) -> dict[str, Any]:
    """run = Run.to_dict() -> result dict (status done|failed|skipped, metrics, files, error)."""
    kind = steps.get(run["step"])
    started = time.time()
    result: dict[str, Any] = {"id": run["id"], "step": run["step"], "params": run["params"],
                              "host": socket.gethostname(), "pid": os.getpid(), "python": platform.python_version(),
                              "started": started, "metrics": {}, "files": {}}
    scratch = Path(tempfile.mkdtemp(prefix=f"ttzo-sweep-{run['id'][:40]}-"))
    try:
        reason = kind.available()
        if reason:
            raise steps.StepUnavailable(reason)
        metrics = kind.run(dict(run["params"]), scratch)
        result.update(status="done", metrics=dict(metrics or {}))
    except steps.StepUnavailable as exc:
        result.update(status="skipped" if run.get("optional") else "failed", error=f"unavailable: {exc}",
                      traceback=traceback.format_exc())
    except BaseException as exc:  # noqa: BLE001 - a failed point must never stop the sweep
        if isinstance(exc, KeyboardInterrupt):
            raise
        result.update(status="failed", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
    finally:
        result["wall_s"] = time.time() - started
        try:
            result["files"] = collect_files(scratch)
        except Exception as exc:  # noqa: BLE001
            result.update(status="failed", error=str(exc), traceback=traceback.format_exc())
        shutil.rmtree(scratch, ignore_errors=True)
    return result
