"""The summary table: one row per grid point, joining its runs' statuses and metrics.

Columns: the point's parameters, derived cost (parameters, on-chip bytes), then for every
step `<step>.status` and `<step>.<metric>`.  Written as CSV (for spreadsheets) and JSON
(with the spec and per-status counts, for scripts).  Rebuilt from the run folders alone,
so it is always consistent with what is on disk.
"""
from __future__ import annotations

import csv
import io
import json
from typing import Any

from .spec import SweepSpec
from .store import SweepStore, write_atomic

ACCURACY_KEYS = ("test_acc", "test_accuracy", "final_test_acc", "acc")


def accuracy_percent(metrics: dict[str, Any]) -> float | None:
    """Test accuracy in % from a step's metrics (fractions <= 1 are scaled)."""
    for k in ACCURACY_KEYS:
        v = metrics.get(k)
        if isinstance(v, (int, float)):
            return float(v) * 100.0 if v <= 1.0 else float(v)
    return None


def point_rows(spec: SweepSpec, store: SweepStore) -> list[dict[str, Any]]:
    from .cost import point_costs

    rows = []
    for point in spec.points:
        row: dict[str, Any] = {"point": point.id, **point.values}
        acc = None
        merged = {k: v for r in point.runs.values() for k, v in r.params.items() if v is not None}
        for key in ("rank", "weight_format", "optimizer"):  # plot keys, also when set under `fixed`
            if key not in row and key in merged:
                row[key] = merged[key]
        try:
            row.update(point_costs(merged))
        except ValueError as exc:  # a point without a valid format set has no cost columns
            row["cost_error"] = str(exc)
        for sname, run in point.runs.items():
            status = store.status(run.id)
            res = store.result(run.id) if status != "pending" else {}
            row[f"{sname}.status"] = status
            row[f"{sname}.run"] = f"runs/{run.id}"
            if status == "failed" or status == "skipped":
                row[f"{sname}.error"] = str(res.get("error", ""))[:300]
            for k, v in (res.get("metrics") or {}).items():
                if isinstance(v, (int, float, str, bool)) or v is None:
                    row[f"{sname}.{k}"] = v
            if status == "done" and acc is None:
                acc = accuracy_percent(res.get("metrics") or {})
        row["test_acc_pct"] = acc
        rows.append(row)
    return rows


def summarize(spec: SweepSpec, store: SweepStore) -> dict[str, Any]:
    rows = point_rows(spec, store)
    counts: dict[str, int] = {}
    for run in spec.runs:
        s = store.status(run.id)
        counts[s] = counts.get(s, 0) + 1
    return {"spec": spec.to_dict(), "points": len(rows), "runs": len(spec.runs), "counts": counts,
            "complete": counts.get("pending", 0) == 0 and counts.get("failed", 0) == 0, "rows": rows}


def write_summary(summary: dict[str, Any], store: SweepStore) -> None:
    rows = summary["rows"]
    columns: list[str] = []
    for r in rows:
        columns += [k for k in r if k not in columns]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})
    write_atomic(store.out / "summary.csv", buf.getvalue())
    write_atomic(store.out / "summary.json", json.dumps(summary, indent=2, default=str))
