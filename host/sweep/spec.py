"""Sweep specifications: YAML -> grid points -> deduplicated runs.

A spec names *axes* (each a list of values; the grid is their Cartesian product), *fixed*
parameters shared by every point, and the *steps* to run per point::

    name: mnist-rank-format
    axes:
      rank: [2, 4, 6, 8]
      formats:                      # an axis of mappings sets several parameters together
        - {weight_format: s16.13, act_format: s16.8}
        - {weight_format: s12.9, act_format: s12.6}
    fixed: {optimizer: signrge, epochs: 1, train_samples: 4000}
    steps:
      train: {}
      cosim: {optional: true, lanes: 4}   # step-local parameters and the `optional` flag

A *run* is one step with exactly the parameters that step reads.  Points that differ only in
parameters a step ignores (e.g. `lanes` for training) share that step's run, so a
ranks x formats x lanes grid trains each (rank, format) once.  A run's identity is a hash of
(step, parameters); its folder name is a readable slug plus that hash, stable across resumes.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import step as steps

STEP_OPTIONS = {"optional"}
TOP_KEYS = {"name", "description", "axes", "fixed", "steps"}


class SpecError(ValueError):
    """A sweep spec that cannot be run; the message names the file and the field."""


@dataclass(frozen=True)
class Run:
    """One step with one parameter set: the unit of execution, resumption and caching."""

    step: str
    params: dict[str, Any]
    optional: bool = False

    @property
    def key(self) -> str:
        # Unset (None) parameters are left out, so a step gaining a new optional parameter keeps old ids.
        params = {k: v for k, v in self.params.items() if v is not None}
        blob = json.dumps({"step": self.step, "params": params}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:10]

    @property
    def id(self) -> str:
        kind = steps.get(self.step)
        parts = [self.step] + [_slug(k, self.params[k]) for k in kind.label_keys if self.params.get(k) is not None]
        return "-".join(parts + [self.key])

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "step": self.step, "params": self.params, "optional": self.optional}


@dataclass(frozen=True)
class Point:
    """One grid point: its parameter values and the run of each step it needs."""

    values: dict[str, Any]
    runs: dict[str, Run]

    @property
    def id(self) -> str:
        blob = json.dumps(self.values, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:10]


@dataclass
class SweepSpec:
    name: str
    axes: dict[str, list[Any]]
    fixed: dict[str, Any]
    steps: dict[str, dict[str, Any]]
    description: str = ""
    source: str = "<spec>"
    points: list[Point] = field(default_factory=list)

    @property
    def runs(self) -> list[Run]:
        """Distinct runs in grid order (first point first)."""
        seen: dict[str, Run] = {}
        for p in self.points:
            for r in p.runs.values():
                seen.setdefault(r.id, r)
        return list(seen.values())

    @property
    def axis_params(self) -> list[str]:
        """Parameter names set by the axes (mapping axes contribute their keys), in spec order."""
        names: list[str] = []
        for axis, values in self.axes.items():
            for v in values:
                for k in (v.keys() if isinstance(v, dict) else [axis]):
                    if k not in names:
                        names.append(k)
        return names

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "axes": self.axes, "fixed": self.fixed,
                "steps": self.steps}


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a YAML spec; every error names the file and the field."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError(f"{path}: cannot read sweep spec: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from None
    return parse_spec(data, source=str(path))


def parse_spec(data: Any, source: str = "<spec>") -> SweepSpec:
    def err(msg: str) -> SpecError:
        return SpecError(f"{source}: {msg}")

    if not isinstance(data, dict):
        raise err("a sweep spec must be a mapping with 'axes', 'fixed' and 'steps'")
    unknown = set(data) - TOP_KEYS
    if unknown:
        raise err(f"unknown top-level field(s) {sorted(unknown)}; allowed: {sorted(TOP_KEYS)}")
    name = str(data.get("name") or Path(source).stem)
    axes = data.get("axes") or {}
    fixed = data.get("fixed") or {}
    step_blocks = data.get("steps")
    if not isinstance(axes, dict):
        raise err("'axes' must map a parameter name to a list of values")
    if not isinstance(fixed, dict):
        raise err("'fixed' must map parameter names to values")
    if not isinstance(step_blocks, dict) or not step_blocks:
        raise err("'steps' must name at least one step, e.g. 'steps: {train: {}}'")
    for axis, values in axes.items():
        if not isinstance(values, list) or not values:
            raise err(f"axes.{axis} must be a non-empty list")
        if any(isinstance(v, dict) for v in values) and not all(isinstance(v, dict) for v in values):
            raise err(f"axes.{axis}: mix of mappings and plain values; use one or the other")
        if any(isinstance(v, (list, dict)) and not isinstance(v, dict) for v in values):
            raise err(f"axes.{axis}: values must be scalars or mappings")

    kinds: dict[str, steps.StepKind] = {}
    blocks: dict[str, dict[str, Any]] = {}
    for sname, block in step_blocks.items():
        try:
            kinds[sname] = steps.get(sname)
        except ValueError as exc:
            raise err(f"steps.{sname}: {exc}") from None
        block = block or {}
        if not isinstance(block, dict):
            raise err(f"steps.{sname} must be a mapping of parameters (or empty)")
        bad = set(block) - set(kinds[sname].params) - STEP_OPTIONS
        if bad:
            raise err(f"steps.{sname}: unknown parameter(s) {sorted(bad)}; the step reads "
                      f"{sorted(kinds[sname].params)}")
        blocks[sname] = dict(block)

    readable = set().union(*(set(k.params) for k in kinds.values()))
    axis_names = {k for axis, vals in axes.items() for v in vals for k in (v if isinstance(v, dict) else [axis])}
    for where, names in (("axes", axis_names), ("fixed", set(fixed))):
        for n in sorted(names - readable):
            raise err(f"{where}.{n}: no step in {sorted(kinds)} reads a parameter {n!r} "
                      f"(they read {sorted(readable)})")

    spec = SweepSpec(name=name, axes=axes, fixed=fixed, steps=blocks, description=str(data.get("description", "")),
                     source=source)
    for combo in itertools.product(*axes.values()):
        values: dict[str, Any] = {}
        for axis, v in zip(axes, combo):
            values.update(v if isinstance(v, dict) else {axis: v})
        runs: dict[str, Run] = {}
        for sname, kind in kinds.items():
            block = {k: v for k, v in blocks[sname].items() if k not in STEP_OPTIONS}
            merged = {**{k: v for k, v in fixed.items() if k in kind.params}, **block,
                      **{k: v for k, v in values.items() if k in kind.params}}
            params = kind.resolve(merged)
            if kind.validate is not None:
                try:
                    kind.validate(params)
                except ValueError as exc:
                    raise err(f"steps.{sname} at point {values}: {exc}") from None
            runs[sname] = Run(sname, params, optional=bool(blocks[sname].get("optional", False)))
        spec.points.append(Point(values, runs))
    return spec


def _slug(key: str, value: Any) -> str:
    short = {"rank": "r", "seed": "seed", "lanes": "p", "weight_format": "w", "act_format": "a",
             "optimizer": "", "board": "", "epochs": "e"}.get(key, key)
    text = f"{short}{value}"
    return re.sub(r"[^A-Za-z0-9.]+", "_", text).strip("_")
