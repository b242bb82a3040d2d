"""RegisteredMul (rtl/registered_mul.py): the generic registers against the arithmetic, and the ECP5
instance (MULT18X18D with its input and output registers) against the generic version, cycle by
cycle, in Icarus with the behavioural model sim/models/ecp5_mult18x18d.v."""
from pathlib import Path

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator

from ttzo.rtl.registered_mul import WIDTH, RegisteredMul, uses_ecp5_dsp
from ttzo.sim.runner import have_icarus, icarus_output

MODEL = Path(__file__).resolve().parents[1] / "sim" / "models" / "ecp5_mult18x18d.v"
LO, HI = -(1 << (WIDTH - 1)), (1 << (WIDTH - 1)) - 1


class _Ecp5:
    """Just enough of an ECP5 platform for RegisteredMul to pick the hard multiplier."""
    family = "ecp5"


def stimulus(n: int, seed: int) -> list[tuple[int, int, int, int]]:
    """(rst, en, a, b) per cycle: random operands, including the extremes, enable low 30 % of the time,
    a reset in the middle."""
    rng = np.random.default_rng(seed)
    a = rng.integers(LO, HI + 1, n)
    b = rng.integers(LO, HI + 1, n)
    a[:4], b[:4] = [LO, HI, LO, -1], [LO, LO, HI, -1]
    en = (rng.random(n) > 0.3).astype(int)
    rst = np.zeros(n, int)
    rst[n // 2] = 1
    return [(int(r), int(e), int(x), int(y)) for r, e, x, y in zip(rst, en, a, b)]


def generic_trace(stim) -> list[int]:
    """p after each cycle's clock edge, Amaranth simulator, generic registers."""
    dut = RegisteredMul()
    out: list[int] = []

    async def bench(ctx):
        for rst, en, a, b in stim:
            ctx.set(dut.a, a)
            ctx.set(dut.b, b)
            ctx.set(dut.en, en)
            await ctx.tick()
            out.append(ctx.get(dut.p))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return out


def reference(stim) -> list[int]:
    """The arithmetic the component promises: two enabled cycles from operands to product."""
    a_q = b_q = p = 0
    out = []
    for rst, en, a, b in stim:
        if rst:
            a_q = b_q = p = 0
        elif en:
            a_q, b_q, p = a, b, a_q * b_q
        out.append(p)
    return out


def test_generic_registers_match_the_arithmetic():
    stim = [s for s in stimulus(400, 1) if not s[0]]       # the Amaranth bench drives no reset
    assert generic_trace(stim) == reference(stim)


def test_platform_selects_the_hard_multiplier_only_on_ecp5():
    assert uses_ecp5_dsp(_Ecp5()) and not uses_ecp5_dsp(None)
    assert "MULT18X18D" in verilog.convert(RegisteredMul(), platform=_Ecp5(), emit_src=False)
    assert "MULT18X18D" not in verilog.convert(RegisteredMul(), emit_src=False)


@pytest.mark.skipif(not have_icarus(), reason="needs Icarus Verilog (iverilog, vvp)")
def test_ecp5_instance_matches_the_arithmetic(tmp_path: Path):
    stim = stimulus(600, 2)
    (tmp_path / "dut.v").write_text(verilog.convert(RegisteredMul(), name="dut", platform=_Ecp5(), emit_src=False))
    (tmp_path / "stim.hex").write_text("".join(
        f"{rst:01x}{en:01x}{a & 0x3FFFF:05x}{b & 0x3FFFF:05x}\n" for rst, en, a, b in stim))
    (tmp_path / "tb.v").write_text(f"""
module tb;
  reg clk = 0, rst = 0, en = 0;
  reg [17:0] a = 0, b = 0;
  wire [35:0] p;
  reg [47:0] mem [0:{len(stim) - 1}];
  integer i;
  dut u (.clk(clk), .rst(rst), .a(a), .b(b), .en(en), .p(p));
  initial begin
    $readmemh("stim.hex", mem);
    for (i = 0; i < {len(stim)}; i = i + 1) begin
      rst = mem[i][44]; en = mem[i][40]; a = mem[i][37:20]; b = mem[i][17:0];
      #1 clk = 1; #1 clk = 0;
      $display("%0d", $signed(p));
    end
    $finish;
  end
endmodule
""")
    out = icarus_output(tmp_path, ["tb.v", "dut.v", MODEL])
    got = [int(x) for x in out.split() if x.lstrip("-").isdigit()]
    assert got == reference(stim)
