"""Run byte sequences through the simulated link design (cocotb + Verilator) and compare with the model.

    result = exchange(ident, [line_bytes, ...])          # the design's reply bytes per request
    report = fuzz(ident, n=10_000, seed=1)                # preload, fuzz, read back, compare

Builds rtl/link_top.LinkTop(phy="stream") once per identify record (sim/runner.py caches models).
"""
from __future__ import annotations

import json
import tempfile
import time
from collections import Counter
from pathlib import Path

from ttzo.host import protocol as P

from . import runner
from .link_fuzz import Fuzzer, preload, readback
from .link_model import LinkModel


def build(ident: P.Identify, sim: str = "verilator") -> runner.Model:
    from ttzo.rtl.link_top import LinkTop
    return runner.build(LinkTop(ident, "stream"), "link_top", sim=sim)


def exchange(ident: P.Identify, lines: list[bytes], expect_lens: list[int], sim: str = "verilator") -> dict:
    """Send each line (waiting for `expect_lens[k]` reply bytes); returns replies, hangs, cycles, seconds."""
    model = build(ident, sim)
    with tempfile.TemporaryDirectory(prefix="ttzo-link-") as d:
        fin, fout = Path(d) / "in.json", Path(d) / "out.json"
        fin.write_text(json.dumps({"cases": [{"line": l.hex(), "expect_len": n} for l, n in zip(lines, expect_lens)]}))
        t0 = time.monotonic()
        runner.run(model, "ttzo.sim.tb_link", env={"TTZO_LINK_IN": str(fin), "TTZO_LINK_OUT": str(fout)},
                   test_dir=Path(d) / "run")
        res = json.loads(fout.read_text())
        res["seconds"] = time.monotonic() - t0
    res["replies"] = [bytes.fromhex(h) for h in res["replies"]]
    return res


def _statuses(line: bytes) -> list[int]:
    return [P.decode_body(P.slip_unescape(f)).status for f in P.FrameSplitter().feed(line)]


def fuzz(ident: P.Identify, n: int = 10_000, seed: int = 1, sim: str = "verilator") -> dict:
    """Preload memories and registers, send `n` fuzz cases, read everything back; compare with the model.

    Returns a report: counts per category, replies that differ from the model, cases whose reply
    was OK although the request was broken, hangs, whether the read-back equals the preload.
    """
    model = LinkModel(ident)
    pre = preload(ident)
    cases = list(Fuzzer(ident, seed).cases(n))
    back = readback(ident)
    lines = pre + [c[1] for c in cases] + back
    expected = [model.feed(l) for l in lines]
    res = exchange(ident, lines, [len(e) for e in expected], sim)
    got = res["replies"]
    mismatches = [i for i, (e, g) in enumerate(zip(expected, got)) if e != g]
    npre = len(pre)
    ok_on_broken = [i for i, (cat, _) in enumerate(cases)
                    if cat != "probe" and P.Status.OK in _statuses(got[npre + i])]
    # the read-back must return exactly what the preload wrote
    fresh = LinkModel(ident)
    for l in pre:
        fresh.feed(l)
    want_back = [fresh.feed(l) for l in back]
    readback_equal = got[npre + n:] == want_back
    answered = sum(1 for i in range(n) if got[npre + i])
    return {"cases": n, "seed": seed, "categories": dict(Counter(c for c, _ in cases)),
            "answered": answered, "dropped": n - answered,
            "mismatches": [npre + i for i in mismatches], "ok_on_broken": ok_on_broken, "hangs": res["hangs"],
            "readback_equal": readback_equal, "cycles": res["cycles"], "seconds": round(res["seconds"], 1)}


def main(argv: list[str] | None = None) -> int:
    """`python -m ttzo.sim.link_sim --cases N --seed S`: run the fuzz campaign, print its JSON report."""
    import argparse
    from .link_model import default_identify
    ap = argparse.ArgumentParser(prog="python -m ttzo.sim.link_sim", description=main.__doc__)
    ap.add_argument("--cases", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-payload", type=int, default=256)
    ap.add_argument("--sim", choices=["verilator", "icarus"], default="verilator")
    a = ap.parse_args(argv)
    t0 = time.monotonic()
    report = fuzz(default_identify(max_payload=a.max_payload), n=a.cases, seed=a.seed, sim=a.sim)
    report["wall_seconds"] = round(time.monotonic() - t0, 1)
    print(json.dumps(report, indent=2))
    bad = report["mismatches"] or report["ok_on_broken"] or report["hangs"] or not report["readback_equal"]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
