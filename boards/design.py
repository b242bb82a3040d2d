"""The real training design for a board: rtl/board_top.BoardTop sized for one MNIST TT network.

`board_params(profile, rank)` returns the `rtl.board_top.BoardParams` that one bitstream is
elaborated with: the paper's TT-MLP at `rank` (profile name ``ttzo-mnist-rR``, so the host's
`rtl.board_top.profile(name)` compiles the engine program for the same lane count and descriptor
layout), batch 64, N <= 10, and the TT engine's memories cut to what the network's program uses
(`engine_params`) instead of `EngineParams`' generous defaults: the state buffers hold the
largest absorption output (5,376 elements at r = 6), the input buffer one sample, the output
buffer one lane word, the core/bias memories the program's codes, and the sine table 16 entries
(the MNIST net uses ReLU; the descriptor layout does not depend on any of these maxima, so a
program compiled for the defaults runs unchanged).  The UART divisor and clock are the board's.

`engine_params` checks the result by compiling the network for it (`compile_network` refuses
a program beyond the maxima).
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from ttzo.golden.formats import DEFAULT_CONFIG, FixedConfig
from ttzo.golden.network import TTNet, mnist_tt

from .profiles import BoardProfile

#: Lanes of the ttzo-mnist-rR design the host compiles for (rtl/board_top.mnist_profile).
FULL_LANES = 16
#: Loss log entries (4 x 32-bit words each) the design keeps: 1024 in rtl's profile; 256 hold
#: 23 signRGE steps of N = 10, which the host reads back between RUN_STEPS calls.
LOG_DEPTH = 256


def engine_params(net: TTNet, lanes: int = FULL_LANES, drains: int = 1, cfg: FixedConfig = DEFAULT_CONFIG):
    """EngineParams whose memories are exactly as large as `net`'s program needs (lane-rounded)."""
    from ttzo.rtl.descriptors import EngineParams, compile_network

    big = EngineParams(lanes=lanes, drains=drains, buf_elems=1 << 20, in_elems=1 << 16, out_elems=1 << 16,
                       core_words=1 << 20, bias_words=1 << 16, sine_bits=4)
    codes = net.quantize(net.init(np.random.default_rng(0)), cfg)
    prog = compile_network(net, codes, cfg, big)
    st = [s.fields() for s in prog.steps]
    # A step writes the layout of the step after it: (its groups) x (its K) words of P lanes.
    state_words = max([st[i + 1]["n_groups"] * st[i + 1]["k_len"] for i in range(len(st) - 1)] + [1])
    in_words = st[0]["n_groups"] * st[0]["k_len"]
    out_words = math.ceil(prog.out_features / lanes)
    sine_bits = max(4, (len(prog.sine) - 1).bit_length()) if len(prog.sine) else 4
    ep = replace(big, buf_elems=state_words * lanes, in_elems=in_words * lanes, out_elems=out_words * lanes,
                 core_words=max(1, len(prog.cores)), bias_words=max(1, len(prog.biases)), sine_bits=sine_bits,
                 max_steps=max(len(st), 2))
    compile_network(net, codes, cfg, ep)          # raises FormatError if anything does not fit
    return ep


def board_params(profile: BoardProfile, rank: int = 6, cfg: FixedConfig = DEFAULT_CONFIG):
    """The BoardParams of the MNIST rank-`rank` training design on `profile`'s board."""
    from ttzo.rtl.board_top import mnist_profile

    bp = mnist_profile(rank)
    return replace(bp, engine=engine_params(bp.net, FULL_LANES, 1, cfg), log_depth=LOG_DEPTH,
                   uart_divisor=profile.uart_divisor, clock_hz=int(profile.clock_hz), cfg=cfg,
                   batch_banks=profile.batch_banks)


def full_core(profile: BoardProfile, rank: int = 6, cfg: FixedConfig = DEFAULT_CONFIG):
    """rtl/board_top.BoardTop (command processor + ZO trainer + TT engine) with its UART PHY."""
    from ttzo.rtl.board_top import BoardTop

    from .clocking import global_buffer
    return BoardTop(board_params(profile, rank, cfg), phy="uart", reset_buffer=global_buffer(profile.family))


def serial_params(profile: BoardProfile, rank: int = 6, cfg: FixedConfig = DEFAULT_CONFIG):
    """The BoardParams of the serial MNIST rank-`rank` design (rtl/board_top.serial_profile) on `profile`'s board."""
    from ttzo.rtl.board_top import serial_profile

    return replace(serial_profile(rank), uart_divisor=profile.uart_divisor, clock_hz=int(profile.clock_hz), cfg=cfg)


def serial_core(profile: BoardProfile, rank: int = 6, cfg: FixedConfig = DEFAULT_CONFIG):
    """rtl/serial_top.SerialTop (command processor + serial trainer, one MAC) with its UART PHY; its big
    memories in SPRAM where the device has them (docs/rtl-serial.md)."""
    from ttzo.rtl.serial_top import SerialTop

    from .clocking import RESET_GLOBAL, global_buffer
    return SerialTop(serial_params(profile, rank, cfg), phy="uart", use_spram=profile.capacity.spram >= 4,
                     reset_buffer=global_buffer(profile.family) if profile.family in RESET_GLOBAL else None)


#: Width of one hard multiplier's signed operands per family (SB_MAC16: 16 x 16; MULT18X18D, DSP48E1: 18 x 18+).
DSP_OPERAND_BITS = {"ice40": 16, "ecp5": 18, "xc7": 18}


def structural_misfits(profile: BoardProfile, bp) -> list[str]:
    """Reasons the full design cannot fit `profile`'s device, found before synthesis (empty if none found).

    Two lower bounds that need no synthesis: the TT engine's two state buffers are read P lanes x
    data_bits wide every cycle, so they live in block RAM unless all SPRAMs side by side are that
    wide; and each lane's data_bits x weight_bits product needs ceil(data_bits / operand) hard
    multipliers.
    """
    cap, ep = profile.capacity, bp.engine
    out = []
    state_bits = 2 * ep.buf_elems * ep.data_bits
    lane_read = ep.lanes * ep.data_bits
    bram_bits = cap.bram * cap.bram_bits
    if state_bits > bram_bits and lane_read > 16 * cap.spram:
        out.append(f"the two state buffers ({ep.buf_elems} x {ep.data_bits} bits each = {state_bits} bits, "
                   f"read {lane_read} bits a cycle) exceed all {cap.bram} block RAMs ({bram_bits} bits) and "
                   f"the {cap.spram} SPRAMs give {16 * cap.spram} bits a cycle")
    per_lane = math.ceil(ep.data_bits / DSP_OPERAND_BITS[profile.family]) if ep.weight_bits <= \
        DSP_OPERAND_BITS[profile.family] else 2 * math.ceil(ep.data_bits / DSP_OPERAND_BITS[profile.family])
    if ep.lanes * per_lane > cap.dsp:
        out.append(f"{ep.lanes} lanes of {ep.data_bits} x {ep.weight_bits}-bit products need "
                   f"{ep.lanes * per_lane} hard multipliers, the device has {cap.dsp}")
    return out
