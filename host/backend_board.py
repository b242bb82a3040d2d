"""Train on a board: the ZO training session over the protocol, and a golden/optim.Stepper that uses it.

    with Board.open("socket://127.0.0.1:5555") as b:
        s = BoardSession(b)                       # finds the design (engine sizes, network) by its name
        s.load_program(); s.load_params(theta); s.load_batch(x, y)
        s.configure_signrge(seed=1, step0=0, queries=2, mu=0.1, alpha=0.01, n_samples=len(y))
        res = s.run_steps(2)                      # K steps on chip; counters and last loss
        theta2 = s.read_params()

The host never computes a step: it compiles the network's engine program with rtl/descriptors.py
(the one translation of golden to hardware), converts step sizes to codes with golden/zo_fixed.py,
and reads parameters, losses and counters back.  :class:`BoardStepper` plugs this into
golden/train.py's loop (``train_mnist(config, stepper=BoardStepper(...))``), so metrics, checkpoints
and plots are the golden backend's.  Supported on chip: fixed-point signRGE with forward
differences (the trainer's CGE momentum is 47 bits wide and has no readable region yet, so CGE and
hybrid runs are refused with a clear message).

HJB designs (identify capability ``pinn``, rtl/board_top.py "PINN designs"): the same session loads
the node table and collocation points (``load_hjb``; formats from golden/stein_fixed.py), sets the
loss block's registers with ``configure_hjb`` and evaluates the HJB loss with ``hjb_loss`` (one
forward pass, RUN_INFERENCE) or trains on it with ``run_steps``.

Double-buffered designs (regions BATCH_NEXT/LABELS_NEXT, rtl/board_top.py): the trainer reads the
batch bank the bank register selects; ``load_batch(x, y, next_bank=True)`` writes the other bank,
also while an operation runs.  :class:`BoardStepper` uses it: given the next batch by
``prefetch`` (golden/train.py's loop calls it before each step), it starts step k, uploads batch
k+1 into the idle bank while step k computes, and switches banks for step k+1, so an epoch costs
about max(compute, upload) per step instead of their sum.  Results are unchanged (bit-exact).

Parameters stay on the board (``BoardStepper.lazy``, which golden/train.py's loop sets): a step
leaves ``st.theta`` as a :class:`ParamsOnBoard` placeholder instead of reading the 3,962 codes back
(~8 KB, ~29 ms at 3 Mbaud per step on the r = 6 design), and ``sync(st)`` reads them when the loop
needs theta: at each epoch's end (evaluation, checkpoint), on interrupt and at the end, so O(epochs)
read-backs instead of O(steps).  A board step cannot be rolled back (the trainer updates PARAMS in
place and the host no longer holds the parameters before it), so it is atomic: an interrupt before
RUN_STEPS cancels it (the board still holds the parameters before it), one after RUN_STEPS lets it
finish and reports it done with ``golden.train.StepFinished``, which the loop counts before stopping.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ttzo.golden import zo_fixed
from ttzo.golden.network import TTNet
from ttzo.golden.optim import GoldenStepper, OptimConfig, OptState, StepResult
from ttzo.golden.train import StepFinished
from ttzo.rtl import board_top as T

from . import protocol as P
from .board import Board, BoardError, bytes_to_words, words_to_bytes


@dataclass
class RunResult:
    """What the board reports after an operation (result registers)."""

    steps: int
    forwards: int
    loss0: int           # integer batch loss (sum of loss codes) of the last unperturbed pass
    correct: int         # correct count of that pass
    changed: int         # parameters the last update moved
    cycles: int          # clock cycles of the operation
    ops: int             # operations completed since reset

    @classmethod
    def of(cls, r: list[int]) -> "RunResult":
        l0 = r[T.RES_L0_LO] | (r[T.RES_L0_HI] << 32)
        if l0 >= 1 << 63:
            l0 -= 1 << 64
        return cls(r[T.RES_STEPS], r[T.RES_FORWARDS], l0, r[T.RES_CORRECT], r[T.RES_CHANGED],
                   r[T.RES_CYCLES_LO] | (r[T.RES_CYCLES_HI] << 32), r[T.RES_OPS])


class BoardSession:
    """One board running ZO training on its network (rtl/board_top.py register map)."""

    #: STATUS polling interval while an operation runs (seconds).  Each poll is a frame the virtual
    #: board must clock through cycle by cycle, so polling fast slows a simulated operation down.
    poll = 0.1
    #: ... and on a board at a serial port (a real UART, `Board.baudrate` set), where a poll costs 36
    #: bytes of wire time (0.12 ms at 3 Mbaud) and nothing on the chip, while the end of a step is
    #: noticed up to one interval late: 0.1 s cost ~10 ms a step (~9 s a 938-step epoch) on the r = 6
    #: design at 50 MHz (docs/board.md "Host"), 2 ms at most ~2 s an epoch
    serial_poll = 0.002
    #: batch banks of the design (2: double-buffered, regions BATCH_NEXT/LABELS_NEXT) and the bank the
    #: trainer reads; set from the board in __init__ (class defaults: a single-bank design)
    banks = 1
    bank = 0

    def __init__(self, board: Board, bp: T.BoardParams | None = None) -> None:
        if board.info is None:
            board.identify()
        self.board = board
        if getattr(board, "baudrate", None):
            self.poll = self.serial_poll
        try:
            self.bp = bp or T.profile(board.info.name)
        except ValueError as exc:
            raise BoardError(f"{board.url}: {exc}") from None
        self.net: TTNet = self.bp.net
        self.cfg = board.info.fixed_config()
        have = board.info.region(P.Region.PARAMS).depth
        if have < self.net.n_params:
            raise BoardError(f"{board.url}: params region holds {have} codes, {self.net.name} needs "
                             f"{self.net.n_params}")
        self.pf = zo_fixed.ParamFormats.of(self.net, self.cfg)
        self.pinn = bool(board.info.capabilities & P.CAP_PINN)
        if self.pinn != bool(self.bp.pinn):
            raise BoardError(f"{board.url}: design {board.info.name} {'reports' if self.pinn else 'lacks'} the "
                             "pinn capability, unlike this host's profile of it")
        self.max_nodes = self.max_points = self.max_dim = 0
        if self.pinn:
            self.max_nodes, self.max_points, self.max_dim = board.read_results(T.RES_MAX_NODES, 3)
        ids = {r.id for r in board.info.regions}
        self.banks = 2 if {P.Region.BATCH_NEXT, P.Region.LABELS_NEXT} <= ids else 1
        if self.banks != self.bp.batch_banks and not self.pinn:   # e.g. a bitstream from before double buffering
            self.bp = replace(self.bp, batch_banks=self.banks)
        #: the batch bank the trainer reads (BATCH/LABELS address it); the board's register, read once
        self.bank = board.read_config(self.bp.bank_config, 1)[0] & 1 if self.banks > 1 else 0

    # --- loading -------------------------------------------------------------------------------------
    def load_program(self) -> int:
        """The engine program (header, step descriptors, sine table) into region `program`; returns words.

        A design without a PROGRAM region (the serial design, docs/rtl-serial.md) has its network fixed
        in the gateware: nothing to load, 0 words."""
        from ttzo.rtl.descriptors import REGION_BIASES, REGION_CORES, REGION_SHIFT, compile_network
        if T.REGION_PROGRAM not in {r.id for r in self.board.info.regions}:
            return 0
        zeros = np.zeros(self.net.n_params, dtype=np.int64)
        if self.pinn:     # the loss block's engine computes the interpolated sine (golden/hjb.py)
            prog = compile_network(self.net, self.net.unflatten(zeros), self.bp.cfg, self.bp.engine, "interp")
        else:
            prog = compile_network(self.net, self.net.unflatten(zeros), self.cfg, self.bp.engine)
        writes = sorted((a, d) for a, d in prog.bus_writes() if (a >> REGION_SHIFT) not in (REGION_CORES, REGION_BIASES))
        runs: list[tuple[int, list[int]]] = []
        for a, d in writes:                         # contiguous runs -> one WRITE_REGION stream each
            if runs and runs[-1][0] + len(runs[-1][1]) == a:
                runs[-1][1].append(d)
            else:
                runs.append((a, [d]))
        for a, words in runs:
            self.board.write_region(T.REGION_PROGRAM, words_to_bytes(np.array(words, dtype=np.int64), 32), 4 * a)
        return len(writes)

    def load_params(self, theta: np.ndarray) -> None:
        theta = np.asarray(theta, dtype=np.int64)
        if theta.shape != (self.net.n_params,):
            raise ValueError(f"expected {self.net.n_params} parameter codes for {self.net.name}, got {theta.shape}")
        self.board.load_params(theta)

    def read_params(self) -> np.ndarray:
        return self.board.read_params(self.net.n_params)

    def load_batch(self, x: np.ndarray, y: np.ndarray, next_bank: bool = False) -> int:
        """Input codes (B, in_features) as pixel bytes and the labels; returns B.

        ``next_bank``: into the bank the trainer does NOT read (BATCH_NEXT/LABELS_NEXT of a
        double-buffered design), which the board accepts while an operation runs."""
        if next_bank and self.banks < 2:
            raise BoardError(f"{self.board.url}: design {self.board.info.name} has one batch bank (no BATCH_NEXT)")
        x = np.asarray(x).reshape(len(y), -1)
        if x.shape[1] != self.net.in_features:
            raise ValueError(f"batch has {x.shape[1]} features per sample, {self.net.name} takes {self.net.in_features}")
        if not 1 <= len(y) <= self.bp.max_samples:
            raise ValueError(f"batch of {len(y)} samples: the board holds 1..{self.bp.max_samples}")
        if np.min(y) < 0 or np.max(y) >= self.net.out_features:
            raise ValueError(f"labels must be classes 0..{self.net.out_features - 1}, got {np.min(y)}..{np.max(y)}")
        if x.min() < 0 or x.max() > 255:
            raise ValueError("input codes must be pixel bytes 0..255 (the board's u8 input format)")
        bx, by = (P.Region.BATCH_NEXT, P.Region.LABELS_NEXT) if next_bank else (P.Region.BATCH, P.Region.LABELS)
        self.board.write_region(bx, np.asarray(x, dtype=np.uint8).tobytes())
        self.board.write_region(by, np.asarray(y, dtype=np.uint8).tobytes())
        return len(y)

    def select_bank(self, bank: int) -> None:
        """Make `bank` (0/1) the one the trainer reads and BATCH/LABELS address (idle board only)."""
        if self.banks < 2:
            raise BoardError(f"{self.board.url}: design {self.board.info.name} has one batch bank")
        self.board.configure(self.bp.bank_config, [bank & 1])
        self.bank = bank & 1

    def load_hjb(self, table, points: np.ndarray) -> tuple[int, int, int]:
        """A fixed-point node table (golden.stein_fixed.TableCodes) and collocation points (P, D input
        codes) into NODES / COLLOC; returns (nodes, points, dim) for configure_hjb."""
        if not self.pinn:
            raise BoardError(f"{self.board.url}: design {self.board.info.name} has no HJB loss block")
        x = np.asarray(points, dtype=np.int64)
        J, D = table.count, table.dim
        if not (1 <= D <= self.max_dim and 1 <= J <= self.max_nodes):
            raise ValueError(f"node table of {J} nodes in {D} dimensions: the board holds 1..{self.max_nodes} "
                             f"nodes in 1..{self.max_dim} dimensions")
        if D != self.net.in_features:
            raise ValueError(f"node table dimension {D} differs from {self.net.name}'s {self.net.in_features} inputs")
        if x.ndim != 2 or x.shape[1] != D or not 1 <= len(x) <= self.max_points:
            raise ValueError(f"collocation points of shape {x.shape}: need (1..{self.max_points}, {D})")
        self.board.load_node_table(table)
        self.board.load_points(x)
        return J, len(x), D

    # --- configuration -----------------------------------------------------------------------------
    def _split(self, codes: np.ndarray) -> tuple[int, int]:
        w, b = ~self.pf.is_bias, self.pf.is_bias
        return int(codes[w][0]), int(codes[b][0]) if b.any() else 0

    def registers(self, *, seed: int, step0: int, n_samples: int, queries: int = 0, mu: float = 0.1,
                  alpha: float = 0.01, kind: str = "rademacher", bank: int | None = None) -> list[int]:
        """All configuration registers for signRGE (golden zo_fixed codes) and the segment table;
        on a double-buffered design also the batch bank (default: the current one)."""
        from ttzo.sim.tb_zo_nets import segments
        if queries > self.bp.n_max:
            raise ValueError(f"{queries} queries per step: the board runs at most {self.bp.n_max}")
        if kind not in ("rademacher", "gaussian"):
            raise ValueError(f"perturbation {kind!r}: 'rademacher' or 'gaussian'")
        regs = [0] * self.bp.n_config
        mu_w, mu_b = self._split(self.pf.codes(mu, "mu"))
        a_w, a_b = self._split(self.pf.codes(alpha, "alpha")) if alpha > 0 else (0, 0)
        vals = {T.CFG_OPTIMIZER: 0, T.CFG_KIND: int(kind == "gaussian"), T.CFG_N_QUERIES: queries,
                T.CFG_MU_W: mu_w, T.CFG_MU_B: mu_b, T.CFG_ALPHA_W: a_w, T.CFG_ALPHA_B: a_b,
                T.CFG_SEED: seed & 0xFFFFFFFF, T.CFG_STEP0: step0 & 0xFFFFFFFF, T.CFG_N_SAMPLES: n_samples}
        segs = segments(self.net)
        vals[T.CFG_N_SEGMENTS] = len(segs)
        for k, (start, _, is_bias) in enumerate(segs):
            vals[T.CFG_SEGMENTS + k] = start | (int(is_bias) << 31)
        if self.banks > 1:
            vals[self.bp.bank_config] = self.bank if bank is None else bank & 1
        elif bank:
            raise BoardError(f"{self.board.url}: design {self.board.info.name} has one batch bank")
        for k, v in vals.items():
            regs[k] = v & 0xFFFFFFFF
        return regs

    def configure_signrge(self, **kw) -> list[int]:
        regs = self.registers(**kw)
        self.board.configure(0, regs)
        if self.banks > 1:
            self.bank = regs[self.bp.bank_config]
        return regs

    def configure_hjb(self, sizes: tuple[int, int, int], *, seed: int = 0, step0: int = 0, queries: int = 0,
                      mu: float = 0.01, alpha: float = 0.0, kind: str = "rademacher") -> list[int]:
        """signRGE registers on the HJB loss plus the loss block's (nodes, points, dim) from load_hjb."""
        if not self.pinn:
            raise BoardError(f"{self.board.url}: design {self.board.info.name} has no HJB loss block")
        regs = self.registers(seed=seed, step0=step0, n_samples=1, queries=queries, mu=mu, alpha=alpha, kind=kind)
        for k, v in enumerate(sizes):
            regs[self.bp.pinn_config0 + k] = int(v)
        self.board.configure(0, regs)
        return regs

    def read_hjb_points(self, n_points: int, dim: int) -> dict[str, np.ndarray]:
        """Per-point codes of the last forward pass from region OUTPUTS: grad (P, D), lap, res, loss (P,)
        (golden/stein_fixed.py's SteinResult fields; the unperturbed pass after hjb_loss)."""
        stride = self.max_dim + 3
        if not (1 <= n_points <= self.max_points and 1 <= dim <= self.max_dim):
            raise ValueError(f"{n_points} points in {dim} dimensions: the board holds 1..{self.max_points} "
                             f"points in 1..{self.max_dim} dimensions")
        data = self.board.read_region(P.Region.OUTPUTS, 8 * stride * n_points)
        lo = bytes_to_words(data, 32, signed=False)[0::2]
        hi = bytes_to_words(data, 32, signed=True)[1::2]
        v = (lo + (hi << 32)).reshape(n_points, stride)     # (lo, hi) -> signed 64-bit codes
        return {"grad": v[:, :dim], "lap": v[:, dim], "res": v[:, dim + 1], "loss": v[:, dim + 2]}

    def hjb_loss(self, timeout: float = 600.0) -> int:
        """One HJB loss evaluation on chip (RUN_INFERENCE): the integer sum of the per-point r^2 codes
        (golden/stein_fixed.py's loss_sum, loss format from IDENTIFY); parameters unchanged."""
        return self.run_inference(timeout).loss0

    # --- operations ---------------------------------------------------------------------------------
    def run_steps(self, k: int, timeout: float = 3600.0) -> RunResult:
        self.start_steps(k)
        return self.finish(timeout)

    def start_steps(self, k: int) -> None:
        """Start K steps and return at once (the board answers RUN_STEPS when the steps have started)."""
        self.board.run_steps(k, wait=False)

    def finish(self, timeout: float = 3600.0) -> RunResult:
        """Wait until the running operation ends; its result registers."""
        self.board.wait_idle(timeout, poll=self.poll)
        return RunResult.of(self.board.read_results(0, T.N_RESULTS))

    def run_inference(self, timeout: float = 600.0) -> RunResult:
        """One forward pass of the loaded batch (loss and correct count); parameters unchanged."""
        self.board.run_inference(0, wait=False)
        self.board.wait_idle(timeout, poll=self.poll)
        return RunResult.of(self.board.read_results(0, T.N_RESULTS))

    def read_log(self, forwards: int) -> list[tuple[int, int]]:
        """(batch loss, correct) of the last `forwards` forward passes (at most the log depth)."""
        n = min(forwards, self.bp.log_depth)
        w = bytes_to_words(self.board.read_region(T.REGION_LOG, 4 * T.LOG_WORDS * n), 32, signed=False)
        w = w.reshape(n, T.LOG_WORDS)
        out = []
        for lo, hi, correct, _ in w.tolist():
            v = lo | (hi << 32)
            out.append((v - (1 << 64) if v >= 1 << 63 else v, correct))
        return out


class ParamsOnBoard:
    """``st.theta`` of a lazy :class:`BoardStepper` between two syncs: the parameters are on the board.

    A placeholder, not an array, so that a stale theta can never be used by mistake: numpy refuses
    it (``np.asarray``, ``np.savez``) and attribute access fails, both with a message naming the fix
    (``BoardStepper.sync(st)``).  Each completed step makes a new one, so a rollback to an older
    placeholder is recognised (``sync`` refuses it instead of returning newer parameters).
    """

    __slots__ = ("url", "step")

    def __init__(self, url: str, step: int) -> None:
        self.url, self.step = url, step

    def _msg(self) -> str:
        return (f"{self.url}: the parameters after step {self.step} are on the board and were not read back; "
                "call BoardStepper.sync(state) before using state.theta")

    def __array__(self, *args, **kw):
        raise BoardError(self._msg())

    def __getattr__(self, name: str):
        raise AttributeError(f"ParamsOnBoard has no attribute {name!r}: {self._msg()}")

    def __repr__(self) -> str:
        return f"<ParamsOnBoard {self.url} after step {self.step}>"


class BoardStepper:
    """golden.optim.Stepper on a board: one signRGE step of the batch per call, bit-exact to GoldenStepper.

    ``lazy`` (default False: every step reads the parameters back into ``st.theta``, as direct callers
    expect): leave them on the board and read them in :meth:`sync` only (module docstring).
    """

    #: seconds to wait for a step an interrupt arrived in to end (module docstring: atomic steps)
    settle_timeout = 600.0

    def __init__(self, session: BoardSession, net: TTNet, cfg: OptimConfig, seed: int, batch: int, fixed,
                 lazy: bool = False) -> None:
        if fixed is None:
            raise BoardError("the board trains in fixed point: use --arith fixed with --backend board")
        if cfg.optimizer != "signrge":
            raise BoardError(f"optimizer {cfg.optimizer!r} on the board: only 'signrge' is supported (the "
                             "trainer's 47-bit CGE momentum has no readable region, so CGE/hybrid state could "
                             "not be checkpointed)")
        if cfg.central:
            raise BoardError("the board's trainer uses forward differences; drop --central")
        if net.describe() != session.net.describe():
            raise BoardError(f"{session.board.url}: the board is built for {session.net.name}, the run uses "
                             f"{net.name}; choose the matching --rank or board design")
        if fixed != session.cfg:
            raise BoardError(f"{session.board.url}: the board's formats {session.cfg} differ from the run's {fixed}")
        self.s, self.cfg, self.seed = session, cfg, seed
        self.golden = GoldenStepper(net, cfg, seed, batch, fixed)   # schedule (lr per epoch) only
        self.lazy = lazy
        #: what the board's PARAMS hold: a host array equal to them, or the placeholder standing for
        #: parameters only the board knows (lazy); both None = unknown (the next step uploads st.theta)
        self._on_board: np.ndarray | None = None
        self._ahead: ParamsOnBoard | None = None
        self._lost = ""                          # why the board's parameters became unknown, if they did
        #: operations the board had completed after our last one (RES_OPS): tells whether an
        #: interrupted RUN_STEPS reached the board
        self._ops: int | None = None
        #: read-backs of the parameter vector (each one READ_REGION PARAMS of the whole vector)
        self.param_reads = 0
        #: what each batch bank holds (bytes of pixels and labels; None = unknown), and the next batch
        self._held: list[tuple[bytes, bytes] | None] = [None, None]
        self._upcoming: tuple[np.ndarray, np.ndarray] | None = None
        #: uploads of the next batch: finished while the step still ran / only after it ended
        self.overlapped = self.serial_after = 0
        session.load_program()

    @property
    def double_buffered(self) -> bool:
        return self.s.banks > 1

    def prefetch(self, x: np.ndarray, y: np.ndarray) -> None:
        """The batch of the NEXT step() call: uploaded into the idle bank while the next step computes
        (golden/train.py's loop calls this before each step; a board with one bank ignores it)."""
        self._upcoming = (np.asarray(x), np.asarray(y)) if self.double_buffered else None

    @staticmethod
    def _key(x: np.ndarray, y: np.ndarray) -> tuple[bytes, bytes]:
        return np.asarray(x, dtype=np.uint8).tobytes(), np.asarray(y, dtype=np.uint8).tobytes()

    def _place_batch(self, x: np.ndarray, y: np.ndarray) -> tuple[int, int]:
        """(samples, bank holding this batch): a bank that already holds it, else upload into the active one."""
        key, active = self._key(x, y), self.s.bank
        for b in (active, 1 - active) if self.double_buffered else (active,):
            if self._held[b] == key:
                return len(y), b
        self._held[active] = None                # unknown until the upload completes
        B = self.s.load_batch(x, y)
        self._held[active] = key
        return B, active

    def _place_params(self, theta) -> None:
        """Make the board's PARAMS equal `theta` (uploading only if they differ)."""
        if isinstance(theta, ParamsOnBoard):
            if theta is not self._ahead:
                raise self._gone(theta)
            return                               # the board holds them
        theta = np.asarray(theta, dtype=np.int64)
        if self._on_board is None or not np.array_equal(self._on_board, theta):
            self._on_board = self._ahead = None  # unknown until the upload completes
            self.s.load_params(theta)
            self._on_board, self._lost = theta, ""

    def _gone(self, theta: ParamsOnBoard) -> BoardError:
        why = self._lost or "the board's parameters were replaced since"
        return BoardError(f"{self.s.board.url}: the parameters after step {theta.step} are no longer on the "
                          f"board ({why}); resume from the last checkpoint")

    def sync(self, st: OptState) -> None:
        """Make ``st.theta`` an array again: read the parameters back if they are on the board only (lazy).
        golden/train.py calls this before it evaluates, checkpoints or returns theta."""
        if not isinstance(st.theta, ParamsOnBoard):
            return
        if st.theta is not self._ahead:
            raise self._gone(st.theta)
        st.theta = self._on_board = self._read_params()
        self._ahead = None

    def _read_params(self) -> np.ndarray:
        self.param_reads += 1
        return self.s.read_params()

    def step(self, st: OptState, x: np.ndarray, y: np.ndarray, epoch: int) -> StepResult:
        self._place_params(st.theta)
        B, bank = self._place_batch(x, y)
        upcoming, self._upcoming = self._upcoming, None
        self.s.configure_signrge(seed=self.seed, step0=st.step, n_samples=B, queries=self.cfg.queries,
                                 mu=self.cfg.mu, alpha=self.golden.phase_lr(st, epoch), kind=self.cfg.perturbation,
                                 **({"bank": bank} if self.double_buffered else {}))
        if self._ops is None:
            self._ops = self.s.board.read_results(T.RES_OPS, 1)[0]
        try:                                     # from here on the step may be running on the board
            self.s.start_steps(1)
            if upcoming is not None:             # batch k+1 into the idle bank while step k runs
                self._upload_next(upcoming, bank)
            r = self.s.finish()
        except KeyboardInterrupt:
            r = self._settle()
            if r is None:                        # RUN_STEPS never reached the board: nothing happened
                raise
            raise StepFinished(self._done(st, r, B)) from None
        return self._done(st, r, B)

    def _upload_next(self, upcoming: tuple[np.ndarray, np.ndarray], bank: int) -> None:
        key = self._key(*upcoming)
        if self._held[1 - bank] != key:
            self._held[1 - bank] = None
            self.s.load_batch(*upcoming, next_bank=True)
            self._held[1 - bank] = key
            if self.s.board.status().busy:
                self.overlapped += 1
            else:
                self.serial_after += 1

    def _settle(self) -> RunResult | None:
        """After an interrupt in a started step: wait until the board has ended it and return its results,
        or None if RUN_STEPS never reached it.  If that fails too, the board's parameters are unknown."""
        self._held = [None, None]                # an upload may have been cut off
        try:
            self.s.board.wait_idle(self.settle_timeout, poll=self.s.poll)
            r = RunResult.of(self.s.board.read_results(0, T.N_RESULTS))
        except BaseException as exc:
            self._lose(f"a step was cut off by an interrupt ({type(exc).__name__})")
            raise
        if r.ops == self._ops:
            return None
        if r.ops != (self._ops + 1) & 0xFFFFFFFF or r.steps != 1:
            self._lose(f"after an interrupt the board reports {r.ops - self._ops} operations and {r.steps} steps")
            raise BoardError(f"{self.s.board.url}: {self._lost}, not the one step started")
        return r

    def _lose(self, why: str) -> None:
        self._on_board = self._ahead = None
        self._lost = why

    def _done(self, st: OptState, r: RunResult, B: int) -> StepResult:
        """Account a step the board completed: st.theta the parameters after it (or their placeholder)."""
        self._ops = r.ops
        self._on_board = self._ahead = None      # the board moved on from what the host holds
        if self.lazy:
            self._ahead = ParamsOnBoard(self.s.board.url, st.step + 1)
            st.theta = self._ahead
        else:
            st.theta = self._on_board = self._read_params()
        st.step += 1
        return StepResult(r.loss0 * self.s.cfg.loss.lsb / B, r.correct, r.forwards)


def golden_signrge(net: TTNet, theta: np.ndarray, x: np.ndarray, y: np.ndarray, *, seed: int, step0: int,
                   k_steps: int, queries: int, mu: float, alpha: float, cfg, kind: str = "rademacher"
                   ) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """golden/zo_fixed.py's K signRGE steps on one batch, with every (batch loss, correct) it evaluates."""
    from ttzo.sim.tb_zo_golden import signrge_steps
    pf = zo_fixed.ParamFormats.of(net, cfg)
    w, b = ~pf.is_bias, pf.is_bias
    mu_c, a_c = pf.codes(mu, "mu"), pf.codes(alpha, "alpha")
    return signrge_steps(net, theta, np.asarray(x, dtype=np.int64).reshape(len(y), -1), np.asarray(y, np.int64),
                         seed=seed, step0=step0, k_steps=k_steps, n_queries=queries, mu_w=int(mu_c[w][0]),
                         mu_b=int(mu_c[b][0]) if b.any() else 0, alpha_w=int(a_c[w][0]),
                         alpha_b=int(a_c[b][0]) if b.any() else 0, kind=kind, cfg=cfg)


def open_board_stepper(config, url: str, timeout: float = 5.0, baudrate: int = 115200
                       ) -> tuple[BoardStepper, Board]:
    """For `ttzo train mnist --backend board --port URL`: open the board and a Stepper for `config`
    (golden.train.TrainConfig); the caller closes the returned Board when training ends."""
    from ttzo.golden.network import mnist_tt
    try:
        board = Board.open(url, baudrate=baudrate, timeout=timeout)
    except BoardError as exc:                  # the CLI reports OSErrors as clear one-line errors
        raise OSError(str(exc)) from None
    try:
        stepper = BoardStepper(BoardSession(board), mnist_tt(config.rank), config.optim, config.seed,
                               config.batch, config.fixed_config())
    except BoardError as exc:
        board.close()
        raise OSError(str(exc)) from None
    except BaseException:
        board.close()
        raise
    return stepper, board
