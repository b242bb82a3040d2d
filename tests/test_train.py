"""The training loop: resume reproduces the uninterrupted run bit for bit; a short real-MNIST run learns."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ttzo.golden.optim import OptimConfig
from ttzo.golden.train import TIME_KEYS, TrainConfig, load_checkpoint, train_mnist


@pytest.fixture(scope="module")
def mnist(mnist_dir: Path):
    from ttzo.golden.mnist import load_mnist
    return load_mnist(mnist_dir)


def _interrupt_config(tmp_path: Path, out: str) -> TrainConfig:
    """The one-epoch run the interrupt tests stop at their third step."""
    return TrainConfig(arith="fixed", rank=2, epochs=1, seed=3, train_samples=384, test_samples=50,
                       out=str(tmp_path / out), optim=OptimConfig(optimizer="signrge"))


def _strip(metrics: list[dict]) -> list[dict]:
    return [{k: v for k, v in m.items() if k not in TIME_KEYS} for m in metrics]


@pytest.mark.parametrize("arith,optim", [
    ("fixed", OptimConfig(optimizer="hybrid", switch_epoch=2, cge_fraction=0.02, cge_lr=0.02)),
    ("float", OptimConfig(optimizer="hybrid", switch_epoch=1, cge_fraction=0.02, cge_lr=0.02)),
    ("float", OptimConfig(optimizer="fo")),
], ids=["fixed-hybrid", "float-hybrid", "float-fo"])
def test_resume_equals_uninterrupted(tmp_path: Path, mnist, arith: str, optim: OptimConfig) -> None:
    def cfg(out: str) -> TrainConfig:
        return TrainConfig(arith=arith, rank=2, epochs=3, seed=5, batch=64, out=str(tmp_path / out),
                           train_samples=192, test_samples=100, optim=optim)
    whole = train_mnist(cfg("whole"), data=mnist, progress=False)
    assert not whole.interrupted and len(whole.metrics) == 3
    part = train_mnist(cfg("split"), data=mnist, progress=False, stop_after=4)  # stops mid-epoch 1
    assert part.interrupted
    ck = load_checkpoint(tmp_path / "split" / "checkpoint.npz")
    assert (int(ck["epoch"]), int(ck["batch_index"])) == (1, 1)
    part = train_mnist(cfg("split"), resume=True, data=mnist, progress=False, stop_after=1)  # interrupted again
    assert part.interrupted
    rest = train_mnist(cfg("split"), resume=True, data=mnist, progress=False)
    assert not rest.interrupted
    assert np.array_equal(rest.theta, whole.theta)
    a = load_checkpoint(tmp_path / "whole" / "checkpoint.npz")
    b = load_checkpoint(tmp_path / "split" / "checkpoint.npz")
    assert np.array_equal(a["momentum"], b["momentum"]) and int(a["step"]) == int(b["step"]) == 9
    assert _strip(a["metrics"]) == _strip(b["metrics"])
    doc = json.loads((tmp_path / "split" / "metrics.json").read_text())
    assert [m["epoch"] for m in doc["epochs"]] == [0, 1, 2]
    assert (tmp_path / "split" / "metrics.csv").read_text().count("\n") == 4
    assert (tmp_path / "split" / "curve.png").stat().st_size > 1000
    assert (tmp_path / "split" / "checkpoint-e003.npz").is_file()


def test_short_fixed_point_mnist_run_learns(tmp_path: Path, mnist) -> None:
    """16 integer CGE steps (rank 2, 20% of coordinates per step) on 1,024 real MNIST images.

    Calibration (3 seeds, default formats): 21.8 %, 14.2 %, 20.0 % test accuracy on 500 test
    images; chance is 10 % (binomial std 1.3 %), so >= 17 % is > 5 sigma above chance for seed 0.
    """
    cfg = TrainConfig(arith="fixed", rank=2, epochs=1, seed=0, batch=64, out=str(tmp_path / "run"),
                      train_samples=1024, test_samples=500,
                      optim=OptimConfig(optimizer="cge", cge_lr=0.2, cge_fraction=0.2))
    res = train_mnist(cfg, data=mnist, progress=False)
    m = res.final
    assert m["steps"] == 16
    assert m["test_acc"] >= 0.17, m
    # forward evaluations counted exactly: per step the sampled coordinates + 1 (the unperturbed set)
    from ttzo.golden.zo import sample_coordinates
    expected = sum(sample_coordinates(0, t, res.theta.size, 0.2).size + 1 for t in range(16))
    assert m["evaluations"] == expected and m["sample_forwards"] == 64 * expected


def test_ctrl_c_leaves_a_checkpoint_at_a_step_boundary(tmp_path: Path, mnist) -> None:
    """SIGINT during a step: the step finishes, the checkpoint is written, resume is bit-exact."""
    import os
    import signal

    from ttzo.golden.network import mnist_tt
    from ttzo.golden.optim import GoldenStepper

    def cfg(out: str) -> TrainConfig:
        return _interrupt_config(tmp_path, out)

    class Interrupting(GoldenStepper):
        calls = 0

        def step(self, st, x, y, epoch):
            Interrupting.calls += 1
            if Interrupting.calls == 3:
                os.kill(os.getpid(), signal.SIGINT)  # arrives while this step runs
            return super().step(st, x, y, epoch)

    c = cfg("a")
    res = train_mnist(c, data=mnist, progress=False,
                      stepper=Interrupting(mnist_tt(2), c.optim, c.seed, c.batch, c.fixed_config()))
    assert res.interrupted
    ck = load_checkpoint(tmp_path / "a" / "checkpoint.npz")
    assert int(ck["batch_index"]) == 3 and int(ck["step"]) == 3  # the third step completed
    resumed = train_mnist(cfg("a"), resume=True, data=mnist, progress=False)
    whole = train_mnist(cfg("b"), data=mnist, progress=False)
    assert np.array_equal(resumed.theta, whole.theta)


def _hybrid_stepper(**kw):
    from ttzo.golden.formats import DEFAULT_CONFIG
    from ttzo.golden.network import mnist_tt
    from ttzo.golden.optim import GoldenStepper
    cfg = OptimConfig(optimizer="hybrid", lr=0.002, lr_decay=0.5, lr_decay_every=1, cge_lr=0.02, **kw)
    return GoldenStepper(mnist_tt(2), cfg, 0, 64, DEFAULT_CONFIG)


def test_schedule_is_checked_per_phase() -> None:
    """signRGE lr 0.002 * 0.5^e is 2, 1, 1, 0 bias LSBs at epochs 0..3 (s16.10: floor(lr*1024 + 1/2));
    a hybrid that switches at epoch 3 never uses the 0-LSB step, one that switches later does."""
    from ttzo.golden.fixed import FormatError
    from ttzo.golden.optim import OptState
    _hybrid_stepper(switch_epoch=3).check_schedule(12)      # CGE from epoch 3: lr 0.02 * 0.5^(e-3)
    with pytest.raises(FormatError, match=r"signrge phase, epoch 3 .*below one LSB"):
        _hybrid_stepper(switch_epoch=4).check_schedule(12)
    # a patience switch (earliest after epoch 2 here) is not known up front: checked as each epoch starts
    pat = _hybrid_stepper(switch_epoch=None, patience=2)
    assert tuple(pat.schedule_epochs(12)[0]) == (0, 1, 2)
    pat.check_schedule(12)
    with pytest.raises(FormatError, match="signrge phase, epoch 3"):
        pat.check_epoch(OptState(np.zeros(1), np.zeros(1), phase="signrge"), 3)
    pat.check_epoch(OptState(np.zeros(1), np.zeros(1), phase="cge", switch_epoch=3), 3)
    # CGE's own schedule is still checked over the CGE epochs: 0.02 * 0.5^e falls below what the
    # 12-bit update multiplier can represent after enough halvings
    with pytest.raises(FormatError, match="cge phase"):
        _hybrid_stepper(switch_epoch=1).check_schedule(60)


def test_hybrid_not_refused_for_signrge_lr_of_its_cge_epochs(tmp_path: Path, mnist) -> None:
    """Regression: the whole signRGE schedule used to be checked over every epoch, refusing this run."""
    optim = OptimConfig(optimizer="hybrid", switch_epoch=2, lr=0.002, lr_decay=0.5, lr_decay_every=1,
                        cge_lr=0.02, cge_fraction=0.02)
    res = train_mnist(TrainConfig(arith="fixed", rank=2, epochs=5, seed=1, out=str(tmp_path / "r"),
                                  train_samples=64, test_samples=50, optim=optim), data=mnist, progress=False)
    assert [m["phase"] for m in res.metrics] == ["signrge", "signrge", "cge", "cge", "cge"]


def test_dense_baseline_network(tmp_path: Path, mnist) -> None:
    """`net="dense"` trains the paper's 784-1024-10 dense MLP (the dense rows of Table 1)."""
    from ttzo.golden.network import dense_mlp
    with pytest.raises(ValueError, match="net 'mlp'"):
        TrainConfig(net="mlp")
    res = train_mnist(TrainConfig(arith="float", net="dense", epochs=1, seed=0, out=str(tmp_path / "d"),
                                  train_samples=128, test_samples=50, optim=OptimConfig(optimizer="fo")),
                      data=mnist, progress=False)
    assert res.theta.size == dense_mlp().n_params == 784 * 1024 + 1024 + 1024 * 10 + 10
    assert res.final["steps"] == 2
    assert json.loads((tmp_path / "d" / "config.json").read_text())["net"] == "dense"


def test_branch_then_resume_equals_a_run_configured_so_from_the_start(tmp_path: Path, mnist) -> None:
    """`ttzo train branch` at an epoch checkpoint + resume == the run that had the new settings all along,
    when the changed setting cannot act before the branch point (stochastic CGE rounding, signRGE epochs)."""
    from ttzo.golden.train import branch_run
    base = dict(arith="fixed", rank=2, epochs=3, seed=5, batch=64, train_samples=192, test_samples=100)
    sr = OptimConfig(optimizer="hybrid", switch_epoch=2, cge_fraction=0.02, cge_lr=0.02, cge_rounding="stochastic")
    near = OptimConfig(**{**sr.to_dict(), "cge_rounding": "nearest"})
    whole = train_mnist(TrainConfig(**base, out=str(tmp_path / "sr"), optim=sr), data=mnist, progress=False)
    plain = train_mnist(TrainConfig(**base, out=str(tmp_path / "near"), optim=near), data=mnist, progress=False)
    assert not np.array_equal(whole.theta, plain.theta)            # the rounding acts in the CGE epoch
    cfg = branch_run(tmp_path / "near" / "checkpoint-e002.npz", tmp_path / "branch", {"cge_rounding": "stochastic"})
    assert cfg["optim"]["cge_rounding"] == "stochastic" and cfg["epochs"] == 3
    got = train_mnist(TrainConfig(**base, out=str(tmp_path / "branch"), optim=near), resume=True, data=mnist,
                      progress=False)
    assert np.array_equal(got.theta, whole.theta)
    assert _strip(got.metrics) == _strip(whole.metrics)
    with pytest.raises(FileExistsError):
        branch_run(tmp_path / "near" / "checkpoint-e002.npz", tmp_path / "branch", {})
    with pytest.raises(ValueError, match="unknown optimizer settings"):
        branch_run(tmp_path / "near" / "checkpoint-e002.npz", tmp_path / "b2", {"lr_floor": 1})
    with pytest.raises(ValueError, match="batch=0"):
        branch_run(tmp_path / "near" / "checkpoint-e002.npz", tmp_path / "b3", {}, batch=0)
    wide = branch_run(tmp_path / "near" / "checkpoint-e002.npz", tmp_path / "b4", {}, epochs=4, batch=32)
    assert (wide["batch"], wide["epochs"]) == (32, 4)
    more = train_mnist(TrainConfig(**base, out=str(tmp_path / "b4"), optim=near), resume=True, data=mnist,
                       progress=False)
    assert len(more.metrics) == 4 and more.metrics[-1]["steps"] - more.metrics[-2]["steps"] == 192 // 32


def test_a_schedule_equals_the_chain_of_branches_it_replaces(tmp_path: Path, mnist) -> None:
    """`--at` entries (settings and batch changing at epoch boundaries) give exactly the run that
    `ttzo train branch` + resume at those epochs gives, and an interrupted scheduled run resumes to the same bits."""
    from ttzo.golden.train import branch_run, compare_runs
    base = dict(arith="fixed", rank=2, seed=5, batch=64, train_samples=192, test_samples=100)
    near = OptimConfig(optimizer="hybrid", switch_epoch=2, cge_fraction=0.02, cge_lr=0.02)
    schedule = [{"epoch": 3, "optim": {"cge_lr": 0.01}},
                {"epoch": 2, "optim": {"cge_rounding": "stochastic"}, "batch": 32}]
    whole = train_mnist(TrainConfig(**base, epochs=4, out=str(tmp_path / "sched"), optim=near, schedule=schedule),
                        data=mnist, progress=False)
    train_mnist(TrainConfig(**base, epochs=2, out=str(tmp_path / "a"), optim=near), data=mnist, progress=False)
    branch_run(tmp_path / "a" / "checkpoint-e002.npz", tmp_path / "b", {"cge_rounding": "stochastic"}, 3, batch=32)
    train_mnist(TrainConfig(out=str(tmp_path / "b")), resume=True, data=mnist, progress=False)
    branch_run(tmp_path / "b" / "checkpoint-e003.npz", tmp_path / "c", {"cge_lr": 0.01}, 4)
    chain = train_mnist(TrainConfig(out=str(tmp_path / "c")), resume=True, data=mnist, progress=False)
    assert np.array_equal(whole.theta, chain.theta)
    assert _strip(whole.metrics) == _strip(chain.metrics)
    assert compare_runs(tmp_path / "sched", tmp_path / "c") == {"epochs_a": 4, "epochs_b": 4, "identical_epochs": 4,
                                                                "first_difference": None}
    differ = compare_runs(tmp_path / "sched", tmp_path / "a")      # run a: no schedule, 2 epochs
    assert differ["identical_epochs"] == 2 and differ["first_difference"] is None and differ["epochs_b"] == 2
    assert [m["steps"] for m in whole.metrics] == [3, 6, 12, 18]               # batch 32 from epoch 2 on
    assert whole.metrics[3]["lr"] == 0.01 != whole.metrics[2]["lr"]
    # interrupted in the middle of the batch-32 segment, then resumed: the same bits
    part = train_mnist(TrainConfig(**base, epochs=4, out=str(tmp_path / "part"), optim=near, schedule=schedule),
                       data=mnist, progress=False, stop_after=9)
    assert part.interrupted
    done = train_mnist(TrainConfig(out=str(tmp_path / "part")), resume=True, data=mnist, progress=False)
    assert np.array_equal(done.theta, whole.theta) and _strip(done.metrics) == _strip(whole.metrics)
    # a branch of a scheduled run keeps the settings acting at the branch point and the later entries
    cfg = branch_run(tmp_path / "sched" / "checkpoint-e002.npz", tmp_path / "d", {"momentum": 0.8})
    assert cfg["batch"] == 32 and cfg["optim"]["cge_rounding"] == "stochastic" and cfg["optim"]["momentum"] == 0.8
    assert cfg["schedule"] == [{"epoch": 3, "optim": {"cge_lr": 0.01}}]


@pytest.mark.parametrize("entry,match", [
    ({"epoch": 0, "optim": {"cge_lr": 0.1}}, "integer >= 1"),
    ({"epoch": 2, "optim": {"lr_floor": 0.1}}, "unknown optimizer settings"),
    ({"epoch": 2, "optim": {"cge_rounding": "up"}}, "cge_rounding"),
    ({"epoch": 2, "batch": 0}, "batch=0"),
    ({"epoch": 2}, "changes nothing"),
    ({"epoch": 2, "when": 3, "batch": 8}, "unknown keys"),
])
def test_bad_schedule_entries_are_refused_with_a_clear_error(entry: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TrainConfig(schedule=[entry])


def test_cli_at_option_parses_epochs_settings_and_batch() -> None:
    from ttzo.host.commands.train import parse_schedule
    got = parse_schedule(["28:cge_rounding=stochastic,cge_lr_min=0.003", "67:batch=256"])
    assert got == [{"epoch": 28, "optim": {"cge_rounding": "stochastic", "cge_lr_min": 0.003}},
                   {"epoch": 67, "optim": {}, "batch": 256}]
    for bad in ("x:batch=2", "28", "28:batch"):
        with pytest.raises(ValueError, match="--at"):
            parse_schedule([bad])


def test_a_later_segment_without_valid_fixed_point_constants_is_refused_before_training(tmp_path: Path, mnist) -> None:
    from ttzo.golden.fixed import FormatError
    near = OptimConfig(optimizer="hybrid", switch_epoch=2, cge_fraction=0.02, cge_lr=0.02)
    cfg = TrainConfig(arith="fixed", rank=2, epochs=4, seed=5, train_samples=64, test_samples=10, optim=near,
                      out=str(tmp_path / "r"), schedule=[{"epoch": 3, "optim": {"momentum": 1.0}}])
    with pytest.raises(FormatError, match="momentum"):
        train_mnist(cfg, data=mnist, progress=False)
    assert not (tmp_path / "r" / "checkpoint-e001.npz").exists()            # nothing was trained


def test_compare_runs_finds_the_first_differing_epoch(tmp_path: Path, mnist) -> None:
    from ttzo.golden.train import compare_runs
    from ttzo.host.cli import main
    base = dict(arith="fixed", rank=2, epochs=3, seed=5, batch=64, train_samples=128, test_samples=50)
    near = OptimConfig(optimizer="hybrid", switch_epoch=2, cge_fraction=0.02, cge_lr=0.02)
    train_mnist(TrainConfig(**base, out=str(tmp_path / "a"), optim=near), data=mnist, progress=False)
    other = OptimConfig(**{**near.to_dict(), "cge_lr": 0.01})                 # differs from the CGE epoch (3) on
    train_mnist(TrainConfig(**base, out=str(tmp_path / "b"), optim=other), data=mnist, progress=False)
    res = compare_runs(tmp_path / "a", tmp_path / "b")
    assert res["identical_epochs"] == 2 and res["first_difference"]["epoch"] == 3
    assert "lr" in res["first_difference"]["differences"]
    assert main(["train", "compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 1
    assert main(["train", "compare", str(tmp_path / "a"), str(tmp_path / "a")]) == 0
    with pytest.raises(ValueError, match="metrics.json"):
        compare_runs(tmp_path / "a", tmp_path / "missing")


class _Held:
    """A test backend's placeholder for theta it has not handed back (fails loudly if used as an array)."""

    def __array__(self, *a, **k):
        raise AssertionError("the loop used theta without sync()")


def _lazy_golden(c: TrainConfig):
    """GoldenStepper that keeps theta to itself when `lazy` (as the board does) and hands it over in sync()."""
    from ttzo.golden.optim import GoldenStepper

    class LazyGolden(GoldenStepper):
        lazy = False

        def step(self, st, x, y, epoch):
            if isinstance(st.theta, _Held):
                assert st.theta is self.token, "a stale placeholder reached step()"
                st.theta = self.kept
            r = super().step(st, x, y, epoch)
            if self.lazy:
                self.kept, self.token = st.theta, _Held()
                st.theta = self.token
            return r

        def sync(self, st):
            self.syncs.append(isinstance(st.theta, _Held))
            if isinstance(st.theta, _Held):
                assert st.theta is self.token
                st.theta = self.kept

    s = LazyGolden(c.network(), c.optim, c.seed, c.batch, c.fixed_config())
    s.syncs = []
    return s


def test_a_backend_holding_theta_is_synced_only_where_the_loop_reads_it(tmp_path: Path, mnist) -> None:
    """A stepper with sync(): the loop sets `lazy`, syncs at each epoch's end and on interrupt (never per
    step), restores `lazy` after; stopping, resuming and the final theta equal the golden run's bit for bit."""
    def cfg(out: str) -> TrainConfig:
        return TrainConfig(arith="fixed", rank=2, epochs=2, seed=3, batch=64, train_samples=256, test_samples=50,
                           out=str(tmp_path / out), optim=OptimConfig(optimizer="signrge"))
    whole = train_mnist(cfg("whole"), data=mnist, progress=False)
    c = cfg("lazy")
    s = _lazy_golden(c)
    part = train_mnist(c, data=mnist, progress=False, stepper=s, stop_after=6)        # stops in epoch 1
    assert part.interrupted and s.syncs == [True, True] and s.lazy is False    # end of epoch 0, on the stop
    ck = load_checkpoint(tmp_path / "lazy" / "checkpoint.npz")
    assert (int(ck["epoch"]), int(ck["batch_index"]), int(ck["step"])) == (1, 2, 6)
    s = _lazy_golden(c)
    rest = train_mnist(c, resume=True, data=mnist, progress=False, stepper=s)
    assert s.syncs == [True, False] and np.array_equal(rest.theta, whole.theta)
    assert _strip(rest.metrics) == _strip(whole.metrics)


def test_a_step_the_backend_could_not_undo_is_counted_then_the_loop_stops(tmp_path: Path, mnist) -> None:
    """StepFinished from a step (a board step an interrupt arrived in, finished on the board): the loop keeps
    the step and its result, stops at the next step boundary with a checkpoint, and resume is bit-exact."""
    from ttzo.golden.network import mnist_tt
    from ttzo.golden.optim import GoldenStepper
    from ttzo.golden.train import StepFinished

    def cfg(out: str) -> TrainConfig:
        return _interrupt_config(tmp_path, out)

    class FinishesOnInterrupt(GoldenStepper):
        calls = 0

        def step(self, st, x, y, epoch):
            FinishesOnInterrupt.calls += 1
            r = super().step(st, x, y, epoch)
            if FinishesOnInterrupt.calls == 3:
                raise StepFinished(r)
            return r

    c = cfg("a")
    res = train_mnist(c, data=mnist, progress=False,
                      stepper=FinishesOnInterrupt(mnist_tt(2), c.optim, c.seed, c.batch, c.fixed_config()))
    assert res.interrupted and FinishesOnInterrupt.calls == 3
    ck = load_checkpoint(tmp_path / "a" / "checkpoint.npz")
    ref = train_mnist(cfg("ref"), data=mnist, progress=False, stop_after=3)
    ck_ref = load_checkpoint(tmp_path / "ref" / "checkpoint.npz")
    assert int(ck["batch_index"]) == int(ck["step"]) == 3 and np.array_equal(ck["theta"], ck_ref["theta"])
    assert ck["sums"] == ck_ref["sums"] and ck["counters"]["steps"] == 3
    resumed = train_mnist(cfg("a"), resume=True, data=mnist, progress=False)
    whole = train_mnist(cfg("b"), data=mnist, progress=False)
    assert np.array_equal(resumed.theta, whole.theta) and not np.array_equal(ref.theta, whole.theta)
