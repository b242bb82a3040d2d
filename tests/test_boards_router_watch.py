"""The build's router watchdog: stall detection on router2's overuse log, and the seed retry around it."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from ttzo.boards import build as B
from ttzo.boards.router_watch import LogFollower, RouterWatch


def _log(counts: list[int], start: int = 1) -> str:
    return "".join(f"Info:     iter={i} wires={600000 + 10 * i} overused={c} overuse={c} archfail=NA\n"
                   for i, c in enumerate(counts, start))


@given(st.lists(st.integers(1, 60000), min_size=1, max_size=300))
def test_a_run_that_keeps_improving_never_stalls(xs):
    counts = sorted(set(xs), reverse=True)          # a new best every iteration
    w = RouterWatch()
    w.feed(_log(counts))
    assert w.stalled() is None


@given(best=st.integers(200, 5000), at=st.integers(1, 60), rise=st.integers(0, 3000))
def test_a_run_stuck_above_the_floor_stalls_after_patience(best, at, rise):
    w = RouterWatch(patience=15, floor=200, min_iter=20)
    descent = [best + 10 * (at - i) for i in range(1, at)] + [best]
    for k in range(1, 40):                          # after the best, never better again
        w.history.clear()
        w.feed(_log(descent + [best + 1 + rise] * k))
        it = at + k
        expect = it >= 20 and k >= 15
        assert (w.stalled() is not None) == expect, (best, at, k)
    assert f"best {best} overused wires at iteration {at}" in w.stalled()


def test_a_run_close_to_zero_keeps_going():
    """The routed run of the sixth session hovered around 30 overused wires for dozens of iterations."""
    w = RouterWatch()
    w.feed(_log([40000, 1500, 255, 88] + [31] * 60 + [12, 0]))
    assert w.stalled() is None


def test_a_run_stuck_close_to_zero_stalls_after_long_patience():
    """The seventh session's first build: best 60 at iteration 78, then 60-110 and climbing."""
    w = RouterWatch(patience=15, floor=200, long_patience=80)      # 120 by default
    counts = [40000 // i for i in range(1, 78)] + [60] + [61 + (k % 50) for k in range(79)]   # iterations 1..157
    w.feed(_log(counts))
    assert w.stalled() is None                      # 79 iterations after the best
    w.feed(_log([200], start=158))
    assert "best 60 overused wires at iteration 78" in w.stalled()


def test_feed_ignores_repeated_and_partial_history():
    w = RouterWatch()
    text = _log([900, 800, 700])
    w.feed(text)
    w.feed(text)                                    # the same lines again (a re-read log) add nothing
    assert w.history == [(1, 900), (2, 800), (3, 700)]
    assert w.best() == (3, 700)


def test_log_follower_returns_only_complete_lines(tmp_path):
    p = tmp_path / "top.tim"
    f = LogFollower(p)
    assert f.read_new() == ""                       # not created yet
    p.write_text("iter=1 wires=5 overused=7")       # no newline yet: "7" may be the start of "712"
    assert f.read_new() == ""
    with open(p, "a") as fh:
        fh.write("12\niter=2 wires=5 ")
    assert f.read_new() == "iter=1 wires=5 overused=712\n"
    with open(p, "a") as fh:
        fh.write("overused=3\n")
    assert f.read_new() == "iter=2 wires=5 overused=3\n"


FAKE_PNR = """#!/bin/sh
# stand-in for pnr_top.sh: routes (writes a bitstream) only with seed 3, otherwise never converges
SEED=$(echo "--seed 1" | cut -d' ' -f2)
echo "$SEED" >> seeds.txt
if [ "$SEED" = 3 ]; then echo "iter=1 wires=10 overused=0" > top.tim; echo bit > top.bit; exit 0; fi
i=1
while true; do echo "iter=$i wires=100 overused=5000" >> top.tim; i=$((i + 1)); sleep 0.002; done
"""


def test_stalled_seeds_are_stopped_and_the_next_one_tried(tmp_path, monkeypatch):
    monkeypatch.setattr(B, "POLL_SECONDS", 0.2)
    (tmp_path / "pnr_top.sh").write_text(FAKE_PNR)
    result = B.BuildResult(profile=None, out=tmp_path, rank=6, core="full", verilog_only=False)
    t0 = time.monotonic()
    B._place_and_route(result, "pnr_top.sh", tmp_path / "build.log", dict(os.environ), (1, 2, 3), True)
    assert time.monotonic() - t0 < 60
    assert (tmp_path / "seeds.txt").read_text().split() == ["1", "2", "3"]
    assert result.seed == 3 and [a["routed"] for a in result.attempts] == [False, False, True]
    assert "router2 is not converging: best 5000 overused wires at iteration 1" in result.attempts[0]["reason"]
    assert '"--seed 3"' in (tmp_path / "pnr_top.sh").read_text()
    assert "stopped: router2 is not converging" in (tmp_path / "build.log").read_text()


def test_all_seeds_stalled_is_a_clear_error_and_leaves_no_process(tmp_path, monkeypatch):
    monkeypatch.setattr(B, "POLL_SECONDS", 0.2)
    (tmp_path / "pnr_top.sh").write_text(FAKE_PNR)
    result = B.BuildResult(profile=None, out=tmp_path, rank=6, core="full", verilog_only=False)
    with pytest.raises(B.RoutingStalled, match=r"seeds tried: 1, 2; .*try more with --seed, e.g. --seed 3,4"):
        B._place_and_route(result, "pnr_top.sh", tmp_path / "build.log", dict(os.environ), (1, 2), True)
    n = len((tmp_path / "top.tim").read_text().splitlines())
    time.sleep(0.3)                                 # the killed loop writes no more
    assert len((tmp_path / "top.tim").read_text().splitlines()) == n
    assert result.seed is None and len(result.attempts) == 2


def test_bad_seeds_are_refused():
    with pytest.raises(ValueError, match="seeds must be one or more non-negative integers"):
        B.build("ulx3s-85f", seeds=())
    with pytest.raises(ValueError, match="seeds must be"):
        B.build("ulx3s-85f", seeds=(-1,))


def test_cli_seed_option(capsys):
    from ttzo.host.commands.build import _seeds
    assert _seeds("1,2,3") == (1, 2, 3)
    import argparse
    with pytest.raises(argparse.ArgumentTypeError, match="expected integers"):
        _seeds("1,x")


def test_every_profile_has_seeds_and_the_cli_defaults_to_them():
    import argparse
    from ttzo.boards.profiles import PROFILES
    from ttzo.host.commands.build import register
    for p in PROFILES.values():
        assert p.pnr_seeds and all(isinstance(s, int) and s >= 0 for s in p.pnr_seeds), p.name
    ap = argparse.ArgumentParser()
    register(ap.add_subparsers())
    assert ap.parse_args(["build", "--board", "ulx3s-85f"]).seed is None          # -> the profile's seeds
    assert ap.parse_args(["build", "--board", "ulx3s-85f", "--seed", "7,8"]).seed == (7, 8)


KILL_SCRIPT = r"""
import os, sys
from pathlib import Path
from ttzo.boards import build as B
d = Path(sys.argv[1])
(d / "loop.sh").write_text("i=0; while true; do echo $i >> ticks.txt; i=$((i+1)); sleep 0.01; done\n")
with B.sigterm_as_interrupt():
    try:
        B._run(["sh", "loop.sh"], d, d / "build.log", dict(os.environ))
    except KeyboardInterrupt:
        (d / "interrupted").write_text("yes")
"""


def test_sigterm_to_the_build_stops_its_tool(tmp_path):
    """`ttzo build` killed with SIGTERM must not leave its nextpnr (own process group) running."""
    import signal
    import subprocess
    import sys
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(tmp_path)])
    ticks = tmp_path / "ticks.txt"
    t0 = time.monotonic()
    while not ticks.exists() and time.monotonic() - t0 < 30:
        time.sleep(0.05)
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert (tmp_path / "interrupted").read_text() == "yes"
    n = len(ticks.read_text().splitlines())
    time.sleep(0.3)
    assert len(ticks.read_text().splitlines()) == n       # the tool's loop is gone too
