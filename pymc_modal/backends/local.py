"""The local backend: the worker in Python processes on this machine, kept warm.

It is a process pool only; what runs in each process is
``python -m pymc_modal.worker``. Each process gets its jobs' bytes through
temporary files, as a remote worker would get them over the network, so
nothing of the caller's interpreter state leaks into it; its data blobs come
from a store in the cache folder. Its output is relayed to this process's
streams as it comes (so it also shows in notebooks); an interrupt, or one
process dying without an answer, stops them all. A process that answered
stays warm for the next call (libraries loaded, its last model compiled) for
``scaledown_window`` seconds, as a Modal container does, and ends with this
process. A detached run's processes instead run one job each in sessions of
their own, writing their answers and logs to the run's folder. Every worker
keeps its run's checkpoint in :func:`pymc_modal.paths.checkpoints_dir` and
is told its attempt's timeout, which it ends the run before; a waited job's
worker still running at its timeout is stopped, and a job whose worker died
or was stopped is given to a new one ``retries`` times, going on from its
checkpoint. The first Ctrl-C asks the runs to end after their current block
(a stop file beside each checkpoint); a second stops the processes.
"""

from __future__ import annotations

import codecs
import contextlib
import logging
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pymc_modal import console, payload
from pymc_modal.backends import Delivery, OnAnswer, say_stopping
from pymc_modal.config import Options
from pymc_modal.errors import RunTimeoutError, WorkerError
from pymc_modal.job import ANSWERED
from pymc_modal.paths import (
    CheckpointPaths,
    RunPaths,
    blob_dir,
    blob_path,
    checkpoints_dir,
    compilation_cache_dir,
    write_atomically,
)
from pymc_modal.resources import Resources

__all__ = ["BACKEND", "LocalBackend"]

_log = logging.getLogger("pymc_modal")

WHERE = "this machine"
# How often a detached run's folder is looked at while it is waited for.
POLL_SECONDS = 1.0
# The folder holding the pymc_modal package, for the worker processes to import it from.
PACKAGE_PARENT = Path(__file__).resolve().parents[2]


def _relay(stream, name: str, answered: queue.Queue[bool] | None = None) -> None:
    """Copy a worker's output to this process's ``sys.<name>`` (or the panel shown) as it comes.

    With ``answered``, each :data:`ANSWERED` in the output is taken out of it
    and put there as True, after the output before it; the output's end as False.
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def show(data: bytes) -> None:
        text = decoder.decode(data)
        # The stream as it is now (a test's, a cell's), and none if it was closed: the
        # marks must still be read.
        with contextlib.suppress(ValueError, OSError):
            console.write(text, getattr(sys, name))

    held = b""
    try:
        while chunk := os.read(stream.fileno(), 65536):
            parts = (held + chunk).split(ANSWERED) if answered is not None else [chunk]
            held = parts.pop()
            for part in parts:
                show(part)
                answered.put(True)
            # A mark the read cut in two waits for its end.
            cut = len(held) - _mark_started(held) if answered is not None else len(held)
            show(held[:cut])
            held = held[cut:]
    finally:
        if answered is not None:
            answered.put(False)


def _mark_started(data: bytes) -> int:
    """How many of ``data``'s last bytes begin :data:`ANSWERED`."""
    return next(
        (size for size in range(len(ANSWERED) - 1, 0, -1) if data.endswith(ANSWERED[:size])), 0
    )


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _worker_command(mode: str, *arguments: str | os.PathLike) -> list[str]:
    """The command line of a worker process, see :mod:`pymc_modal.worker.__main__`."""
    command = [sys.executable, "-m", "pymc_modal.worker", mode, compilation_cache_dir()]
    return [*map(str, command), *map(str, arguments)]


def _attempt(timeout: int) -> list[str]:
    """What a worker is told of a job besides its files: the blob and checkpoint folders,
    the attempt's timeout, and when it is submitted."""
    return [str(blob_dir()), str(checkpoints_dir()), str(timeout), repr(time.time())]


def _ask_stop(names: Sequence[str | None]) -> None:
    """Ask the runs keeping these checkpoints to end after their current block."""
    for name in filter(None, names):
        stop = CheckpointPaths(checkpoints_dir() / name).stop
        stop.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(stop, repr(time.time()).encode())


def _worker_environment() -> dict[str, str]:
    """This process's environment, with this package importable as it is here."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_PARENT), env.get("PYTHONPATH")]))
    return env


class _Worker:
    """A worker process that runs the jobs it is sent, one at a time, until told to end.

    A job is sent as a line on its stdin naming the job, answer and blob
    paths; :data:`ANSWERED` on its stderr, after the job's output, says its
    answer is written. Closing its stdin ends it, however this process ends.
    """

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            _worker_command("serve"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.PIPE,
            env=_worker_environment(),
        )
        self.answered: queue.Queue[bool] = queue.Queue()
        relayed = (
            (self.process.stdout, "stdout", None),
            (self.process.stderr, "stderr", self.answered),
        )
        for arguments in relayed:
            threading.Thread(target=_relay, args=arguments, daemon=True).start()
        self.retirement: threading.Timer | None = None

    def send(self, job_path: Path, answer_path: Path, timeout: int) -> None:
        line = "\t".join(map(str, [job_path, answer_path, *_attempt(timeout)]))
        self.process.stdin.write(f"{line}\n".encode())
        self.process.stdin.flush()

    def wait_done(self) -> bool:
        """Block until the job sent last is answered (True) or the process ended (False).

        Its output is relayed by then.
        """
        return self.answered.get()

    def close(self) -> None:
        """End the process: it exits at the end of its input (killed if it does not)."""
        self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            _stop(self.process)

    def stop(self) -> None:
        _stop(self.process)


# Workers that answered and wait for the next job, each until its retirement timer fires.
_warm: list[_Worker] = []
_warm_lock = threading.Lock()


def _take_warm() -> _Worker:
    with _warm_lock:
        while _warm:
            worker = _warm.pop()
            worker.retirement.cancel()
            if worker.process.poll() is None:
                return worker
            worker.close()
    return _Worker()


def _keep_warm(worker: _Worker, seconds: float) -> None:
    with _warm_lock:
        worker.retirement = threading.Timer(seconds, _retire, args=(worker,))
        worker.retirement.daemon = True
        worker.retirement.start()
        _warm.append(worker)


def _retire(worker: _Worker) -> None:
    with _warm_lock:
        if worker in _warm:
            _warm.remove(worker)
            worker.close()


def _close_warm() -> None:
    """End every warm worker process now, rather than after its idle window."""
    with _warm_lock:
        for worker in _warm:
            worker.retirement.cancel()
            worker.close()
        _warm.clear()


class _Job:
    """One attempt at a job on a worker: its files, its clock, and the worker's answer."""

    def __init__(
        self, job: bytes, paths: RunPaths, index: int, worker: _Worker, timeout: int
    ) -> None:
        self.worker = worker
        self.job_path, self.answer_path = paths.job(index), paths.answer(index)
        start = time.perf_counter()
        self.job_path.write_bytes(job)
        self.transfer = time.perf_counter() - start
        self.started = time.perf_counter()
        self.deadline = self.started + timeout
        worker.send(self.job_path, self.answer_path, timeout)

    def answered(self, done: bool) -> bool:
        """Whether the worker answered; if not, its process has ended."""
        if done and self.answer_path.exists():
            return True
        self.worker.process.wait()
        return False

    def failure(self, timeout: int, attempts: int) -> Exception:
        """Why the worker's last attempt ended without an answer."""
        kept = (
            "Its checkpoint is kept: calling again with the same arguments goes on from its "
            "last block."
        )
        if time.perf_counter() >= self.deadline:
            return RunTimeoutError(
                f"The local worker was stopped at its timeout of {timeout} s, on each of "
                f"{attempts} attempt(s) ({attempts} x {timeout} s). {kept} Allow more time with "
                "pymc_modal.options(timeout=SECONDS), or more attempts with retries=."
            )
        returncode = self.worker.process.returncode
        reason = (
            f"was killed by {signal.Signals(-returncode).name}"
            if returncode < 0
            else f"exited with code {returncode}"
        )
        return WorkerError(
            f"The local worker process {reason} without an answer; its output is above. {kept} "
            "If it ran out of memory, keep fewer variables with var_names or sample fewer draws "
            "or chains."
        )

    def deliver(self) -> Delivery:
        """The job's answer."""
        wall = time.perf_counter() - self.started
        start = time.perf_counter()
        answer = self.answer_path.read_bytes()
        transfer = self.transfer + time.perf_counter() - start
        return Delivery(answer=answer, seconds={"wall": wall, "transfer": transfer}, where=WHERE)


class _Pool:
    """A waited call's jobs on warm worker processes, ``options.workers`` at a time.

    A job whose worker died, or was stopped at its timeout, is given to a new
    worker ``options.retries`` times, which goes on from its checkpoint.
    """

    def __init__(self, jobs: Sequence[bytes], options: Options) -> None:
        self.jobs, self.options = jobs, options

    def wait(self, on_answer: OnAnswer = None, block: bool = True) -> list[Delivery]:
        """Run the jobs; raise if a job's last attempt ended without an answer.

        The others are then stopped. The first Ctrl-C asks every run to end
        after its current block and waits for their answers; a second stops
        them at once.
        """
        options = self.options
        deliveries: dict[int, Delivery] = {}
        running: dict[int, _Job] = {}
        attempts = dict.fromkeys(range(len(self.jobs)), 0)
        answered: queue.Queue[tuple[int, bool]] = queue.Queue()
        interrupted = False

        def await_answer(index: int, worker: _Worker) -> None:
            answered.put((index, worker.wait_done()))

        with tempfile.TemporaryDirectory(prefix="pymc-modal-") as folder, console.shown():
            paths = RunPaths(Path(folder))
            waiting = list(range(len(self.jobs)))
            try:
                while waiting or running:
                    while waiting and len(running) < options.workers:
                        index = waiting.pop(0)
                        attempts[index] += 1
                        job = _Job(self.jobs[index], paths, index, _take_warm(), options.timeout)
                        running[index] = job
                        threading.Thread(
                            target=await_answer, args=(index, job.worker), daemon=True
                        ).start()
                    try:
                        first = min(job.deadline for job in running.values())
                        index, done = answered.get(timeout=max(0.0, first - time.perf_counter()))
                    except queue.Empty:
                        for job in running.values():
                            if time.perf_counter() >= job.deadline:
                                job.worker.process.kill()  # its answer's waiter sees it end
                        continue
                    except KeyboardInterrupt:
                        if interrupted:
                            raise
                        interrupted = True
                        _ask_stop([payload.job_checkpoint(self.jobs[i]) for i in running])
                        say_stopping()
                        continue
                    job = running.pop(index)
                    if not job.answered(done):
                        job.worker.stop()
                        failure = job.failure(options.timeout, attempts[index])
                        if attempts[index] > options.retries:
                            raise failure
                        _log.warning(
                            "%s\nAttempt %d of %d goes on from its checkpoint.",
                            failure,
                            attempts[index] + 1,
                            options.retries + 1,
                        )
                        waiting.insert(0, index)
                        continue
                    deliveries[index] = job.deliver()
                    _keep_warm(job.worker, options.scaledown_window)
                    if on_answer is not None:
                        on_answer(index, deliveries[index])
            except BaseException:
                for job in running.values():
                    job.worker.stop()
                raise
        return [deliveries[index] for index in range(len(self.jobs))]


def _alive(pid: int) -> bool:
    try:
        # A worker this process started must be reaped, or it lingers as a zombie.
        finished, _ = os.waitpid(pid, os.WNOHANG)
        return finished == 0
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _relay_log(path: Path, offset: int) -> int:
    """Copy what the log gained since ``offset`` to stderr; return the new offset."""
    if not path.exists():
        return offset
    with open(path, "rb") as log:
        log.seek(offset)
        new = log.read()
    console.write(new.decode(errors="replace"), sys.stderr)
    return offset + len(new)


class _Detached:
    """A detached run's worker processes, a job each, answering into the run's folder."""

    def __init__(self, record: dict[str, Any], folder: Path) -> None:
        self.record, self.folder = record, folder
        self.run = RunPaths(folder)
        self.paths = [self.run.answer(i) for i in range(len(record["pids"]))]

    def _running(self) -> bool:
        return not any(
            not path.exists() and not _alive(pid)
            for path, pid in zip(self.paths, self.record["pids"], strict=True)
        )

    def answers(self) -> list[bytes] | None:
        """The answers, once every worker has written its own."""
        deliveries = self.wait(block=False)
        return None if deliveries is None else [delivery.answer for delivery in deliveries]

    def wait(self, on_answer: OnAnswer = None, block: bool = True) -> list[Delivery] | None:
        """Wait for the answers, relaying the first worker's log to stderr if ``block``."""
        with console.shown() if block else contextlib.nullcontext():
            return self._wait(on_answer, block)

    def _wait(self, on_answer: OnAnswer, block: bool) -> list[Delivery] | None:
        log, offset = self.run.log(0), 0
        relay = _relay_log if block else lambda path, offset: offset
        while not all(path.exists() for path in self.paths):
            if not self._running():
                relay(log, offset)
                logs = ", ".join(str(self.run.log(i)) for i in range(len(self.paths)))
                raise WorkerError(
                    f"A worker of run {self.folder.name} ended without an answer; the workers' "
                    f"output is in {logs}. Its checkpoint is kept: sampling again with the same "
                    "arguments goes on from its last block."
                )
            if not block:
                return None
            offset = relay(log, offset)
            time.sleep(POLL_SECONDS)
        relay(log, offset)
        deliveries = [Delivery(path.read_bytes(), {}, WHERE) for path in self.paths]
        for index, delivery in enumerate(deliveries):
            if on_answer is not None:
                on_answer(index, delivery)
        return deliveries


def _prune(folder: Path, keep: set[str], dry_run: bool, by_folder: bool = False) -> int:
    """Delete the files under ``folder`` not named in ``keep``; the bytes that frees.

    With ``by_folder``, a file is named by its folder within ``folder``.
    """

    def name(path: Path) -> str:
        return path.relative_to(folder).parts[0] if by_folder else path.name

    doomed = [path for path in folder.rglob("*") if path.is_file() and name(path) not in keep]
    freed = sum(path.stat().st_size for path in doomed)
    if not dry_run:
        for path in doomed:
            path.unlink()
    return freed


def _start_detached(folder: Path, index: int, timeout: int) -> int:
    """Start job ``index`` of the run in ``folder`` in a process that outlives this one.

    It runs in a session of its own, so neither Ctrl-C nor the end of this
    process stops it.
    """
    run = RunPaths(folder)
    job, answer = run.job(index), run.answer(index)
    with open(run.log(index), "wb") as output:
        process = subprocess.Popen(
            _worker_command("detached", job, answer, *_attempt(timeout)),
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=_worker_environment(),
            start_new_session=True,
        )
    return process.pid


class LocalBackend:
    """The worker in processes on this machine; see the module's docstring."""

    name = "local"

    def where(self, options: Options) -> str:
        """Where jobs run, in words: always this machine."""
        return WHERE

    def tariff(self, options: Options, resources: Resources) -> None:
        """Nothing is billed on this machine."""
        return None

    def store_blobs(self, blobs: dict[str, bytes]) -> int:
        """Write the blobs the store lacks; return how many bytes that took.

        Parameters
        ----------
        blobs : dict of str to bytes
            Blobs by name, as :func:`pymc_modal.payload.encode_job` collects them.
        """
        written = 0
        for name, data in blobs.items():
            path = blob_path(blob_dir(), name)
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                write_atomically(path, data)
                written += len(data)
        return written

    def prune(self, keep: set[str], fetched: set[str], dry_run: bool) -> dict[str, int]:
        """Delete the stored blobs and checkpoints not in ``keep`` and JAX's compiled programs.

        Returns the bytes freed (or, with ``dry_run``, that would be) by store.
        A detached run's answers are in its folder, which is left alone.
        """
        return {
            "data blobs on this machine": _prune(blob_dir(), keep, dry_run),
            "checkpoints on this machine": _prune(checkpoints_dir(), keep, dry_run, by_folder=True),
            "compiled programs on this machine": _prune(compilation_cache_dir(), set(), dry_run),
        }

    def submit(
        self, jobs: Sequence[bytes], options: Options, detached: Path | None = None
    ) -> _Pool | _Detached:
        """Queue the jobs for warm processes or, with ``detached``, start a process each.

        Parameters
        ----------
        jobs : sequence of bytes
            Encoded jobs; their blobs must be in :func:`blob_dir`.
        options : Options
            ``workers``: how many jobs run at once; ``scaledown_window``: how
            long a process waits for a next job once it has answered.
        detached : Path, optional
            A run's folder, to hold each job, its answer and its log.
        """
        if detached is None:
            return _Pool(jobs, options)
        for index, job in enumerate(jobs):
            RunPaths(detached).job(index).write_bytes(job)
        pids = [_start_detached(detached, index, options.timeout) for index in range(len(jobs))]
        return _Detached({"pids": pids}, detached)

    def reattach(self, record: dict[str, Any], folder: Path) -> _Detached:
        """A detached run's processes, from its record."""
        return _Detached(record, folder)

    def stop(self, checkpoints: Sequence[str]) -> None:
        """Ask the runs keeping these checkpoints to end after their current block."""
        _ask_stop(checkpoints)

    def close(self) -> None:
        """End every warm worker process now, rather than after its idle window."""
        _close_warm()


BACKEND = LocalBackend()
