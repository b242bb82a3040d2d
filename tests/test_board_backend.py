"""Host side of the board backend without a simulator: identify records, profiles, program upload, refusals."""
from __future__ import annotations

import numpy as np
import pytest

from ttzo.golden.formats import DEFAULT_CONFIG
from ttzo.golden.network import mnist_tt
from ttzo.golden.optim import OptimConfig
from ttzo.host import protocol as P
from ttzo.host.backend_board import BoardSession, BoardStepper, RunResult
from ttzo.host.board import BoardError, bytes_to_words
from ttzo.rtl import board_top as T


class FakeBoard:
    """Records region writes and configuration; enough of host.board.Board for BoardSession."""

    def __init__(self, info: P.Identify) -> None:
        self.info, self.url = info, "fake://"
        self.writes: list[tuple[int, int, bytes]] = []
        self.config = [0] * info.n_config

    def read_config(self, first: int = 0, count: int | None = None) -> list[int]:
        return self.config[first:first + (count or len(self.config))]

    def configure(self, first: int, values) -> None:
        self.config[first:first + len(values)] = list(values)

    def write_region(self, rid: int, data: bytes, offset: int = 0) -> None:
        r = self.info.region(rid)
        assert offset % r.word_bytes == 0 and len(data) % r.word_bytes == 0 and offset + len(data) <= r.size
        self.writes.append((rid, offset, bytes(data)))


@pytest.mark.parametrize("phy", ["stream", "uart"])
def test_identify_record_round_trips(phy: str) -> None:
    bp = T.small_profile()
    ident = bp.identify(phy)
    assert P.Identify.decode(ident.encode()) == ident
    assert ident.fixed_config() == DEFAULT_CONFIG
    assert ident.region(P.Region.PARAMS).depth == bp.net.n_params == 210
    assert ident.region(P.Region.BATCH).size == bp.max_samples * 784
    assert not ident.region(T.REGION_LOG).writable
    caps = ident.to_dict()["capabilities"]
    assert {"inference", "steps", phy if phy == "uart" else "stream"} <= set(caps)
    assert ident.n_config == T.CFG_SEGMENTS + bp.max_segments + 1 and ident.n_results == T.N_RESULTS
    assert bp.bank_config == ident.n_config - 1                     # the batch-bank register comes last
    nxt = [ident.region(P.Region.BATCH_NEXT), ident.region(P.Region.LABELS_NEXT)]
    assert [r.size for r in nxt] == [ident.region(P.Region.BATCH).size, ident.region(P.Region.LABELS).size]
    assert all(r.writable and r.busy_writable and not r.flags & P.REGION_FLAG_READABLE for r in nxt)
    assert not any(r.busy_writable for r in ident.regions if r not in nxt)


def test_profiles_by_name() -> None:
    assert T.profile("ttzo-small").net.n_params == 210
    assert T.profile("ttzo-mnist-r6").net.describe() == mnist_tt(6).describe()
    with pytest.raises(ValueError, match="unknown board design"):
        T.profile("ttzo-link")
    with pytest.raises(ValueError, match="longer than 16"):
        T.BoardParams("x" * 17, T.small_profile().net, T.small_profile().engine)


def test_program_upload_covers_every_engine_word_but_cores_and_biases() -> None:
    from ttzo.rtl.descriptors import REGION_BIASES, REGION_CORES, REGION_SHIFT, compile_network
    bp = T.small_profile()
    fb = FakeBoard(bp.identify())
    s = BoardSession(fb)
    n = s.load_program()
    got = {}
    for rid, off, data in fb.writes:
        assert rid == T.REGION_PROGRAM
        for k, w in enumerate(bytes_to_words(data, 32, signed=False).tolist()):
            got[off // 4 + k] = w
    prog = compile_network(bp.net, bp.net.unflatten(np.zeros(bp.net.n_params, np.int64)), bp.cfg, bp.engine)
    want = {a: d for a, d in prog.bus_writes() if (a >> REGION_SHIFT) not in (REGION_CORES, REGION_BIASES)}
    assert got == want and n == len(want)


def test_registers_hold_the_segment_table_and_step_codes() -> None:
    bp = T.small_profile()
    s = BoardSession(FakeBoard(bp.identify()))
    regs = s.registers(seed=5, step0=9, n_samples=8, queries=3, mu=0.1, alpha=0.01)
    sizes, mask = bp.net.param_sizes(), bp.net.bias_mask()
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    assert regs[T.CFG_N_SEGMENTS] == len(sizes)
    assert [regs[T.CFG_SEGMENTS + k] for k in range(len(sizes))] == \
        [int(a) | (int(mask[a]) << 31) for a in starts]
    # mu = 0.1 in s16.13 (cores) and s16.10 (biases), alpha = 0.01 likewise, rounded half up
    assert (regs[T.CFG_MU_W], regs[T.CFG_MU_B]) == (int(0.1 * 2**13 + 0.5), int(0.1 * 2**10 + 0.5))
    assert (regs[T.CFG_ALPHA_W], regs[T.CFG_ALPHA_B]) == (int(0.01 * 2**13 + 0.5), int(0.01 * 2**10 + 0.5))
    assert (regs[T.CFG_SEED], regs[T.CFG_STEP0], regs[T.CFG_N_SAMPLES], regs[T.CFG_N_QUERIES]) == (5, 9, 8, 3)


def test_session_refuses_what_the_design_cannot_hold() -> None:
    bp = T.small_profile()
    s = BoardSession(FakeBoard(bp.identify()))
    x = np.zeros((8, 784), np.int64)
    with pytest.raises(ValueError, match="labels must be classes 0..9"):
        s.load_batch(x, np.full(8, 10))
    with pytest.raises(ValueError, match="holds 1..8"):
        s.load_batch(np.zeros((9, 784), np.int64), np.zeros(9, np.int64))
    with pytest.raises(ValueError, match="at most 4"):
        s.registers(seed=1, step0=0, n_samples=8, queries=5)
    with pytest.raises(ValueError, match="expected 210"):
        s.load_params(np.zeros(100, np.int64))
    other = bp.identify()
    other = P.Identify(**{**other.__dict__, "name": "ttzo-link"})
    with pytest.raises(BoardError, match="unknown board design"):
        BoardSession(FakeBoard(other))


@pytest.mark.parametrize("oc, fixed, msg", [
    (OptimConfig(optimizer="cge"), DEFAULT_CONFIG, "only 'signrge'"),
    (OptimConfig(optimizer="signrge", central=True), DEFAULT_CONFIG, "forward differences"),
    (OptimConfig(optimizer="signrge"), None, "fixed point"),
])
def test_stepper_refuses_what_the_trainer_does_not_run(oc, fixed, msg) -> None:
    bp = T.small_profile()
    s = BoardSession(FakeBoard(bp.identify()))
    with pytest.raises(BoardError, match=msg):
        BoardStepper(s, bp.net, oc, 0, 8, fixed)
    with pytest.raises(BoardError, match="built for small-mnist-r2"):
        BoardStepper(s, mnist_tt(2), OptimConfig(optimizer="signrge"), 0, 8, DEFAULT_CONFIG)


def test_run_result_decodes_signed_48_bit_loss() -> None:
    r = [0] * T.N_RESULTS
    r[T.RES_L0_LO], r[T.RES_L0_HI] = 0xFFFFFFFE, 0xFFFFFFFF          # -2 sign-extended to 64 bits
    r[T.RES_CYCLES_LO], r[T.RES_CYCLES_HI] = 5, 1
    res = RunResult.of(r)
    assert res.loss0 == -2 and res.cycles == (1 << 32) + 5


def test_double_buffered_session_addresses_the_banks() -> None:
    """BATCH/LABELS go to the bank the trainer reads, BATCH_NEXT/LABELS_NEXT to the other; the bank is a
    configuration register the session keeps in every register file it writes."""
    bp = T.small_profile()
    fb = FakeBoard(bp.identify())
    fb.config[bp.bank_config] = 1                       # the board was left on bank 1: the session reads it
    s = BoardSession(fb)
    assert (s.banks, s.bank) == (2, 1)
    x, y = np.arange(8 * 784).reshape(8, 784) % 256, np.arange(8) % 10
    s.load_batch(x, y)
    s.load_batch(x[::-1], y[::-1], next_bank=True)
    assert [(rid, off) for rid, off, _ in fb.writes] == [(P.Region.BATCH, 0), (P.Region.LABELS, 0),
                                                         (P.Region.BATCH_NEXT, 0), (P.Region.LABELS_NEXT, 0)]
    assert fb.writes[2][2] == np.asarray(x[::-1], np.uint8).tobytes()
    assert s.registers(seed=1, step0=0, n_samples=8)[bp.bank_config] == 1
    regs = s.configure_signrge(seed=1, step0=0, n_samples=8, bank=0)
    assert regs[bp.bank_config] == 0 == s.bank == fb.config[bp.bank_config] and len(regs) == bp.n_config
    s.select_bank(1)
    assert s.bank == 1 == fb.config[bp.bank_config]


def test_session_adapts_to_a_single_bank_bitstream() -> None:
    """A board built before double buffering (no BATCH_NEXT, one register fewer) still trains: the session
    writes its register file without the bank register and refuses next-bank uploads."""
    from dataclasses import replace
    old = replace(T.small_profile(), batch_banks=1)
    fb = FakeBoard(old.identify())
    s = BoardSession(fb)
    assert s.banks == 1 and s.bp.batch_banks == 1 and len(s.registers(seed=1, step0=0, n_samples=8)) == old.n_config
    with pytest.raises(BoardError, match="one batch bank"):
        s.load_batch(np.zeros((8, 784), np.int64), np.zeros(8, np.int64), next_bank=True)
    st = BoardStepper(s, old.net, OptimConfig(optimizer="signrge"), 0, 8, DEFAULT_CONFIG)
    st.prefetch(np.zeros((8, 784)), np.zeros(8))
    assert st._upcoming is None and not st.double_buffered


def test_banked_design_refuses_a_bad_bank_register() -> None:
    """rtl/board_top.runnable and its Python statement (sim/board_fuzz.config_problems) agree: bank 0/1 only."""
    from ttzo.sim.board_fuzz import config_problems, runnable_in_rtl
    bp = T.small_profile()
    good = BoardSession(FakeBoard(bp.identify())).registers(seed=1, step0=0, n_samples=8, queries=2)
    files = []
    for v in (0, 1, 2, 0x80000001):
        regs = list(good)
        regs[bp.bank_config] = v
        files.append(regs)
    assert [not config_problems(bp, f) for f in files] == [True, True, False, False] == runnable_in_rtl(bp, files)


# --- lazy parameter read-back (BoardStepper.lazy / sync, golden/train.py) -------------------------------
# An in-process board (sim/link_model.LinkModel, the protocol's reference) whose engine runs golden's
# signRGE steps (sim/tb_zo_golden.signrge_steps) on its PARAMS/BATCH/LABELS with the configured codes, so
# golden/train.py's loop runs through the real driver and session in a second; the single-bank register
# map (the model has no bank switching).  The RTL's own run is the Verilator test further down.

class Tap:
    """A transport wrapper that counts the frames the host sent, by command (and region for region
    commands), and calls `hook(name, n, when)` before and after writing the n-th such frame (to inject
    interrupts; a frame whose "before" hook raises is not sent)."""

    def __init__(self, t, hook=None) -> None:
        self.t, self.url, self.hook = t, t.url, hook
        self.sent: dict[str, int] = {}
        self.split = P.FrameSplitter()

    @staticmethod
    def name(f: P.Frame) -> str:
        n = P.Cmd(f.command).name
        return f"{n}:{P.Region(f.payload[0]).name}" if f.command in (P.Cmd.READ_REGION, P.Cmd.WRITE_REGION) else n

    def write(self, data: bytes) -> None:
        names = [self.name(P.decode_body(P.slip_unescape(raw))) for raw in self.split.feed(data)]
        for n in names:
            if self.hook:
                self.hook(n, self.sent.get(n, 0) + 1, "before")
        self.t.write(data)
        for n in names:
            self.sent[n] = self.sent.get(n, 0) + 1
            if self.hook:
                self.hook(n, self.sent[n], "after")

    def read(self, max_bytes: int, timeout: float) -> bytes:
        return self.t.read(max_bytes, timeout)

    def close(self) -> None:
        self.t.close()


def golden_engine(bp: T.BoardParams):
    """LinkModel engine: RUN_STEPS K = K golden signRGE steps from the registers; results as the RTL's."""
    from ttzo.host.board import words_to_bytes
    from ttzo.sim.tb_zo_golden import signrge_steps
    net, cfg = bp.net, bp.cfg

    def engine(model, op: int, arg: int) -> int:
        if op != P.Op.STEPS:
            return T.ERR_CONFIG
        c, res = model.config, model.results
        n, N = c[T.CFG_N_SAMPLES], c[T.CFG_N_QUERIES]
        theta = bytes_to_words(bytes(model.mem[P.Region.PARAMS][:2 * net.n_params]), 16)
        x = np.frombuffer(bytes(model.mem[P.Region.BATCH][:784 * n]), np.uint8).astype(np.int64).reshape(n, 784)
        y = np.frombuffer(bytes(model.mem[P.Region.LABELS][:n]), np.uint8).astype(np.int64)
        new, log = signrge_steps(net, theta, x, y, seed=c[T.CFG_SEED], step0=c[T.CFG_STEP0], k_steps=arg,
                                 n_queries=N, mu_w=c[T.CFG_MU_W], mu_b=c[T.CFG_MU_B], alpha_w=c[T.CFG_ALPHA_W],
                                 alpha_b=c[T.CFG_ALPHA_B], kind="gaussian" if c[T.CFG_KIND] else "rademacher",
                                 cfg=cfg)
        model.mem[P.Region.PARAMS][:2 * net.n_params] = words_to_bytes(new, 16)
        l0, correct = log[-(1 + N)]
        res[T.RES_STEPS], res[T.RES_FORWARDS], res[T.RES_CORRECT] = arg, arg * (1 + N), correct
        res[T.RES_L0_LO], res[T.RES_L0_HI] = l0 & 0xFFFFFFFF, (l0 >> 32) & 0xFFFFFFFF
        res[T.RES_OPS] = (res[T.RES_OPS] + 1) & 0xFFFFFFFF
        return 0

    return engine


RANK, EPOCHS, STEPS_PER_EPOCH = 1, 2, 4


@pytest.fixture(scope="module")
def golden_board_model():
    """One model board (ttzo-mnist-r1, single bank) for the module: (LinkModel, BoardParams)."""
    from dataclasses import replace
    from ttzo.sim.link_model import LinkModel
    bp = replace(T.mnist_profile(RANK), batch_banks=1)
    return LinkModel(bp.identify("uart"), golden_engine(bp)), bp


@pytest.fixture(scope="module")
def mnist(mnist_dir):
    from ttzo.golden.mnist import load_mnist
    return load_mnist(mnist_dir)


def _cfg(out, **kw):
    from ttzo.golden.train import TrainConfig
    return TrainConfig(arith="fixed", rank=RANK, epochs=EPOCHS, seed=4, batch=64, out=str(out),
                       train_samples=64 * STEPS_PER_EPOCH, test_samples=100,
                       optim=OptimConfig(optimizer="signrge", queries=2), **kw)


def _board_stepper(model, cfg, hook=None) -> tuple[BoardStepper, Tap]:
    from ttzo.host.board import Board
    from ttzo.sim.link_model import ModelTransport
    tap = Tap(ModelTransport(model), hook)
    b = Board(tap, timeout=1.0)
    b.identify()
    return BoardStepper(BoardSession(b), mnist_tt(cfg.rank), cfg.optim, cfg.seed, cfg.batch, cfg.fixed_config()), tap


def _interrupt_at(name: str, count: int, when: str, also: tuple | None = None):
    """A Tap hook raising KeyboardInterrupt at the `count`-th frame `name` (`when`: before/after writing it)
    and, if `also` = (name, when), once more at the next such frame."""
    def hook(n, k, w):
        if (n, k, w) == (name, count, when) or (hook.armed and (n, w) == also):
            hook.armed = not hook.armed and also is not None
            raise KeyboardInterrupt
    hook.armed = False
    return hook


@pytest.fixture(scope="module")
def golden_run(tmp_path_factory, mnist):
    from ttzo.golden.train import train_mnist
    return train_mnist(_cfg(tmp_path_factory.mktemp("golden")), data=mnist, progress=False)


def _strip(metrics):
    from ttzo.golden.train import TIME_KEYS
    return [{k: v for k, v in m.items() if k not in TIME_KEYS} for m in metrics]


def test_loop_reads_the_parameters_once_per_epoch_bit_exact(tmp_path, mnist, golden_board_model, golden_run) -> None:
    """golden/train.py through the board: 8 steps, 2 epochs; theta and every metric equal the golden
    backend's, and the parameters crossed the link twice (the epochs' ends), not after each step."""
    from ttzo.golden.train import load_checkpoint, train_mnist
    model, bp = golden_board_model
    c = _cfg(tmp_path)
    stepper, tap = _board_stepper(model, c)
    res = train_mnist(c, data=mnist, progress=False, stepper=stepper)
    assert np.array_equal(res.theta, golden_run.theta) and _strip(res.metrics) == _strip(golden_run.metrics)
    per_read = -(-2 * bp.net.n_params // bp.identify().max_payload)          # READ_REGION frames per read-back
    assert tap.sent["RUN_STEPS"] == EPOCHS * STEPS_PER_EPOCH == res.final["steps"]
    assert stepper.param_reads == EPOCHS and tap.sent["READ_REGION:PARAMS"] == EPOCHS * per_read
    per_write = -(-2 * bp.net.n_params // ((bp.identify().max_payload - P.WRITE_HDR.size) // 2 * 2))
    assert tap.sent["WRITE_REGION:PARAMS"] == per_write                       # the initial parameters, once
    assert stepper.lazy is False                                              # the loop restored the flag
    for e in (1, 2):
        assert np.array_equal(load_checkpoint(tmp_path / f"checkpoint-e00{e}.npz")["theta"],
                              load_checkpoint(golden_run.out / f"checkpoint-e00{e}.npz")["theta"])


@pytest.mark.parametrize("frame, when, steps_done", [
    ("CONFIGURE", "before", 2),     # step 3 interrupted before RUN_STEPS: rolled back (the board holds theta_2)
    ("RUN_STEPS", "before", 2),     # ... while sending RUN_STEPS, which never reached the board (RES_OPS tells)
    ("RUN_STEPS", "after", 3),      # step 3 interrupted once running on the board: finished and counted
], ids=["before-configure", "before-run", "after-run"])
def test_interrupt_leaves_a_checkpoint_at_a_step_boundary(tmp_path, mnist, golden_board_model, golden_run,
                                                          frame, when, steps_done) -> None:
    """An interrupt (second Ctrl-C) in the third step of epoch 0: the checkpoint holds the golden theta after
    `steps_done` steps with that batch index, and resuming through the board ends on golden's final theta."""
    from ttzo.golden.train import load_checkpoint, train_mnist
    model, _ = golden_board_model
    c = _cfg(tmp_path)
    stepper, tap = _board_stepper(model, c, _interrupt_at(frame, 3, when))
    res = train_mnist(c, data=mnist, progress=False, stepper=stepper)
    assert res.interrupted and tap.sent["RUN_STEPS"] == steps_done
    ck = load_checkpoint(tmp_path / "checkpoint.npz")
    assert (int(ck["epoch"]), int(ck["batch_index"]), int(ck["step"])) == (0, steps_done, steps_done)
    ref = train_mnist(_cfg(tmp_path / "ref"), data=mnist, progress=False, stop_after=steps_done)
    assert np.array_equal(ck["theta"], load_checkpoint(ref.out / "checkpoint.npz")["theta"])
    assert ck["sums"] == load_checkpoint(ref.out / "checkpoint.npz")["sums"]
    stepper, _ = _board_stepper(model, c)
    rest = train_mnist(c, resume=True, data=mnist, progress=False, stepper=stepper)
    assert np.array_equal(rest.theta, golden_run.theta) and _strip(rest.metrics) == _strip(golden_run.metrics)


def test_interrupt_that_cuts_a_running_step_off_keeps_the_last_checkpoint(tmp_path, mnist, golden_board_model,
                                                                          golden_run) -> None:
    """A further interrupt while the stepper waits for an interrupted step to end: the board's parameters are
    unknown, so the loop fails with a clear error and writes no checkpoint; the epoch-1 one stays, and a
    resume from it ends on golden's theta."""
    from ttzo.golden.train import load_checkpoint, train_mnist
    model, _ = golden_board_model
    c = _cfg(tmp_path)
    hook = _interrupt_at("RUN_STEPS", STEPS_PER_EPOCH + 2, "after", also=("STATUS", "before"))
    stepper, _ = _board_stepper(model, c, hook)
    with pytest.raises(BoardError, match="no longer on the board .*cut off by an interrupt"):
        train_mnist(c, data=mnist, progress=False, stepper=stepper)
    ck = load_checkpoint(tmp_path / "checkpoint.npz")
    assert (int(ck["epoch"]), int(ck["batch_index"])) == (1, 0)
    stepper, _ = _board_stepper(model, c)
    rest = train_mnist(c, resume=True, data=mnist, progress=False, stepper=stepper)
    assert np.array_equal(rest.theta, golden_run.theta)


def test_lazy_steps_leave_a_placeholder_until_sync(mnist, golden_board_model) -> None:
    """Outside the loop: a lazy stepper's st.theta refuses use until sync(); an eager one (the default, for
    direct callers) reads the parameters back after each step; both equal GoldenStepper; a placeholder
    left behind by a later step is refused rather than resolved to newer parameters."""
    from ttzo.golden.optim import GoldenStepper, OptState
    from ttzo.host.backend_board import ParamsOnBoard
    model, bp = golden_board_model
    c = _cfg("/nonexistent")
    net = mnist_tt(RANK)
    theta0 = net.flatten(net.quantize(net.init(np.random.default_rng(1)), c.fixed_config())).astype(np.int64)
    xs = np.asarray(mnist.train_images[:192]).reshape(3, 64, 784)
    ys = mnist.train_labels[:192].astype(np.int64).reshape(3, 64)
    gold = OptState(theta=theta0, momentum=np.zeros_like(theta0))
    g = GoldenStepper(net, c.optim, c.seed, c.batch, c.fixed_config())
    st_e, st_l = (OptState(theta=theta0, momentum=np.zeros_like(theta0)) for _ in range(2))
    eager, _ = _board_stepper(model, c)          # one stepper after the other: each owns the board meanwhile
    results = []
    for k in range(3):
        results.append(g.step(gold, xs[k], ys[k], 0))
        assert eager.step(st_e, xs[k], ys[k], 0) == results[k] and np.array_equal(st_e.theta, gold.theta)
    lazy, tap = _board_stepper(model, c)
    lazy.lazy = True
    for k in range(3):
        before = st_l.theta
        assert lazy.step(st_l, xs[k], ys[k], 0) == results[k] and isinstance(st_l.theta, ParamsOnBoard)
    assert eager.param_reads == 3 and lazy.param_reads == 0 and st_l.step == 3
    with pytest.raises(BoardError, match="call BoardStepper.sync"):
        np.asarray(st_l.theta)
    with pytest.raises(AttributeError, match="call BoardStepper.sync"):
        st_l.theta.astype(np.int64)
    reads = tap.sent.get("READ_REGION:PARAMS", 0)
    stale = OptState(theta=before, momentum=gold.momentum)
    with pytest.raises(BoardError, match="after step 2 are no longer on the board"):
        lazy.sync(stale)
    lazy.sync(st_l)
    lazy.sync(st_l)                                  # already an array: no second read
    assert np.array_equal(st_l.theta, gold.theta) and lazy.param_reads == 1
    assert tap.sent["READ_REGION:PARAMS"] == reads + -(-2 * bp.net.n_params // bp.identify().max_payload)


def _once(name: str, when: str):
    """A Tap hook raising KeyboardInterrupt at the next frame `name` (`when`: before/after writing it)."""
    def hook(n, k, w):
        if (n, w) == (name, when) and not hook.fired:
            hook.fired = True
            raise KeyboardInterrupt
    hook.fired = False
    return hook


@pytest.mark.skipif(not __import__("ttzo.sim.verilator_env", fromlist=["x"]).available(),
                    reason="Verilator not available")
def test_virtual_board_lazy_steps_and_interrupts_bit_exact(mnist) -> None:
    """The RTL (rtl/board_top.BoardTop, small profile, double-buffered, Verilator): 4 lazy steps with the
    loop's lookahead read the parameters once (at sync) and equal GoldenStepper; an interrupt after
    RUN_STEPS lets step 3 finish (StepFinished, counted by the RTL's ops register), one before RUN_STEPS
    leaves the board untouched and step 4 then runs as usual."""
    from ttzo.golden.optim import GoldenStepper, OptState
    from ttzo.golden.train import StepFinished
    from ttzo.host.backend_board import ParamsOnBoard
    from ttzo.host.board import Board
    from ttzo.sim.tt_cosim import seeded_params
    from ttzo.sim.virtual_board_top import start
    B, n = 8, 4
    xs = np.asarray(mnist.train_images[:B * n], np.int64).reshape(n, B, 784)
    ys = mnist.train_labels[:B * n].astype(np.int64).reshape(n, B)
    oc = OptimConfig(optimizer="signrge", lr=0.01, mu=0.1, queries=2)
    port, stop = start(T.small_profile(), phy="stream")
    try:
        with Board.open(f"socket://127.0.0.1:{port}", timeout=5.0) as b:
            b.t = tap = Tap(b.t)
            s = BoardSession(b)
            theta0 = s.net.flatten(seeded_params(s.net, s.cfg, 0)).astype(np.int64)
            stepper = BoardStepper(s, s.net, oc, 7, B, s.cfg, lazy=True)
            st = OptState(theta=theta0, momentum=np.zeros_like(theta0))
            results = []
            for k in range(n):
                if k + 1 < n:
                    stepper.prefetch(xs[k + 1], ys[k + 1])
                if k == 2:
                    tap.hook = _once("RUN_STEPS", "after")
                    with pytest.raises(StepFinished) as done:
                        stepper.step(st, xs[k], ys[k], 0)
                    r = done.value.result
                else:
                    if k == 3:                                   # interrupted before it starts: nothing happens
                        tap.hook = _once("CONFIGURE", "before")
                        with pytest.raises(KeyboardInterrupt) as cut:
                            stepper.step(st, xs[k], ys[k], 0)
                        assert not isinstance(cut.value, StepFinished) and st.step == 3
                    r = stepper.step(st, xs[k], ys[k], 0)
                results.append((r.loss, r.correct, r.evaluations))
                assert isinstance(st.theta, ParamsOnBoard) and st.step == k + 1
            assert tap.sent["RUN_STEPS"] == n and "READ_REGION:PARAMS" not in tap.sent
            stepper.sync(st)
            assert tap.sent["READ_REGION:PARAMS"] == 1 and stepper.param_reads == 1
    finally:
        stop()
    g = GoldenStepper(s.net, oc, 7, B, s.cfg)
    gst = OptState(theta=theta0, momentum=np.zeros_like(theta0))
    gold = [g.step(gst, xs[k], ys[k], 0) for k in range(n)]
    assert np.array_equal(st.theta, gst.theta) and results == [(r.loss, r.correct, r.evaluations) for r in gold]


def test_session_polls_a_serial_port_finely_and_a_simulator_coarsely() -> None:
    """STATUS polls cost a real board nothing but a simulated one its clock: 2 ms on a UART, 0.1 s else."""
    bp = T.small_profile()
    fb = FakeBoard(bp.identify())
    assert BoardSession(fb).poll == BoardSession.poll == 0.1
    fb.baudrate = 3_000_000
    assert BoardSession(fb).poll == BoardSession.serial_poll == 0.002


def test_link_traffic_per_step_drops_by_the_parameter_read_back(mnist) -> None:
    """The MNIST r = 6 design on the model board: a lazy step sends exactly the eager step's frames but the
    READ_REGION PARAMS ones (ceil(7,924 / 1,024) = 8, whose replies carry the 7,924 parameter bytes), and
    sync reads those once.  Prints the byte counts docs/board.md quotes (`pytest -k traffic -s`)."""
    from dataclasses import replace
    from ttzo.golden.optim import OptState
    from ttzo.host.board import Board
    from ttzo.sim.link_model import LinkModel, ModelTransport
    bp = replace(T.mnist_profile(6), batch_banks=1)
    model = LinkModel(bp.identify("uart"), golden_engine(bp))
    net, n_bytes = bp.net, 2 * bp.net.n_params
    theta = net.flatten(net.quantize(net.init(np.random.default_rng(1)), bp.cfg)).astype(np.int64)
    xs = np.asarray(mnist.train_images[:128]).reshape(2, 64, 784)
    ys = mnist.train_labels[:128].astype(np.int64).reshape(2, 64)
    per_step = {}
    for lazy in (False, True):
        tap = Tap(ModelTransport(model))
        b = Board(tap, timeout=5.0)
        b.identify()
        s = BoardStepper(BoardSession(b), net, OptimConfig(optimizer="signrge", queries=10), 0, 64, bp.cfg,
                         lazy=lazy)
        st = OptState(theta=theta, momentum=np.zeros_like(theta))
        s.step(st, xs[0], ys[0], 0)                         # uploads the parameters
        b.stats, tap.sent = type(b.stats)(), {}
        s.step(st, xs[1], ys[1], 0)
        per_step[lazy] = (b.stats, tap.sent)
        b.stats, tap.sent = type(b.stats)(), {}
        s.sync(st)
        sync = (b.stats, tap.sent)
    (eager, eager_sent), (lazy_, lazy_sent) = per_step[False], per_step[True]
    frames = -(-n_bytes // bp.identify().max_payload)
    assert eager_sent == {**lazy_sent, "READ_REGION:PARAMS": frames} and "READ_REGION:PARAMS" not in lazy_sent
    assert sync[1] == {"READ_REGION:PARAMS": frames} and sync[0].requests == frames
    assert eager.requests - lazy_.requests == frames
    assert sync[0].bytes_in >= n_bytes + frames * (P.MIN_FRAME + 2)          # payload, header, CRC, 2 END
    # the rest of the two steps' frames are alike up to SLIP escapes of sequence numbers and counters
    assert abs(eager.bytes_in - lazy_.bytes_in - sync[0].bytes_in) <= 4
    assert abs(eager.bytes_out - lazy_.bytes_out - sync[0].bytes_out) <= 4
    print(f"\nr=6 step, eager: {eager.requests} requests, {eager.bytes_out} B out, {eager.bytes_in} B in; "
          f"lazy: {lazy_.requests} requests, {lazy_.bytes_out} B out, {lazy_.bytes_in} B in {lazy_sent}; "
          f"read-back: {sync[0].requests} requests, {sync[0].bytes_out} B out, {sync[0].bytes_in} B in")
