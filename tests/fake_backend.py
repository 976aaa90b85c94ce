"""A backend at the protocol that runs each job with the worker's own function, in this process.

For the pipeline's behaviour tests: the store, the plan, the attrs, what is
refused before shipping. The real backends have tests of their own; these
start no process.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from pymc_modal import paths, worker
from pymc_modal.backends import Delivery

WHERE = "this machine"


class _Answered:
    def __init__(self, answers: list[bytes]) -> None:
        self.answers = answers

    def wait(self, on_answer=None, block=True) -> list[Delivery]:
        deliveries = [Delivery(answer, {"wall": 0.0}, WHERE) for answer in self.answers]
        for index, delivery in enumerate(deliveries):
            if on_answer is not None:
                on_answer(index, delivery)
        return deliveries


class InProcess:
    """Jobs run here, one after another, when submitted; nothing is billed.

    Attributes
    ----------
    submitted : list of int
        How many jobs each submission had.
    """

    name = "local"

    def __init__(self) -> None:
        self.blobs = Path(tempfile.mkdtemp(prefix="pymc-modal-tests-blobs-"))
        self.submitted: list[int] = []

    def where(self, options) -> str:
        return WHERE

    def tariff(self, options, resources) -> None:
        return None

    def store_blobs(self, blobs: dict[str, bytes]) -> int:
        for name, data in blobs.items():
            path = paths.blob_path(self.blobs, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        return sum(map(len, blobs.values()))

    def submit(self, jobs, options, detached=None) -> _Answered:
        assert detached is None, "runs in this process cannot be detached"
        self.submitted.append(len(jobs))
        storage = worker.Storage(paths.checkpoints_dir())
        return _Answered([worker.run(job, self.blobs, storage=storage) for job in jobs])

    def close(self) -> None:
        pass
