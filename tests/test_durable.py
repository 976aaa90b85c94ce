"""Durable runs: checkpoints, resume, deadlines, stops and partial results.

The block loop is driven here by a toy sampler on a clock the test moves,
so that each path is taken exactly; the real samplers' states are then
saved and gone on from in this process, and the backends' restarts in
worker processes (slow).
"""

import contextlib
import dataclasses
import functools
import os
import pickle
import signal
import subprocess
import threading
import time
import types
from pathlib import Path

import jax
import numpy as np
import pymc as pm
import pytensor.tensor as pt
import pytest
from pytensor.graph.op import Op
from pytensor.link.jax.dispatch import jax_funcify

import pymc_modal
from pymc_modal import __main__ as cli
from pymc_modal import backends, paths
from pymc_modal.errors import NoDrawsError, NotConvergedWarning, RunTimeoutError, WorkerError
from pymc_modal.job import Returned
from pymc_modal.payload import Job
from pymc_modal.worker import blackjax, blocks, numpyro
from pymc_modal.worker.checkpoint import Attempt, Checkpoint, Storage


class Clock:
    """``time`` for the block loop: it moves only when the toy sampler steps."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


class Toy:
    """A sampler of independent normal draws, one second a step, whose state is its RNG's."""

    stretches = True
    returned = Returned(kept=[types.SimpleNamespace(name="x")], observed=[], fn=None)

    def __init__(
        self,
        clock: Clock,
        chains: int = 2,
        fail_at_block: int | None = None,
        stop: paths.CheckpointPaths | None = None,
    ) -> None:
        self.clock, self.chains, self.fail_at_block = clock, chains, fail_at_block
        self.stop = stop
        self.rng = np.random.default_rng(0)
        self.tuned, self.blocks, self.begun = 0, 0, False

    def begin(self) -> None:
        self.begun = True

    def tune(self, steps: int) -> None:
        self.clock.now += steps
        self.tuned += steps

    def draw(self, n: int) -> blocks.Draw:
        self.blocks += 1
        if self.stop is not None:  # the client asks, while the first block is drawn
            self.stop.stop.write_text("101.0")
        if self.blocks == self.fail_at_block:
            raise FloatingPointError("the block's energy was NaN")
        self.clock.now += n
        x = self.rng.normal(size=(self.chains, n))
        return [x], {"lp": -0.5 * x**2, "diverging": np.zeros_like(x, dtype=bool)}

    def state(self):
        return self.rng.bit_generator.state

    def restore(self, state, done: int) -> None:
        self.rng.bit_generator.state = state


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(blocks, "time", clock)
    monkeypatch.setattr(blocks, "BLOCK_SECONDS", 20.0)  # blocks of 20 draws, a second each
    return clock


@pytest.fixture
def storage(tmp_path) -> Storage:
    return Storage(tmp_path / "checkpoints", submitted=100.0)


def _settings(settings, **kwargs):
    return dataclasses.replace(settings, **{"tune": 10, "draws": 100, "chains": 2, **kwargs})


def _expected(draws: int) -> np.ndarray:
    """The toy's first ``draws`` of each of 2 chains, drawn in blocks of 20."""
    rng = np.random.default_rng(0)
    return np.concatenate([rng.normal(size=(2, 20)) for _ in range(5)], axis=1)[:, :draws]


def _run(settings, clock, storage=None, deadline=None, **toy):
    checkpoint = None if storage is None else storage.checkpoint("run")
    attempt = Attempt(started=clock.now, deadline=deadline, checkpoint=checkpoint)
    return blocks.run(settings, Toy(clock, **toy), attempt)


def test_a_run_without_a_target_is_drawn_in_blocks_each_saved(settings, clock, storage):
    answer = _run(_settings(settings), clock, storage)

    assert answer.posterior["x"].shape == (2, 100) and answer.stop_reason is None
    np.testing.assert_array_equal(answer.posterior["x"], _expected(100))
    # Ended as asked: kept whole, marked ended, for an extension to go on from.
    progress, _ = pickle.loads(storage.checkpoint("run").paths.state.read_bytes())
    assert progress.ended and progress.blocks == (20,) * 5 and progress.tuned == 10


def test_an_extension_goes_on_from_a_finished_run_to_one_longer_runs_draws(
    settings, clock, storage, capsys
):
    _run(_settings(settings, draws=60), clock, storage)

    toy = Toy(clock)
    extended = blocks.run(
        _settings(settings, extend=True), toy, Attempt(checkpoint=storage.checkpoint("run"))
    )
    assert not toy.begun and toy.tuned == 0
    np.testing.assert_array_equal(extended.posterior["x"], _expected(100))
    assert (extended.attempts, extended.earlier_seconds) == (1, 0.0)

    # Any other call of the same chains starts afresh rather than take a finished run's draws.
    toy = Toy(clock)
    blocks.run(_settings(settings), toy, Attempt(checkpoint=storage.checkpoint("run")))
    assert toy.begun

    # An extension whose checkpoint is gone draws everything afresh, and says so.
    toy = Toy(clock)
    extended = blocks.run(_settings(settings, extend=True), toy, Attempt())
    assert toy.begun and "checkpoint is gone" in capsys.readouterr().err
    np.testing.assert_array_equal(extended.posterior["x"], _expected(100))


def test_a_deadline_ends_the_run_before_the_block_that_would_pass_it(settings, clock, storage):
    # Warm-up ends at 10 s, then blocks of 20 s: the third would end at 70 s, past 55 s.
    answer = _run(_settings(settings), clock, storage, deadline=55.0)

    assert (answer.stop_reason, answer.draws, answer.attempts) == ("deadline", 40, 1)
    progress, _ = pickle.loads(storage.checkpoint("run").paths.state.read_bytes())
    assert progress.blocks == (20, 20) and not progress.ended


def test_the_next_attempt_goes_on_from_the_checkpoint_to_the_same_draws(
    settings, clock, storage, capsys
):
    _run(_settings(settings), clock, storage, deadline=55.0)
    clock.now = 0.0  # a new attempt, in a new process
    toy = Toy(clock)
    answer = blocks.run(
        _settings(settings), toy, Attempt(started=0.0, checkpoint=storage.checkpoint("run"))
    )

    assert "Going on from the checkpoint of attempt 1: 10 of 10 warm-up steps and 40" in (
        capsys.readouterr().err
    )
    assert not toy.begun and toy.tuned == 0  # neither started nor warmed up again
    assert (answer.stop_reason, answer.attempts, answer.earlier_seconds) == (None, 2, 50.0)
    clock.now = 0.0
    uninterrupted = _run(_settings(settings), clock)
    np.testing.assert_array_equal(answer.posterior["x"], uninterrupted.posterior["x"])
    np.testing.assert_array_equal(answer.sample_stats["lp"], uninterrupted.sample_stats["lp"])


def test_a_warm_up_that_cannot_end_in_time_says_so_and_keeps_its_steps(
    settings, clock, storage, capsys
):
    # 20 warm-up steps in stretches of one: the first says they need 19 s more of the 5 s left.
    with pytest.raises(
        NoDrawsError, match=r"after 5 of 20 warm-up steps.*go on from warm-up step 5"
    ):
        _run(_settings(settings, tune=20), clock, storage, deadline=5.0)
    assert "Warm-up needs about 19s more" in capsys.readouterr().err

    clock.now = 0.0
    toy = Toy(clock)
    blocks.run(
        _settings(settings, tune=20),
        toy,
        Attempt(started=0.0, checkpoint=storage.checkpoint("run")),
    )
    assert toy.tuned == 15


def test_a_run_asked_to_stop_ends_after_its_block(settings, clock, storage):
    checkpoint = storage.checkpoint("run").paths
    answer = _run(_settings(settings), clock, storage, stop=checkpoint)

    assert (answer.stop_reason, answer.draws) == ("stopped", 20)
    progress, _ = pickle.loads(checkpoint.state.read_bytes())
    assert progress.blocks == (20,) and not progress.ended


def test_a_stop_asked_before_the_job_was_submitted_is_not_its_own(settings, clock, storage):
    stop = storage.checkpoint("run").paths.stop
    stop.parent.mkdir(parents=True)
    stop.write_text("99.0")

    assert _run(_settings(settings), clock, storage).stop_reason is None


def test_a_stop_in_warm_up_ends_it_at_once_with_its_steps_kept(settings, clock, storage):
    stop = storage.checkpoint("run").paths.stop
    stop.parent.mkdir(parents=True)
    stop.write_text("101.0")  # asked after the job was submitted, at 100
    with pytest.raises(NoDrawsError, match="after 1 of 10 warm-up steps, because it was asked"):
        _run(_settings(settings), clock, storage)
    progress, _ = pickle.loads(storage.checkpoint("run").paths.state.read_bytes())
    assert (progress.tuned, progress.blocks) == (1, ())


def test_a_failed_block_returns_the_draws_before_it_with_the_error(settings, clock, storage):
    answer = _run(_settings(settings), clock, storage, fail_at_block=3)

    assert (answer.stop_reason, answer.draws) == ("error", 40)
    assert "FloatingPointError: the block's energy was NaN" in answer.error
    np.testing.assert_array_equal(answer.posterior["x"], _expected(40))


def test_a_failure_in_the_first_block_is_raised(settings, clock):
    with pytest.raises(FloatingPointError):
        _run(_settings(settings), clock, fail_at_block=1)


def test_a_checkpoint_that_cannot_be_saved_does_not_end_the_run(settings, clock, tmp_path, capsys):
    def conflict():
        raise RuntimeError("commit conflict")

    failing = Storage(tmp_path, publish=conflict)
    answer = _run(_settings(settings), clock, failing)

    assert answer.draws == 100 and answer.stop_reason is None
    said = capsys.readouterr().err
    assert said.count("A checkpoint was not saved (RuntimeError: commit conflict)") == 1


def test_an_unreadable_or_other_checkpoint_is_started_over(settings, clock, storage, caplog):
    _run(_settings(settings), clock, storage, deadline=55.0)
    checkpoint = storage.checkpoint("run")
    checkpoint.paths.draws(0, 20).write_bytes(b"not a pickle")
    clock.now = 0.0
    toy = Toy(clock)
    blocks.run(_settings(settings), toy, Attempt(started=0.0, checkpoint=checkpoint))
    assert toy.begun and "could not be read (UnpicklingError" in caplog.text

    # Another seed's chains: not this run's checkpoint.
    other = _settings(settings, seed=settings.seed + 1)
    assert checkpoint.load(other) is None
    assert Checkpoint.chains(other) != Checkpoint.chains(_settings(settings))


def test_runs_that_differ_only_in_when_they_stop_share_their_checkpoint(settings):
    from pymc_modal.store import checkpoint_names

    base = _settings(settings)
    capped = dataclasses.replace(base, target_ess=400, max_seconds=60.0, progressbar=True)
    longer = dataclasses.replace(base, draws=500, max_draws=900, extend=True)
    assert checkpoint_names("f", [base]) == checkpoint_names("f", [capped])
    assert checkpoint_names("f", [base]) == checkpoint_names("f", [longer])
    assert checkpoint_names("f", [base]) != checkpoint_names(
        "f", [dataclasses.replace(base, warm_start="earlier")]
    )
    assert checkpoint_names("f", [base]) != checkpoint_names(
        "f", [dataclasses.replace(base, seed=2)]
    )
    assert checkpoint_names("f", [base]) != checkpoint_names("g", [base])


def test_stopping_an_unknown_run_says_where_it_looked(capsys):
    assert cli.main(["stop", "20260101-000000-abcdef"]) == 1
    assert "No run '20260101-000000-abcdef' on this machine" in capsys.readouterr().err


SAMPLER_CHAINS = {"numpyro": 2, "chees": 8}


def _worker_run(name, model, settings, checkpoint=None):
    module = {"numpyro": numpyro, "chees": blackjax}[name]
    # The same fingerprint each time: the default sampler's programs are compiled once.
    job = Job(model, settings, [], "model", None if checkpoint is None else "c")
    return module.sample(job, Attempt(checkpoint=checkpoint))


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SAMPLER_CHAINS))
def test_a_sampler_goes_on_from_its_checkpoint_to_the_draws_of_one_run(
    name, settings, model, tmp_path, monkeypatch
):
    target = dataclasses.replace(
        settings,
        sampler=name,
        chains=SAMPLER_CHAINS[name],
        tune=50,
        draws=20,
        target_ess=10**6,
        max_draws=60,
    )
    uninterrupted = _worker_run(name, model, target)
    checkpoint = Storage(tmp_path).checkpoint("c")

    # The third block fails: the two before it come back, and are kept.
    module = {
        "numpyro": "pymc_modal.worker.numpyro._Chains",
        "chees": "pymc_modal.worker.blackjax._Ensemble",
    }[name]
    steps_class = __import__("importlib").import_module(module.rpartition(".")[0])
    cls = getattr(steps_class, module.rpartition(".")[2])
    real, calls = cls.draw, []

    def failing(self, n):
        calls.append(n)
        if len(calls) == 3:
            raise FloatingPointError("NaN energy")
        return real(self, n)

    monkeypatch.setattr(cls, "draw", failing)
    partial = _worker_run(name, model, target, checkpoint)
    monkeypatch.undo()
    assert (partial.stop_reason, partial.draws) == ("error", 40)

    resumed = _worker_run(name, model, target, checkpoint)
    assert (resumed.stop_reason, resumed.attempts, resumed.draws) == ("max_draws", 2, 60)
    for group in ("posterior", "sample_stats"):
        for key, values in getattr(uninterrupted, group).items():
            np.testing.assert_array_equal(getattr(resumed, group)[key], values, err_msg=key)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SAMPLER_CHAINS))
def test_a_run_in_many_blocks_draws_what_one_block_draws(name, settings, model, monkeypatch):
    whole = dataclasses.replace(
        settings, sampler=name, chains=SAMPLER_CHAINS[name], tune=30, draws=12
    )
    one = _worker_run(name, model, whole)
    monkeypatch.setattr(blocks, "BLOCK_SECONDS", 1e-9)  # a block a draw
    many = _worker_run(name, model, whole)
    for key, values in one.posterior.items():
        np.testing.assert_array_equal(many.posterior[key], values, err_msg=key)


class _Tick(Op):
    """The identity, computed once a draw; in JAX, with a callback into the worker's process.

    ``mode``: ``"die"`` kills the worker in the third block of the run whose
    checkpoints are in ``folder``, and again in its fifth; ``"slow"`` takes 5 ms.
    """

    itypes = [pt.dscalar]
    otypes = [pt.dscalar]
    __props__ = ("folder", "mode")

    def __init__(self, folder: str, mode: str) -> None:
        self.folder, self.mode = folder, mode

    def perform(self, node, inputs, outputs):
        outputs[0][0] = np.asarray(inputs[0])


def _tick(folder: str, mode: str) -> None:
    if mode == "slow":
        time.sleep(0.005)
        return
    for state in Path(folder, "pymc-modal", "checkpoints").glob("*/state"):
        saved = len(pickle.loads(state.read_bytes())[0].blocks)
        for after, killed in ((2, Path(folder, "killed-1")), (4, Path(folder, "killed-2"))):
            if saved >= after and not killed.exists():
                killed.touch()
                os.kill(os.getpid(), signal.SIGKILL)


@jax_funcify.register(_Tick)
def _tick_in_jax(op, **kwargs):
    def tick(x):
        jax.debug.callback(functools.partial(_tick, op.folder, op.mode))
        return x

    return tick


def _ticking_model(folder, mode: str) -> pm.Model:
    """``make_model`` with a :class:`_Tick`; no warm worker has compiled another's callback.

    A model's fingerprint does not see a callback's arguments, so a warm
    worker would run another test's compiled program.
    """
    from conftest import make_model

    backends.close_all()
    with make_model() as model:
        pm.Deterministic("tick", _Tick(str(folder), mode)(model["mu"]))
    return model


# Blocks of 20 draws to a target never reached, up to 100 draws a chain.
BLOCKS = {
    "backend": "local",
    "draws": 20,
    "tune": 50,
    "chains": 2,
    "target_ess": 10**6,
    "random_seed": 3,
    "progressbar": False,
}


@pytest.mark.slow
def test_a_killed_local_worker_goes_on_from_its_checkpoint(tmp_path, monkeypatch, caplog):
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    model = _ticking_model(cache, "die")  # killed in its third block, and in its fifth

    with pytest.raises(WorkerError, match="killed by SIGKILL.*checkpoint is kept"):
        pymc_modal.sample(model=model, max_draws=100, **BLOCKS)
    # Called again, it goes on from its second block; killed again, it is restarted.
    with pymc_modal.options(retries=1), pytest.warns(NotConvergedWarning, match="max_draws"):
        resumed = pymc_modal.sample(model=model, max_draws=100, **BLOCKS)

    assert "Attempt 2 of 2 goes on from its checkpoint" in caplog.text
    assert resumed.attrs["pymc_modal_attempts"] == 3
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "elsewhere"))  # no checkpoint there
    with pytest.warns(NotConvergedWarning, match="max_draws"):
        uninterrupted = pymc_modal.sample(model=model, max_draws=100, **BLOCKS)
    assert uninterrupted.attrs["pymc_modal_attempts"] == 1
    for name in ("mu", "effect", "tick"):
        np.testing.assert_array_equal(
            resumed.posterior[name].values, uninterrupted.posterior[name].values
        )


@pytest.mark.slow
def test_a_local_run_ends_before_its_timeout_with_its_draws(tmp_path):
    model = _ticking_model(tmp_path, "slow")
    with (
        pymc_modal.options(timeout=40),
        pytest.warns(NotConvergedWarning, match=r"ended early \(deadline\)"),
    ):
        idata = pymc_modal.sample(model=model, **BLOCKS)

    assert idata.attrs["pymc_modal_stop_reason"] == "deadline"
    assert idata.posterior.sizes["draw"] >= 20
    assert idata.attrs["pymc_modal_seconds_total"] < 40


def _first_block_saved(run_checkpoints: Path) -> None:
    """Return once a run's checkpoint holds a block (within a minute)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for state in run_checkpoints.glob("*/state"):
            with contextlib.suppress(Exception):
                if pickle.loads(state.read_bytes())[0].blocks:
                    return
        time.sleep(0.05)
    raise AssertionError("no block was saved within a minute")


@pytest.mark.slow
def test_run_stop_ends_a_detached_local_run_with_its_draws(tmp_path):
    model = _ticking_model(tmp_path, "slow")
    run = pymc_modal.sample(model=model, wait=False, **BLOCKS)
    try:
        _first_block_saved(paths.checkpoints_dir())
        assert cli.main(["stop", run.id]) == 0  # as run.stop() does
        with pytest.warns(NotConvergedWarning, match=r"ended early \(stopped\)"):
            idata = pymc_modal.fetch(run.id)
    finally:  # a run to a target never reached must not outlive a failed test
        for pid in run.record["pids"]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert idata.attrs["pymc_modal_stop_reason"] == "stopped"
    assert idata.posterior.sizes["draw"] % 20 == 0


@pytest.fixture
def ctrl_c_raises():
    """SIGINT raises KeyboardInterrupt here, as Ctrl-C in a terminal does, even where the
    tests run as a background job: its processes inherit SIGINT ignored, and Python then
    installs no handler of its own."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.slow
def test_the_first_ctrl_c_ends_a_waited_local_run_with_its_draws(tmp_path, ctrl_c_raises):
    model = _ticking_model(tmp_path, "slow")

    def interrupt_after_a_block():
        _first_block_saved(paths.checkpoints_dir())
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_after_a_block, daemon=True).start()
    with pytest.warns(NotConvergedWarning, match=r"ended early \(stopped\)"):
        idata = pymc_modal.sample(model=model, **BLOCKS)
    assert idata.attrs["pymc_modal_stop_reason"] == "stopped"


@pytest.mark.slow
def test_a_preempted_modal_attempt_is_restarted_and_goes_on_from_its_checkpoint(
    modal_server, model
):
    # Saved after warm-up and after each of two blocks, then preempted in the third.
    modal_server.preempt_after_commits = 3
    on_modal = {**BLOCKS, "backend": "modal", "max_draws": 100}
    with pytest.warns(NotConvergedWarning, match="max_draws"):
        resumed = pymc_modal.sample(model=model, **on_modal)

    assert len(modal_server.restarts) == 1 and resumed.attrs["pymc_modal_attempts"] == 2
    with pytest.warns(NotConvergedWarning, match="max_draws"):
        uninterrupted = pymc_modal.sample(model=model, max_draws=100, **BLOCKS)
    for name in uninterrupted.posterior.data_vars:
        np.testing.assert_array_equal(
            resumed.posterior[name].values, uninterrupted.posterior[name].values
        )
    # Both attempts are billed.
    assert resumed.attrs["pymc_modal_gpu_seconds"] > resumed.attrs["pymc_modal_seconds_sample"]


@pytest.mark.slow
def test_run_stop_reaches_a_detached_modal_run_through_the_results_volume(modal_server, model):
    modal_server.hold = True  # the call runs once it is waited on, after the stop
    on_modal = {**BLOCKS, "backend": "modal", "max_draws": 40}
    run = pymc_modal.sample(model=model, wait=False, **on_modal)
    run.stop()

    needs, stop = modal_server.uploaded  # what the run needs kept, then the request
    assert needs == f"{run.id}-needs" and stop.endswith("/stop")
    # Stopped in its warm-up: nothing drawn, the steps kept.
    with pytest.raises(NoDrawsError, match=r"after 2 of 50 warm-up steps, because it was asked"):
        pymc_modal.fetch(run.id)
    modal_server.hold = False
    with pytest.warns(NotConvergedWarning, match="max_draws"):
        idata = pymc_modal.sample(model=model, **on_modal)
    assert idata.attrs["pymc_modal_attempts"] == 2


class _Stuck:
    """A worker that never answers: a process that only sleeps."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(["sleep", "600"])

    def send(self, job_path, answer_path, timeout) -> None:
        pass

    def wait_done(self) -> bool:
        self.process.wait()
        return False

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


def test_a_local_worker_still_running_at_its_timeout_is_stopped_and_retried(monkeypatch):
    from pymc_modal.backends import local
    from pymc_modal.config import resolve

    started = []

    def stuck():
        started.append(_Stuck())
        return started[-1]

    monkeypatch.setattr(local, "_take_warm", stuck)
    pool = local.LocalBackend().submit([b"job"], resolve(timeout=1, retries=1))
    with pytest.raises(RunTimeoutError, match=r"2 attempt\(s\) \(2 x 1 s\)"):
        pool.wait()
    assert len(started) == 2
    assert all(worker.process.returncode is not None for worker in started)
