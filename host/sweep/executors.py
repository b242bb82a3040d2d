"""Where runs execute: serially in this process, or as Ray tasks (local cores or a cluster).

Both executors take run dicts and yield result dicts in completion order, so the driver
commits each run as soon as it finishes.  Ray is optional: `ray_missing()` says why it
cannot be used, and the command falls back to the serial executor with a note.
"""
from __future__ import annotations

import os
from typing import Any, Iterable, Iterator

from .execute import execute_run


def ray_missing() -> str | None:
    try:
        import ray  # noqa: F401
    except ImportError as exc:
        return f"Ray is not installed ({exc}); install the extra: pip install 'ttzo[sweep]'"
    return None


def run_serial(runs: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for run in runs:
        yield execute_run(run)


def run_ray(runs: list[dict[str, Any]], address: str | None = None, max_parallel: int | None = None,
            num_cpus: int | None = None, cpus_per_run: dict[str, float] | None = None) -> Iterator[dict[str, Any]]:
    """Submit runs as Ray tasks (at most `max_parallel` in flight) and yield results as they finish.

    Without `address` a private local Ray instance is started on this machine's cores (no
    dashboard) and shut down afterwards; with it, the driver joins that cluster.  A worker
    that dies (OOM, segfault, node lost) becomes a failed run, never a crashed sweep.
    """
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False, log_to_driver=False)
    try:
        remote = ray.remote(max_retries=0)(execute_run)
        total_cpus = int(ray.cluster_resources().get("CPU", 1))
        limit = max(1, max_parallel or total_cpus)
        queue = list(runs)
        pending: dict[Any, dict[str, Any]] = {}
        while queue or pending:
            while queue and len(pending) < limit:
                run = queue.pop(0)
                cpus = (cpus_per_run or {}).get(run["step"], 1.0)
                pending[remote.options(num_cpus=cpus).remote(run)] = run
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                run = pending.pop(ref)
                try:
                    yield ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - worker crash, node loss, ...
                    yield {"id": run["id"], "step": run["step"], "params": run["params"], "status": "failed",
                           "error": f"Ray task failed: {type(exc).__name__}: {str(exc)[:2000]}",
                           "traceback": str(exc), "metrics": {}, "files": {}}
    finally:
        if started_here:
            ray.shutdown()
