"""A worker process on this machine: ``python -m pymc_modal.worker MODE JAX_CACHE ...``.

``serve``: a warm worker. Each line on stdin names, tab-separated, a job
file, its answer file, the blob folder, the checkpoints' folder, the
attempt's timeout in seconds (empty for none) and when the job was submitted
(:func:`time.time`), from which the timeout counts; once an answer is
written, :data:`pymc_modal.job.ANSWERED` follows the job's output on stderr.
It exits at the end of stdin, which comes when the client
closes it or is gone, even while a job runs. It ignores Ctrl-C, which a
terminal sends to the client's whole process group: the client asks a run
to stop through its checkpoint, or ends the process.

``detached JOB ANSWER BLOBS CHECKPOINTS TIMEOUT SUBMITTED``: one job, then
exit (a detached run's worker).
"""

from __future__ import annotations

import os
import queue
import signal
import sys
import threading
from pathlib import Path

from pymc_modal import worker
from pymc_modal.job import ANSWERED
from pymc_modal.paths import write_atomically


def _answer(
    job_path: str, answer_path: str, blobs: str, checkpoints: str, timeout: str, submitted: str
) -> None:
    storage = worker.Storage(Path(checkpoints), float(submitted))
    answer = worker.run(
        Path(job_path).read_bytes(),
        blobs,
        storage=storage,
        timeout=float(timeout) if timeout else None,
        timeout_from=float(submitted),
    )
    write_atomically(Path(answer_path), answer)


def _read_jobs(jobs: queue.Queue) -> None:
    """Queue each job line from stdin; end this process at the end of stdin."""
    pending = b""
    # The raw descriptor, not sys.stdin: a daemon thread blocked on a buffered
    # stream holds its lock and makes interpreter shutdown abort.
    while chunk := os.read(sys.stdin.fileno(), 4096):
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            jobs.put(line.decode().split("\t"))
    os._exit(0)


def serve() -> None:
    """Answer each job sent until stdin ends."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    jobs: queue.Queue[list[str]] = queue.Queue()
    threading.Thread(target=_read_jobs, args=(jobs,), daemon=True).start()
    while True:
        _answer(*jobs.get())
        sys.stdout.flush()
        sys.stderr.flush()
        os.write(sys.stderr.fileno(), ANSWERED)


if __name__ == "__main__":
    mode, compilation_cache, *arguments = sys.argv[1:]
    worker.use_compilation_cache(compilation_cache)
    if mode == "serve":
        serve()
    else:
        _answer(*arguments)
