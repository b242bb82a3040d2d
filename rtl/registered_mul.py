"""Registered signed multiplier: operands registered, product registered, both under one enable.

``p`` is, one enabled cycle after the operands were registered, ``a_q * b_q`` (signed 18 x 18 ->
36 bit), with ``a_q``/``b_q`` the values of ``a``/``b`` at the previous enabled cycle.  Two enabled
cycles from operand to product, the same as an operand register followed by a product register.

Why a component: on the ECP5 the two register stages are the hard multiplier's own input and output
registers (MULT18X18D with REG_INPUTA/B_CLK and REG_OUTPUT_CLK), so neither the route into the DSP
column nor the route out of it is in series with the multiplication (the full design's routed
critical paths ran fabric register -> MULT18X18D -> fabric register, docs/boards.md).  Yosys does
not pack fabric registers into ECP5 multipliers itself, so the primitive is instantiated when the
platform is an ECP5; everywhere else (simulation, cosimulation, iCE40, 7-series) the same behaviour
is plain Amaranth, which is what every bit-exact test runs.  `tests/test_rtl_registered_mul.py` checks
the instance's wiring against a behavioural model of the primitive (Icarus).
"""

from amaranth.hdl import ClockSignal, Const, Instance, Module, ResetSignal, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

WIDTH = 18
"""Operand width of the hard multiplier (ECP5 MULT18X18D)."""


def uses_ecp5_dsp(platform) -> bool:
    """True when elaborating for an ECP5 (the hard multiplier with its registers is instantiated)."""
    return platform is not None and getattr(platform, "family", None) == "ecp5"


class RegisteredMul(wiring.Component):
    """``p`` = ``a_q * b_q``, operands and product registered while ``en`` is high (see module doc).

    Registers reset to 0 with the ``sync`` domain, on the ECP5 too (synchronous reset of the DSP's
    registers), so the generic and the hard version hold the same values in every cycle."""

    a: In(signed(WIDTH))
    b: In(signed(WIDTH))
    en: In(1)
    p: Out(signed(2 * WIDTH))

    def elaborate(self, platform) -> Module:
        m = Module()
        if uses_ecp5_dsp(platform):
            ports = {f"i_A{k}": self.a[k] for k in range(WIDTH)}
            ports.update({f"i_B{k}": self.b[k] for k in range(WIDTH)})
            # C tied low like Yosys' own mapping; the cascade inputs SRIA/SRIB are left open (only
            # the neighbouring DSP can drive them: a constant there cannot be routed)
            ports.update({f"i_C{k}": Const(0, 1) for k in range(WIDTH)})
            ports.update({f"o_P{k}": self.p[k] for k in range(2 * WIDTH)})
            ports.update({"i_CLK0": ClockSignal("sync"), "i_CE0": self.en, "i_RST0": ResetSignal("sync")})
            ports.update({"i_SIGNEDA": Const(1, 1), "i_SIGNEDB": Const(1, 1),
                          "i_SOURCEA": Const(0, 1), "i_SOURCEB": Const(0, 1)})
            params = {"p_REG_INPUTA_CLK": "CLK0", "p_REG_INPUTA_CE": "CE0", "p_REG_INPUTA_RST": "RST0",
                      "p_REG_INPUTB_CLK": "CLK0", "p_REG_INPUTB_CE": "CE0", "p_REG_INPUTB_RST": "RST0",
                      "p_REG_INPUTC_CLK": "NONE", "p_REG_PIPELINE_CLK": "NONE",
                      "p_REG_OUTPUT_CLK": "CLK0", "p_REG_OUTPUT_CE": "CE0", "p_REG_OUTPUT_RST": "RST0",
                      "p_CLK0_DIV": "ENABLED", "p_CLK1_DIV": "ENABLED", "p_CLK2_DIV": "ENABLED",
                      "p_CLK3_DIV": "ENABLED", "p_HIGHSPEED_CLK": "NONE", "p_GSR": "DISABLED",
                      "p_CAS_MATCH_REG": "FALSE", "p_SOURCEB_MODE": "B_SHIFT", "p_MULT_BYPASS": "DISABLED",
                      "p_RESETMODE": "SYNC"}
            m.submodules.dsp = Instance("MULT18X18D", **params, **ports)
        else:
            a_q, b_q = Signal(signed(WIDTH)), Signal(signed(WIDTH))
            with m.If(self.en):
                m.d.sync += [a_q.eq(self.a), b_q.eq(self.b), self.p.eq(a_q * b_q)]
        return m
