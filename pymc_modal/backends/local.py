"""The local backend: the worker in a fresh Python process on this machine.

The process gets the job's bytes through a temporary file, as a remote worker
would get them over the network, so nothing of the caller's interpreter state
leaks into it. Its output is relayed to this process's streams as it comes
(so it also shows in notebooks), and an interrupt stops it.
"""

from __future__ import annotations

import codecs
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TextIO

import pymc_modal
from pymc_modal.backends import Delivery
from pymc_modal.errors import WorkerError

__all__ = ["run"]

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


def run(job: bytes) -> Delivery:
    """Run ``job`` in a new Python process and return its answer.

    Parameters
    ----------
    job : bytes
        An encoded job.

    Raises
    ------
    WorkerError
        If the process died without answering (e.g. killed for memory).
    """
    package_parent = str(Path(pymc_modal.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory(prefix="pymc-modal-") as folder:
        job_path, answer_path = Path(folder, "job"), Path(folder, "answer")
        start = time.perf_counter()
        job_path.write_bytes(job)
        transfer = time.perf_counter() - start

        start = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "pymc_modal.backends.local", str(job_path), str(answer_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        relays = [
            threading.Thread(target=_relay, args=(process.stdout, sys.stdout), daemon=True),
            threading.Thread(target=_relay, args=(process.stderr, sys.stderr), daemon=True),
        ]
        for relay in relays:
            relay.start()
        try:
            returncode = process.wait()
        except BaseException:
            _stop(process)
            raise
        finally:
            for relay in relays:
                relay.join()
        process_seconds = time.perf_counter() - start

        if returncode != 0 or not answer_path.exists():
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
        answer = answer_path.read_bytes()
        transfer += time.perf_counter() - start
    return Delivery(
        answer=answer,
        seconds={"wall": process_seconds, "transfer": transfer},
        where=WHERE,
    )


def main(job_path: str, answer_path: str) -> None:
    """Entry point of the worker process: read the job, run it, write the answer."""
    from pymc_modal import worker

    answer = worker.run(Path(job_path).read_bytes())
    partial = Path(answer_path + ".partial")
    partial.write_bytes(answer)
    partial.rename(answer_path)


if __name__ == "__main__":
    main(*sys.argv[1:])
