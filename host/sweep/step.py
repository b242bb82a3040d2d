"""What a sweep can run for each grid point: the step kinds and their registry.

A step kind names the parameters it reads (with defaults), says whether it can run on
this installation, and runs one parameter set in a scratch folder, returning a flat dict
of metrics.  Everything it writes into the scratch folder is kept in the run's folder.
Steps never know about sweeps, Ray or resumption; that is the runner's job.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

Params = dict[str, Any]
Metrics = dict[str, Any]


class StepUnavailable(RuntimeError):
    """The step's tool is not installed/implemented here; an `optional` step is then skipped, not failed."""


@dataclass(frozen=True)
class StepKind:
    """One kind of work a grid point can ask for."""

    name: str
    description: str
    params: dict[str, Any]                            # every parameter it reads -> default (None: unset)
    run: Callable[[Params, Path], Metrics]            # (resolved params, scratch folder) -> metrics
    label_keys: tuple[str, ...] = ()                  # parameters shown in the run folder's name
    validate: Callable[[Params], None] | None = None  # raise ValueError on a bad parameter set
    num_cpus: float = 1.0                             # Ray resource request per run
    available: Callable[[], str | None] = field(default=lambda: None)  # None, or why it cannot run here

    def resolve(self, values: Params) -> Params:
        """The step's full parameter set: its defaults overridden by the values it reads."""
        return {k: values.get(k, d) for k, d in self.params.items()}


_REGISTRY: dict[str, StepKind] = {}


def register(kind: StepKind) -> StepKind:
    _REGISTRY[kind.name] = kind
    return kind


def get(name: str) -> StepKind:
    _load_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown step {name!r}; known steps: {', '.join(sorted(_REGISTRY))}") from None


def all_kinds() -> dict[str, StepKind]:
    _load_builtin()
    return dict(_REGISTRY)


def _load_builtin() -> None:
    # Imported lazily so that `import ttzo.host.sweep` stays cheap; each module registers its kinds.
    from . import step_hw, step_probe, step_train  # noqa: F401
