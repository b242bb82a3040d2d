"""Give up early on a nextpnr router2 run that is not converging, instead of ripping up for hours.

Why: on the full ECP5 design router2's overused-wire count either falls steadily to zero (the sixth
session's routed run: 1,509 at iteration 9, 88 at 25, 0 at 191) or settles in the hundreds or
thousands and then climbs again (767 at iteration 26, 1,752 at 46; 2,053 -> 2,452).  nextpnr has no
iteration limit of its own, so a stuck run only ends when someone kills it.  :class:`RouterWatch`
reads the ``iter=N wires=W overused=K`` lines of nextpnr's log and calls a run stalled when the best
count has not improved for ``patience`` iterations while still at or above ``floor``, or for
``long_patience`` iterations at any count (a run close to zero gets longer: the routed run's last
few dozen wires took up to 46 iterations per new best, and such iterations take seconds; the seventh
session's first build sat at 60-110 from iteration 78 and climbed to 389 by 200, and a later seed
reached 16 at iteration 120 and no better by 202); the build then tries the next seed
(docs/boards.md, "Flow").  Same idea as CFU-Playground's many-seeds workaround for the same
nextpnr behaviour, but sequential, for a 2-core machine.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

ITER_RE = re.compile(r"\biter=(\d+)\s+wires=(\d+)\s+overused=(\d+)")


@dataclass
class RouterWatch:
    """Stall detector over router2's per-iteration overuse (feed it log text, ask :meth:`stalled`)."""

    patience: int = 15        # iterations without a new best before giving up
    floor: int = 200          # ... but only while the best is at least this many overused wires
    min_iter: int = 20        # never before this iteration (the first ten are a steep descent)
    long_patience: int = 120  # iterations without a new best at any count
    history: list[tuple[int, int]] = field(default_factory=list)   # (iteration, overused)

    def feed(self, text: str) -> None:
        """Parse every ``iter=`` line of ``text`` (a whole log or a new chunk; repeated lines are ignored)."""
        last = self.history[-1][0] if self.history else 0
        for it, _wires, over in ITER_RE.findall(text):
            it, over = int(it), int(over)
            if it > last:
                self.history.append((it, over))
                last = it

    def best(self) -> tuple[int, int] | None:
        """(iteration, overused) of the lowest count so far (earliest on ties)."""
        return min(self.history, key=lambda h: (h[1], h[0])) if self.history else None

    def stalled(self) -> str | None:
        """A one-line reason if the run should be stopped, else None."""
        if not self.history:
            return None
        it, over = self.history[-1]
        b_it, b_over = self.best()
        if it >= self.min_iter and (b_over >= self.floor and it - b_it >= self.patience
                                    or b_over > 0 and it - b_it >= self.long_patience):
            return (f"router2 is not converging: best {b_over} overused wires at iteration {b_it}, "
                    f"{over} at iteration {it} ({it - b_it} iterations without improvement)")
        return None


class LogFollower:
    """Reads what a growing log file gained since the last call (the log may not exist yet)."""

    def __init__(self, path: Path) -> None:
        self.path, self.pos = path, 0

    def read_new(self) -> str:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.pos)
                data = fh.read()
        except FileNotFoundError:
            return ""
        # only complete lines: a half-written "overused=7" must not be read as 7 of 7xx
        cut = data.rfind(b"\n") + 1
        self.pos += cut
        return data[:cut].decode(errors="replace")
