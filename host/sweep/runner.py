"""Drive a sweep: decide what still has to run, execute it, commit results, summarise.

Resumption is by construction: a run whose folder holds DONE is never submitted again;
failed runs are kept (with their traceback) and retried only when asked; runs skipped
because a tool was missing are retried every time (the tool may exist now).  The summary
and plot are rewritten at the end, also after an interruption.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable

import yaml

from . import step as steps
from .executors import ray_missing, run_ray, run_serial
from .plot import pareto_plot
from .spec import SweepSpec
from .store import SweepStore, write_atomic
from .summary import accuracy_percent, summarize, write_summary

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def plan(spec: SweepSpec, store: SweepStore, retry_failed: bool = False) -> tuple[list[Any], dict[str, int]]:
    """(runs to execute, status counts before running)."""
    todo, counts = [], {}
    for run in spec.runs:
        s = store.status(run.id)
        counts[s] = counts.get(s, 0) + 1
        if s in ("pending", "skipped") or (s == "failed" and retry_failed):
            todo.append(run)
    return todo, counts


def _describe(res: dict[str, Any]) -> str:
    m = res.get("metrics") or {}
    acc = accuracy_percent(m)
    bits = [f"test_acc={acc:.2f}%"] if acc is not None else []
    shown = {"resources.logic.used": "logic", "timing.achieved_mhz": "fmax_mhz", "cycles_per_sample": "cycles",
             "bit_exact": "bit_exact"}
    bits += [f"{name}={m[k]}" for k, name in shown.items() if k in m]
    if not bits:
        bits = [f"{k}={v}" for k, v in list(m.items())[:3]]
    if res["status"] != "done":
        lines = [ln for ln in str(res.get("error") or "").splitlines() if ln.strip()]
        bits = [lines[-1][:200]] if lines else []  # for a tool's failure the last line is its own message
    return " ".join(bits)


def run_sweep(spec: SweepSpec, out: str | Path, executor: str = "auto", address: str | None = None,
              max_parallel: int | None = None, num_cpus: int | None = None, retry_failed: bool = False,
              log: Log = _stderr) -> dict[str, Any]:
    """Run every unfinished run of `spec` into `out`; returns the summary dict.

    executor: 'auto' (Ray if importable, else serial with a note), 'ray' or 'serial'.
    """
    store = SweepStore(out)
    store.lock()
    try:
        write_atomic(store.out / "sweep.yaml", yaml.safe_dump(spec.to_dict(), sort_keys=False))
        todo, before = plan(spec, store, retry_failed)
        log(f"sweep {spec.name}: {len(spec.points)} points, {len(spec.runs)} runs "
            f"({', '.join(f'{v} {k}' for k, v in sorted(before.items()))}); {len(todo)} to run")
        if todo:
            missing = ray_missing()
            if executor == "ray" and missing:
                raise RuntimeError(missing)
            use_ray = executor == "ray" or (executor == "auto" and not missing)
            if executor == "auto" and missing:
                log(f"note: {missing}. Running the {len(todo)} runs serially in this process.")
            payload = [r.to_dict() for r in todo]
            if use_ray:
                cpus = {name: k.num_cpus for name, k in steps.all_kinds().items()}
                log(f"executing on Ray ({'cluster ' + address if address else 'a local instance'})")
                results = run_ray(payload, address=address, max_parallel=max_parallel, num_cpus=num_cpus,
                                  cpus_per_run=cpus)
            else:
                results = run_serial(payload)
            t0 = time.time()
            for k, res in enumerate(results, 1):
                store.commit(res)
                write_summary(summarize(spec, store), store)  # a long sweep's table is current at any time
                log(f"[{k}/{len(todo)}] {res['status']:7s} {res['id']}  {_describe(res)}  "
                    f"({res.get('wall_s', 0):.1f} s, elapsed {time.time() - t0:.0f} s)")
    finally:
        try:
            summary = summarize(spec, store)
            write_summary(summary, store)
            png = pareto_plot(summary["rows"], store.out / "pareto.png", title=f"sweep {spec.name}")
            summary["plot"] = str(png) if png else None
        finally:
            store.unlock()
    return summary
