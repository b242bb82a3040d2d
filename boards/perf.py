"""Derived performance of a build: cycles and seconds per forward pass, signRGE step and MNIST epoch.

Cycle model (stated in every report, docs/boards.md "Performance model"):
  forward cycles per sample  C_f = ceil(M / (P * u))        M = MACs per sample of the chosen
                                                             contraction orders (golden), P lanes,
                                                             u = lane utilisation
  signRGE step cycles        C_s = B * (N + 1) * C_f + N * ceil(D / P)
                                   (B samples, the unperturbed and N perturbed forward passes,
                                   then one update sweep that regenerates N xi words per
                                   parameter, D parameters, P per cycle)
  epoch                      ceil(60000 / B) steps; seconds = cycles / Fmax
  link                       the epoch's images and labels (785 bytes a sample) over the UART
                             at 10 bits a byte and `link_efficiency` payload/line bytes; reported
                             alone and added to the compute time (epoch_seconds: upload in series),
                             and overlapped with it (epoch_overlapped_seconds: the double-buffered
                             batch, first upload + per step max(step, next batch's upload)).
u defaults to 0.9 (the goal of issue 5) unless a measured value is given (`ttzo sim tt-engine
--json` reports `lane_utilisation`); a cycle count measured by simulation may replace C_f.
The golden model's time is measured on this CPU by running its signRGE steps (golden/optim.py)
on real MNIST batches and extrapolating to an epoch.
"""
from __future__ import annotations

import math
import os
import platform as _platform
import time
from dataclasses import asdict, dataclass

import numpy as np

from ttzo.golden.network import mnist_tt

MNIST_TRAIN = 60000
BYTES_PER_SAMPLE = 784 + 1
DEFAULT_UTILISATION = 0.9
DEFAULT_LINK_EFFICIENCY = 0.9


@dataclass(frozen=True)
class Perf:
    net: str
    lanes: int
    fmax_hz: float
    utilisation: float
    utilisation_source: str
    macs_per_sample: int
    forward_cycles: int
    step_forward_passes: int
    step_cycles: int
    steps_per_epoch: int
    epoch_cycles: int
    forward_seconds: float
    step_seconds: float
    epoch_compute_seconds: float
    epoch_link_seconds: float
    epoch_seconds: float
    baud: int
    formula: str
    #: The epoch when the host uploads batch k+1 while step k computes (double-buffered batch regions,
    #: host/backend_board.BoardStepper): the first batch's upload, then per step max(step compute, the
    #: next batch's upload) -- :func:`overlapped_epoch_seconds`.  batch_upload_seconds: one full batch.
    epoch_overlapped_seconds: float = 0.0
    batch_upload_seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def uart_seconds(nbytes: int, baud: int, link_efficiency: float = DEFAULT_LINK_EFFICIENCY) -> float:
    """Seconds to move `nbytes` of payload over the UART (10 bits a byte, `link_efficiency` payload/line)."""
    return nbytes * 10 / baud / link_efficiency


def overlapped_epoch_seconds(step_seconds: float, batch: int, baud: int,
                             link_efficiency: float = DEFAULT_LINK_EFFICIENCY) -> float:
    """An MNIST epoch with the next batch uploaded while a step computes (docs/board.md "Double-buffered
    batch"): upload(batch 0) + sum over the ceil(60000/B) steps of max(step_seconds, upload(next batch));
    the last step has no next batch in the epoch (golden/train.py's lookahead stops at the epoch's end).
    Batches are B samples but the last, 60000 mod B; 785 bytes a sample (pixels and label)."""
    steps = math.ceil(MNIST_TRAIN / batch)
    up = [uart_seconds(min(batch, MNIST_TRAIN - k * batch) * BYTES_PER_SAMPLE, baud, link_efficiency)
          for k in range(steps)] + [0.0]
    return up[0] + sum(max(step_seconds, up[k + 1]) for k in range(steps))


def perf_model(rank: int, lanes: int, fmax_hz: float, *, batch: int = 64, queries: int = 10, baud: int = 3_000_000,
               utilisation: float | None = None, forward_cycles: int | None = None,
               link_efficiency: float = DEFAULT_LINK_EFFICIENCY) -> Perf:
    if lanes < 1 or fmax_hz <= 0 or batch < 1 or queries < 1:
        raise ValueError("lanes, fmax, batch and queries must be positive")
    u = DEFAULT_UTILISATION if utilisation is None else utilisation
    if not 0 < u <= 1:
        raise ValueError(f"lane utilisation {u} outside (0, 1]")
    net = mnist_tt(rank)
    macs = net.macs("chosen")
    if forward_cycles is None:
        cf, source = math.ceil(macs / (lanes * u)), ("assumed" if utilisation is None else "given")
    else:
        cf, source = int(forward_cycles), "measured cycles"
    passes = batch * (queries + 1)
    cs = passes * cf + queries * math.ceil(net.n_params / lanes)
    steps = math.ceil(MNIST_TRAIN / batch)
    ce = steps * cs
    compute = ce / fmax_hz
    link = MNIST_TRAIN * BYTES_PER_SAMPLE * 10 / baud / link_efficiency
    return Perf(net.name, lanes, fmax_hz, u, source, macs, cf, passes, cs, steps, ce, cf / fmax_hz, cs / fmax_hz,
                compute, link, compute + link, baud,
                "C_f = ceil(M/(P*u)); C_s = B*(N+1)*C_f + N*ceil(D/P); epoch = ceil(60000/B)*C_s/Fmax "
                "+ 60000*785*10/(baud*eff)",
                epoch_overlapped_seconds=overlapped_epoch_seconds(cs / fmax_hz, batch, baud, link_efficiency),
                batch_upload_seconds=uart_seconds(batch * BYTES_PER_SAMPLE, baud, link_efficiency))


#: Cycle counts of the full design (rtl/board_top: ZO trainer + TT engine, P = 16, one drain), MNIST TT
#: r = 6, batch 64, measured by cosimulation (docs/rtl-zo.md, `ttzo sim zo-step --optimizer signrge --rank 6
#: --batch 64 --steps 1 --queries 2 --json`: 5,119,467 cycles for one signRGE step with N = 2, i.e. three
#: forward passes plus the update pass) and docs/rtl.md (TT engine alone, P = 16, drains = 1: 26,567
#: cycles per sample).  At that measurement the update pass cost n_params + N_max + 10 cycles
#: (rtl/zo_update.SignRgeUpdate, N_max = 10 in the design whatever N is).
FULL_R6_STEP_N2_CYCLES = 5_119_467
#: The update pass then (see above) and now: SignRgeUpdate(10).pass_cycles(3962) = (N_max + 1) *
#: n_params + N_max + 15 (49-bit d_i) since the engine became serial (one multiplier datapath, the
#: N_max streams one after another plus an idle cycle: N_max + 1 cycles per parameter; docs/rtl-zo.md;
#: tests/test_rtl_zo_update.py) -- 43,607 cycles, 0.23 % of a step with N = 10; the parallel engine
#: took n_params + N_max + ceil(log2 N_max) + 18 = 3,994.
FULL_R6_UPDATE_CYCLES_MEASURED = 3962 + 10 + 10
FULL_R6_UPDATE_CYCLES = 11 * 3962 + 10 + 15
#: Cycles each load pass gained with the perturber's pipeline (rtl/perturb.Perturber.LATENCY: the
#: load pass drains it before the engine starts).
FULL_R6_LOAD_DRAIN_CYCLES = 7
FULL_R6_SAMPLE_CYCLES = 26_567
FULL_R6_PARAMS = 3962
#: Cycles the timing pipeline stages added after those measurements cost per sample (rtl/tt_engine.py):
#: 5 drain stages (the last the registered bias read, d2r) of fill in each of the 8 absorption steps,
#: and 2 MAC stages (operand and product registers) in the 6 steps whose pace the MAC lanes set (in
#: the 2 drain-bound steps, K = 7 and 8 < P = 16, the MAC pipeline waits for the drain anyway).
#: Measured: 26,618.85 cycles per sample (`ttzo sim tt-engine --net mnist --rank 6 --lanes 16
#: --drains 1 --samples 20 --json`, Verilator) against the 26,567 above, i.e. +51.85.  A third MAC
#: stage (issue #9, the fabric operand registers x_r/g_r in front of the multipliers) costs one more
#: cycle in each of the same 6 steps: 26,778.25 -> 26,784.25 cycles per sample (same command with
#: --samples 4, before and after the change).
FULL_R6_TIMING_CYCLES_PER_SAMPLE = 5 * 8 + 3 * 6
#: Cycles each forward pass gained with the loss unit's pipeline: its last sample is counted
#: rtl/loss_unit.latency(10) = 28 clock edges after its last logit instead of 2C + 2 = 22.
FULL_R6_LOSS_DRAIN_CYCLES = 28 - 22
#: Cycles each forward pass gained with the trainer's timing registers (fifth session of issue #9,
#: rtl/zo_trainer.py): the batch memory's banked 3-cycle read ahead of the engine's first input, and the
#: register between the engine's logits and the loss unit (+3 + 1 per pass, measured in Amaranth runs).
FULL_R6_TRAINER_GLUE_CYCLES = 3 + 1


def full_design_perf(fmax_hz: float, *, queries: int = 10, batch: int = 64, baud: int = 3_000_000,
                     link_efficiency: float = DEFAULT_LINK_EFFICIENCY) -> Perf:
    """Epoch time of the full design from its simulated cycle counts (MNIST r = 6, B = 64 only).

    A forward pass of the batch (load pass + 64 samples + loss) is F = (S_2 - U') / 3 cycles,
    S_2 the measured N = 2 step and U' = n_params + 20 its update pass; a step with N queries
    is (N + 1) F + U, U = 11 n_params + 25 the (serial) update pass now (each random query adds its seeding and
    checkpoint walk, ~n_params cycles, to F's load pass: the N = 2 measurement includes two of the
    three, so this is within 0.1 %).  F also gets the fill cycles of the pipeline stages added for
    timing after the measurement (engine stages per sample, the perturber's drain per load pass).
    """
    if batch != 64:
        raise ValueError("the full design's cycle counts were measured with batch 64")
    fwd = round((FULL_R6_STEP_N2_CYCLES - FULL_R6_UPDATE_CYCLES_MEASURED) / 3) \
        + batch * FULL_R6_TIMING_CYCLES_PER_SAMPLE + FULL_R6_LOAD_DRAIN_CYCLES + FULL_R6_LOSS_DRAIN_CYCLES \
        + FULL_R6_TRAINER_GLUE_CYCLES
    cs = (queries + 1) * fwd + FULL_R6_UPDATE_CYCLES
    steps = math.ceil(MNIST_TRAIN / batch)
    ce = steps * cs
    compute = ce / fmax_hz
    link = MNIST_TRAIN * BYTES_PER_SAMPLE * 10 / baud / link_efficiency
    net = mnist_tt(6)
    macs = net.macs("chosen")
    return Perf(net.name, 16, fmax_hz, macs / (16 * FULL_R6_SAMPLE_CYCLES),
                "measured cycles (cosimulation of the full design)", macs, FULL_R6_SAMPLE_CYCLES,
                batch * (queries + 1), cs, steps, ce, FULL_R6_SAMPLE_CYCLES / fmax_hz, cs / fmax_hz, compute, link,
                compute + link, baud,
                f"F = (S_2 - U')/3 + 64*{FULL_R6_TIMING_CYCLES_PER_SAMPLE} + {FULL_R6_LOAD_DRAIN_CYCLES} + {FULL_R6_LOSS_DRAIN_CYCLES} + {FULL_R6_TRAINER_GLUE_CYCLES} = {fwd} cycles per forward pass of 64 "
                f"samples (S_2 = {FULL_R6_STEP_N2_CYCLES} simulated; + the pipeline stages added since); C_s = (N+1)*F + U, U = 11*D + 25 cycles of serial update pass (N_max = 10); epoch = ceil(60000/64)*C_s/Fmax + 60000*785*10/(baud*eff)",
                epoch_overlapped_seconds=overlapped_epoch_seconds(cs / fmax_hz, batch, baud, link_efficiency),
                batch_upload_seconds=uart_seconds(batch * BYTES_PER_SAMPLE, baud, link_efficiency))


def serial_design_perf(fmax_hz: float, *, queries: int = 10, batch: int = 64, baud: int = 3_000_000,
                       rank: int = 6, link_efficiency: float = DEFAULT_LINK_EFFICIENCY) -> Perf:
    """Epoch time of the serial design (rtl/serial_top.SerialTop, one MAC; docs/rtl-serial.md) from its
    cycle formulas, each checked against simulation by the blocks' tests: the engine's cycles per sample
    (rtl/serial_program.SerialProgram.cycles), the loss unit's worst-case latency
    (rtl/serial_loss.max_latency) and the trainer's step (rtl/serial_trainer.step_cycles)."""
    from ttzo.golden.formats import DEFAULT_CONFIG
    from ttzo.rtl.serial_loss import max_latency
    from ttzo.rtl.serial_program import compile_serial
    from ttzo.rtl.serial_trainer import step_cycles

    net = mnist_tt(rank)
    prog = compile_serial(net, DEFAULT_CONFIG)
    cf = prog.cycles()
    sample = cf + max_latency(net.out_features, DEFAULT_CONFIG.act, DEFAULT_CONFIG.loss)
    cs = step_cycles(net.n_params, queries, batch, sample)
    steps = math.ceil(MNIST_TRAIN / batch)
    ce = steps * cs
    compute = ce / fmax_hz
    link = MNIST_TRAIN * BYTES_PER_SAMPLE * 10 / baud / link_efficiency
    macs = net.macs("chosen")
    return Perf(net.name, 1, fmax_hz, macs / cf, "cycle formulas of the serial design's blocks (checked by simulation)",
                macs, cf, batch * (queries + 1), cs, steps, ce, cf / fmax_hz, cs / fmax_hz, compute, link,
                compute + link, baud,
                f"C_f = {cf} engine cycles per sample (SerialProgram.cycles); T = C_f + loss latency <= {sample}; "
                "C_s = serial_trainer.step_cycles(D, N, B, T); epoch = ceil(60000/B)*C_s/Fmax + 60000*785*10/(baud*eff) "
                "(one batch bank: uploads in series)",
                epoch_overlapped_seconds=compute + link,
                batch_upload_seconds=uart_seconds(batch * BYTES_PER_SAMPLE, baud, link_efficiency))


def machine() -> str:
    """CPU model, core count, OS and Python of this machine (for reports)."""
    cpu = _platform.processor() or _platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, {_platform.system()} {_platform.release()}, " \
           f"Python {_platform.python_version()}"


def golden_step_seconds(rank: int = 6, steps: int = 3, batch: int = 64, queries: int = 10,
                        arith: str = "fixed", data_dir: str | None = None) -> dict:
    """Seconds per signRGE step of the golden model on this CPU (median of `steps` after one warm-up).

    Uses real MNIST batches when the loader finds them, else random pixels (said in the result).
    The time depends on the data: golden's evaluator (golden/fastforward.py) runs fixed point on
    float64 BLAS only while its exactness checks hold, and uniformly random pixels make it take the
    slower path (seventh session, 2-core VM: 0.18 s per step on random pixels, 0.073 s on MNIST, same
    load), so the MNIST figure is the one to compare a board with.
    """
    from ttzo.golden.formats import DEFAULT_CONFIG
    from ttzo.golden.optim import GoldenStepper, OptimConfig, OptState, initial_phase

    try:
        from ttzo.golden.mnist import load_mnist
        data = load_mnist(data_dir or os.environ.get("TTZO_DATA"))
        X, Y, source = data.train_images, data.train_labels.astype(np.int64), "MNIST"
    except Exception:  # noqa: BLE001 - no MNIST here: time random pixels and say so
        rng = np.random.default_rng(0)
        X = rng.integers(0, 256, (batch * (steps + 1), 784), dtype=np.uint8)
        Y = rng.integers(0, 10, batch * (steps + 1))
        source = ("random pixels (MNIST not found: set TTZO_DATA; golden is ~2.5x slower on random pixels "
                  "than on MNIST, so this flatters the board)")
    net = mnist_tt(rank)
    oc = OptimConfig(optimizer="signrge", queries=queries)
    fixed = DEFAULT_CONFIG if arith == "fixed" else None
    stepper = GoldenStepper(net, oc, 0, batch, fixed)
    params = net.init(np.random.default_rng(1))
    theta = net.flatten(net.quantize(params, fixed)).astype(np.int64) if fixed else net.flatten(params)
    st = OptState(theta=theta, momentum=np.zeros_like(theta), phase=initial_phase(oc))
    times, cpu, evaluations = [], [], 0
    for i in range(steps + 1):
        sl = slice(i * batch, (i + 1) * batch)
        t, c = time.perf_counter(), time.process_time()
        r = stepper.step(st, X[sl], Y[sl], 0)
        if i:
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
            evaluations = r.evaluations
    per_step = float(np.median(times))
    epoch_steps = math.ceil(MNIST_TRAIN / batch)
    return {"arith": arith, "rank": rank, "batch": batch, "queries": queries, "steps_timed": steps,
            "evaluations_per_step": evaluations, "step_seconds": per_step,
            "epoch_seconds": per_step * epoch_steps, "step_cpu_seconds": float(np.median(cpu)),
            "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "data": source, "machine": machine()}
