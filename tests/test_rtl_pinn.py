"""The PINN path on chip (rtl/pinn_loss.py + rtl/tt_engine.py [+ rtl/zo_trainer.py]) equals golden bit for bit.

For a batch of collocation points and a sparse-grid node table, every gradient component, Laplacian,
residual and r^2 code and the batch loss the RTL computes equal golden/stein_fixed.py's; signRGE
steps on that loss give golden's parameters and batch losses.  The benches load everything through
the configuration bus, pulse start and await the fall of busy / done (the clock runs inside the
simulator).  Default suite: a tiny sine TT net with D = 3 (levels 2 and 3) and D = 4 on Verilator, and
two signRGE steps; Icarus (`icarus`) on fewer points and one step.  `slow`: the paper's HJB-20 network
with the D = 21 level-3 table (925 nodes).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from ttzo.golden.hjb import FixedHJB
from ttzo.rtl.descriptors import EngineParams, compile_network, emulate
from ttzo.sim import runner
from ttzo.sim.pinn_cosim import (HJB_SPEC, SMALL_SPEC, cosimulate_pinn, cosimulate_pinn_zo, hjb_case,
                                 small_case)


def _check(results) -> None:
    for r in results:
        assert r.bit_exact, f"{r.name}: mismatching codes {r.mismatches}"
        assert r.loss_sum == r.want.loss_sum
        assert r.cycles > r.points * r.nodes  # at least one cycle per network evaluation


def test_interpolated_sine_program_emulates_golden() -> None:
    """compile_network(sine="interp") + the engine's address arithmetic = golden's interpolated-sine network;
    the interpolating build option leaves the default descriptor layout alone and refuses a plain build."""
    c = small_case(3, 3, 1, seed=4)
    x = SMALL_SPEC.cfg.input.quantize(np.random.default_rng(0).uniform(-1.0, 2.0, (16, 3)))
    for sine in ("interp", "table"):
        prog = compile_network(c.net, c.codes, SMALL_SPEC.cfg, SMALL_SPEC.engine, sine)
        want = FixedHJB(c.net, SMALL_SPEC.cfg, sine=sine).nn_codes(c.codes, x)
        assert np.array_equal(emulate(prog, x)[:, 0], want)
    plain = replace(SMALL_SPEC.engine, sine_interp_bits=0)
    assert "sine_shift" not in plain.step_layout().members and "sine_shift" in SMALL_SPEC.engine.step_layout().members
    assert EngineParams().step_layout().size == 1363                       # docs/rtl.md, "Program format"
    assert SMALL_SPEC.engine.step_layout().size == plain.step_layout().size + 6
    with pytest.raises(ValueError, match="sine_interp_bits"):
        compile_network(c.net, c.codes, SMALL_SPEC.cfg, plain, "interp")


def test_verilator_small_tables() -> None:
    cases = [small_case(3, 2, 4, seed=0), small_case(3, 3, 3, seed=1), small_case(4, 2, 2, seed=2),
             small_case(3, 2, 2, seed=3, sine="table")]
    results = cosimulate_pinn(cases, SMALL_SPEC, "verilator")
    _check(results)
    assert [r.nodes for r in results] == [7, 25, 9, 7]


def test_verilator_zo_step_on_the_hjb_loss() -> None:
    r = cosimulate_pinn_zo(small_case(3, 2, 4, seed=0), SMALL_SPEC, "verilator", k_steps=2, n_queries=2)
    assert r.losses_equal, f"losses differ\n got {r.got_log}\nwant {r.want_log}"
    assert r.params_equal and r.bit_exact
    assert r.steps == 2 and r.forwards == 2 * (1 + 2)
    assert r.changed > 0


@pytest.mark.icarus
@pytest.mark.skipif(not runner.have_icarus(), reason="Icarus Verilog not installed")
def test_icarus_small_table() -> None:
    _check(cosimulate_pinn([small_case(3, 2, 2, seed=5)], SMALL_SPEC, "icarus"))


@pytest.mark.icarus
@pytest.mark.skipif(not runner.have_icarus(), reason="Icarus Verilog not installed")
def test_icarus_zo_step_on_the_hjb_loss() -> None:
    r = cosimulate_pinn_zo(small_case(3, 2, 2, seed=0), SMALL_SPEC, "icarus", k_steps=1, n_queries=2)
    assert r.bit_exact, f"params equal {r.params_equal}; got {r.got_log} want {r.want_log}"


@pytest.mark.slow
def test_verilator_hjb20_level3() -> None:
    """The paper's network (21 -> 768 -> 768 -> 1) with the 925-node level-3 table, 2 collocation points."""
    (r,) = cosimulate_pinn([hjb_case(2)], HJB_SPEC, "verilator")
    _check([r])
    assert r.nodes == 925
