"""The local backend: the worker in Python processes on this machine, kept warm.

Each process gets its jobs' bytes through temporary files, as a remote worker
would get them over the network, so nothing of the caller's interpreter state
leaks into it; its data blobs come from a store in the cache folder. Its output
is relayed to this process's streams as it comes (so it also shows in
notebooks); an interrupt, or one process dying without an answer, stops them
all. A process that answered stays warm for the next call (libraries loaded,
its last model compiled) for ``scaledown_window`` seconds, as a Modal
container does, and ends with this process. A detached run's processes
instead run one job each in sessions of their own, writing to log files.
"""

from __future__ import annotations

import codecs
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

import pymc_modal
from pymc_modal.backends import Delivery
from pymc_modal.config import Options, cache_dir
from pymc_modal.errors import WorkerError

__all__ = [
    "blob_dir",
    "close",
    "compilation_cache_dir",
    "run",
    "serve",
    "start_detached",
    "store_blobs",
    "where",
]

WHERE = "this machine"


def _relay(stream, target: TextIO) -> None:
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    while chunk := os.read(stream.fileno(), 65536):
        target.write(decoder.decode(chunk))
        target.flush()


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def where(options: Options) -> str:
    """Where jobs run, in words: always this machine."""
    return WHERE


def _worker_environment() -> dict[str, str]:
    """This process's environment, with this package importable as it is here."""
    package_parent = str(Path(pymc_modal.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, env.get("PYTHONPATH")]))
    return env


class _Worker:
    """A worker process that runs the jobs it is sent, one at a time, until told to end.

    A job is sent as a line on its stdin naming the job, answer and blob
    paths; a byte on the ``done`` pipe says its answer is written. Closing its
    stdin ends it, however this process ends.
    """

    def __init__(self) -> None:
        self.done, done_for_worker = os.pipe()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pymc_modal.backends.local",
                "serve",
                str(compilation_cache_dir()),
                str(done_for_worker),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.PIPE,
            env=_worker_environment(),
            pass_fds=(done_for_worker,),
        )
        os.close(done_for_worker)
        relayed = ((self.process.stdout, sys.stdout), (self.process.stderr, sys.stderr))
        for stream, target in relayed:
            threading.Thread(target=_relay, args=(stream, target), daemon=True).start()
        self.retirement: threading.Timer | None = None

    def send(self, job_path: Path, answer_path: Path) -> None:
        line = f"{job_path}\t{answer_path}\t{blob_dir()}\n"
        self.process.stdin.write(line.encode())
        self.process.stdin.flush()

    def wait_done(self) -> bool:
        """Block until the job sent last is answered (True) or the process ended (False)."""
        return os.read(self.done, 1) == b"\n"

    def close(self) -> None:
        """End the process: it exits at the end of its input (killed if it does not)."""
        self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            _stop(self.process)
        os.close(self.done)

    def stop(self) -> None:
        _stop(self.process)
        os.close(self.done)


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


def close() -> None:
    """End every warm worker process now, rather than after its idle window."""
    with _warm_lock:
        for worker in _warm:
            worker.retirement.cancel()
            worker.close()
        _warm.clear()


class _Job:
    """One job on a worker: its files, its clock, and the worker's answer."""

    def __init__(self, job: bytes, folder: Path, worker: _Worker) -> None:
        folder.mkdir()
        self.worker = worker
        self.job_path, self.answer_path = folder / "job", folder / "answer"
        start = time.perf_counter()
        self.job_path.write_bytes(job)
        self.transfer = time.perf_counter() - start
        self.started = time.perf_counter()
        worker.send(self.job_path, self.answer_path)

    def deliver(self, answered: bool) -> Delivery:
        """The job's answer; raise if its process died without one."""
        wall = time.perf_counter() - self.started
        if not answered or not self.answer_path.exists():
            returncode = self.worker.process.wait()
            reason = (
                f"was killed by {signal.Signals(-returncode).name}"
                if returncode < 0
                else f"exited with code {returncode}"
            )
            raise WorkerError(
                f"The local worker process {reason} without an answer; its output is above. "
                "If it ran out of memory, keep fewer variables with var_names or sample "
                "fewer draws or chains."
            )
        start = time.perf_counter()
        answer = self.answer_path.read_bytes()
        transfer = self.transfer + time.perf_counter() - start
        return Delivery(answer=answer, seconds={"wall": wall, "transfer": transfer}, where=WHERE)


def compilation_cache_dir() -> Path:
    """This machine's JAX compilation cache, in :func:`pymc_modal.config.cache_dir`."""
    return cache_dir() / "jax"


def blob_dir() -> Path:
    """This machine's store of data blobs, in :func:`pymc_modal.config.cache_dir`.

    Delete the folder to free the space; a later run stores what it needs again.
    """
    return cache_dir() / "blobs"


def store_blobs(blobs: dict[str, bytes]) -> int:
    """Write the blobs the store lacks; return how many bytes that took.

    Parameters
    ----------
    blobs : dict of str to bytes
        Blobs by name, as :func:`pymc_modal.payload.encode_job` collects them.
    """
    folder = blob_dir()
    folder.mkdir(parents=True, exist_ok=True)
    written = 0
    for name, data in blobs.items():
        path = folder / name
        if path.exists():
            continue
        partial = path.with_name(f"{name}.{os.getpid()}.partial")
        partial.write_bytes(data)
        partial.replace(path)
        written += len(data)
    return written


def run(
    jobs: Sequence[bytes],
    options: Options,
    *,
    on_answer: Callable[[int, Delivery], None] | None = None,
) -> list[Delivery]:
    """Run the jobs on warm worker processes, ``options.workers`` at a time.

    Parameters
    ----------
    jobs : sequence of bytes
        Encoded jobs; their blobs must be in :func:`blob_dir`.
    options : Options
        ``workers``: how many jobs run at once; ``scaledown_window``: how long
        a process waits for a next job once it has answered.
    on_answer : callable, optional
        Called with each job's index and delivery as it is answered.

    Returns
    -------
    list of Delivery
        One per job, in order.

    Raises
    ------
    WorkerError
        If a process died without answering (e.g. killed for memory); the
        others are stopped, as they are on an interrupt.
    """
    deliveries: dict[int, Delivery] = {}
    running: dict[int, _Job] = {}
    answered: queue.Queue[tuple[int, bool]] = queue.Queue()

    def await_answer(index: int, worker: _Worker) -> None:
        answered.put((index, worker.wait_done()))

    with tempfile.TemporaryDirectory(prefix="pymc-modal-") as folder:
        waiting = list(enumerate(jobs))
        try:
            while waiting or running:
                while waiting and len(running) < options.workers:
                    index, job = waiting.pop(0)
                    running[index] = _Job(job, Path(folder, str(index)), _take_warm())
                    threading.Thread(
                        target=await_answer, args=(index, running[index].worker), daemon=True
                    ).start()
                index, ok = answered.get()
                deliveries[index] = running[index].deliver(ok)
                _keep_warm(running.pop(index).worker, options.scaledown_window)
                if on_answer is not None:
                    on_answer(index, deliveries[index])
        except BaseException:
            for job in running.values():
                job.worker.stop()
            raise
    return [deliveries[index] for index in range(len(jobs))]


def start_detached(job_path: Path, answer_path: Path, log_path: Path) -> int:
    """Start a worker process that outlives this one; return its process id.

    It reads its job from ``job_path``, writes its answer to ``answer_path``
    and its output to ``log_path``, in a session of its own, so neither
    Ctrl-C nor the end of this process stops it.
    """
    command = [
        "detached",
        str(compilation_cache_dir()),
        str(job_path),
        str(answer_path),
        str(blob_dir()),
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "pymc_modal.backends.local", *command],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=_worker_environment(),
            start_new_session=True,
        )
    return process.pid


def _answer(job_path: str, answer_path: str, blobs: str) -> None:
    from pymc_modal import worker

    answer = worker.run(Path(job_path).read_bytes(), blobs)
    partial = Path(answer_path + ".partial")
    partial.write_bytes(answer)
    partial.rename(answer_path)


def _read_jobs(jobs: queue.Queue) -> None:
    """Queue each job line from stdin; end this process at the end of stdin.

    Stdin ends when the client closes it or is gone, even while a job runs.
    """
    pending = b""
    # The raw descriptor, not sys.stdin: a daemon thread blocked on a buffered
    # stream holds its lock and makes interpreter shutdown abort.
    while chunk := os.read(sys.stdin.fileno(), 4096):
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            jobs.put(line.decode().split("\t"))
    os._exit(0)


def serve(done_fd: int) -> None:
    """Entry point of a warm worker process: answer each job sent until stdin ends."""
    jobs: queue.Queue[list[str]] = queue.Queue()
    threading.Thread(target=_read_jobs, args=(jobs,), daemon=True).start()
    while True:
        _answer(*jobs.get())
        sys.stdout.flush()
        sys.stderr.flush()
        os.write(done_fd, b"\n")


if __name__ == "__main__":
    from pymc_modal import worker

    mode, compilation_cache, *arguments = sys.argv[1:]
    worker.use_compilation_cache(compilation_cache)
    if mode == "serve":
        serve(int(arguments[0]))
    else:
        _answer(*arguments)
