"""The local backend: the worker in fresh Python processes on this machine, one per job.

Each process gets its job's bytes through a temporary file, as a remote worker
would get them over the network, so nothing of the caller's interpreter state
leaks into it; its data blobs come from a store in the cache folder. Its output
is relayed to this process's streams as it comes (so it also shows in
notebooks); an interrupt, or one process dying without an answer, stops them
all. A detached run's processes instead run in sessions of their own, writing
to log files.
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
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import pymc_modal
from pymc_modal.backends import Delivery
from pymc_modal.config import Options, cache_dir
from pymc_modal.errors import WorkerError

__all__ = ["blob_dir", "run", "start_detached", "store_blobs", "where"]

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


def _worker_command(job_path: Path, answer_path: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pymc_modal.backends.local",
        str(job_path),
        str(answer_path),
        str(blob_dir()),
    ]


def _worker_environment() -> dict[str, str]:
    """This process's environment, with this package importable as it is here."""
    package_parent = str(Path(pymc_modal.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, env.get("PYTHONPATH")]))
    return env


class _Process:
    """One worker process: its job written to a file, its output relayed as it comes.

    ``finished`` receives ``index`` when the process ends.
    """

    def __init__(self, job: bytes, folder: Path, index: int, finished: queue.Queue) -> None:
        folder.mkdir()
        self.job_path, self.answer_path = folder / "job", folder / "answer"
        start = time.perf_counter()
        self.job_path.write_bytes(job)
        self.transfer = time.perf_counter() - start
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            _worker_command(self.job_path, self.answer_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            # Never written: the worker ends when this end closes, however this process ends.
            stdin=subprocess.PIPE,
            env=_worker_environment(),
        )
        self.relays = [
            threading.Thread(target=_relay, args=(self.process.stdout, sys.stdout), daemon=True),
            threading.Thread(target=_relay, args=(self.process.stderr, sys.stderr), daemon=True),
        ]
        for relay in self.relays:
            relay.start()
        threading.Thread(target=self._await, args=(index, finished), daemon=True).start()

    def _await(self, index: int, finished: queue.Queue) -> None:
        self.process.wait()
        finished.put(index)

    def deliver(self) -> Delivery:
        """The answer of the finished process; raise if it died without one."""
        for relay in self.relays:
            relay.join()
        self.process.stdin.close()
        wall = time.perf_counter() - self.started
        returncode = self.process.returncode
        if returncode != 0 or not self.answer_path.exists():
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


def run(jobs: Sequence[bytes], options: Options) -> list[Delivery]:
    """Run each job in a new Python process, all at once, and return their answers in order.

    Parameters
    ----------
    jobs : sequence of bytes
        Encoded jobs; their blobs must be in :func:`blob_dir`.
    options : Options
        Unused: GPU, timeout and retries are Modal's.

    Raises
    ------
    WorkerError
        If a process died without answering (e.g. killed for memory); the
        others are stopped, as they are on an interrupt.
    """
    with tempfile.TemporaryDirectory(prefix="pymc-modal-") as folder:
        processes = []
        finished: queue.Queue[int] = queue.Queue()
        try:
            for index, job in enumerate(jobs):
                processes.append(_Process(job, Path(folder, str(index)), index, finished))
            deliveries: dict[int, Delivery] = {}
            while len(deliveries) < len(processes):
                index = finished.get()
                deliveries[index] = processes[index].deliver()
        except BaseException:
            for process in processes:
                _stop(process.process)
            raise
    return [deliveries[index] for index in range(len(processes))]


def _exit_with_the_client() -> None:
    """End this process once the client's end of its stdin closes (the client is gone)."""
    # The raw descriptor, not sys.stdin: a daemon thread blocked on a buffered
    # stream holds its lock and makes interpreter shutdown abort.
    while os.read(sys.stdin.fileno(), 4096):
        pass
    os._exit(1)


def start_detached(job_path: Path, answer_path: Path, log_path: Path) -> int:
    """Start a worker process that outlives this one; return its process id.

    It reads its job from ``job_path``, writes its answer to ``answer_path``
    and its output to ``log_path``, in a session of its own, so neither
    Ctrl-C nor the end of this process stops it.
    """
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [*_worker_command(job_path, answer_path), "detached"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=_worker_environment(),
            start_new_session=True,
        )
    return process.pid


def main(job_path: str, answer_path: str, blobs: str, mode: str = "attached") -> None:
    """Entry point of the worker process: read the job, run it, write the answer."""
    from pymc_modal import worker

    if mode == "attached":
        threading.Thread(target=_exit_with_the_client, daemon=True).start()
    answer = worker.run(Path(job_path).read_bytes(), blobs)
    partial = Path(answer_path + ".partial")
    partial.write_bytes(answer)
    partial.rename(answer_path)


if __name__ == "__main__":
    main(*sys.argv[1:])
