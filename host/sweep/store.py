"""The sweep's output folder: one folder per run, atomic markers, a lock, resumption.

    OUT/sweep.yaml              the spec as last run
    OUT/runs/<run id>/          everything the run wrote, plus
        result.json             status, parameters, metrics, host, timings
        error.txt               the traceback (failed runs only)
        DONE                    written last, atomically: the run is finished and never rerun
        FAILED                  the run failed; rerun only with --retry-failed
    OUT/summary.csv|json, OUT/pareto.png

A run counts as finished only if DONE exists; DONE is created by an atomic rename after
every other file is on disk, so an interrupted commit is simply rerun.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
from pathlib import Path
from typing import Any, IO

DONE, FAILED, RESULT, ERROR = "DONE", "FAILED", "result.json", "error.txt"


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write via a temporary file in the same folder and os.replace: readers see all or nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class SweepStore:
    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        self.runs_dir = self.out / "runs"
        self._lock: IO[str] | None = None

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id

    # --- exclusive use ------------------------------------------------------------------------
    def lock(self) -> None:
        """One sweep process per output folder (the lock dies with the process, so a kill frees it)."""
        self.out.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.out / ".lock", "w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OSError(f"{self.out}: another 'ttzo sweep' is running on this folder") from None

    def unlock(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    # --- state ------------------------------------------------------------------------------------
    def status(self, run_id: str) -> str:
        d = self.run_dir(run_id)
        if (d / DONE).exists():
            return "done"
        if (d / FAILED).exists():
            return "failed"
        if (d / RESULT).exists() and self.result(run_id).get("status") == "skipped":
            return "skipped"  # an optional step whose tool was missing: retried on every resume
        return "pending"  # nothing yet, or an interrupted commit (files but no marker)

    def result(self, run_id: str) -> dict[str, Any]:
        try:
            return json.loads((self.run_dir(run_id) / RESULT).read_text())
        except (OSError, ValueError):
            return {}

    # --- commit -----------------------------------------------------------------------------
    def commit(self, result: dict[str, Any]) -> Path:
        """Write a finished execution's files, result.json, then the marker (DONE last)."""
        d = self.run_dir(result["id"])
        for marker in (DONE, FAILED, ERROR):
            (d / marker).unlink(missing_ok=True)
        d.mkdir(parents=True, exist_ok=True)
        for rel, data in result.get("files", {}).items():
            target = d / rel
            if target.name in (DONE, FAILED, RESULT, ERROR):
                target = target.with_name("step-" + target.name)
            write_atomic(target, data)
        meta = {k: v for k, v in result.items() if k not in ("files", "traceback")}
        meta["files"] = sorted(result.get("files", {}))
        write_atomic(d / RESULT, json.dumps(meta, indent=2, default=str))
        if result["status"] == "failed":
            write_atomic(d / ERROR, result.get("traceback") or result.get("error", ""))
            write_atomic(d / FAILED, result.get("error", ""))
        elif result["status"] == "done":
            write_atomic(d / DONE, f"{result.get('host', '')} {result.get('wall_s', 0):.3f}s\n")
        return d

    def forget(self, run_id: str) -> None:
        shutil.rmtree(self.run_dir(run_id), ignore_errors=True)
