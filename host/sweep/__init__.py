"""Design-space sweeps: a YAML grid of (rank, formats, optimizer, seed, lanes, board) points,
each running golden training / co-simulation / board builds, locally or on a Ray cluster,
resumable, summarised as a table and a Pareto plot.  See docs/sweeps.md.

Modules: spec (YAML -> points -> runs), step + step_* (what a run does), execute (one run in
a scratch folder), executors (serial / Ray), store (folders, markers, lock), runner (drive
and resume), summary (CSV/JSON), cost (on-chip bytes), plot (Pareto PNG), paper (Table 2).
"""
from __future__ import annotations

from .runner import plan, run_sweep
from .spec import Point, Run, SpecError, SweepSpec, load_spec, parse_spec

__all__ = ["load_spec", "parse_spec", "run_sweep", "plan", "SweepSpec", "Point", "Run", "SpecError"]
