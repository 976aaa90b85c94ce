"""Where things are kept: every file of a run, a stored result, a job, a blob and an answer.

Each file's name is made here and nowhere else, as submitit's ``JobPaths``
does, with the atomic write every one of them is written with. Both sides
read it: the client and the backends name the files, a worker writes its
answer where it is told.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "CHECKPOINTS",
    "NEEDS",
    "CheckpointPaths",
    "RunPaths",
    "blob_dir",
    "blob_path",
    "cache_dir",
    "checkpoints_dir",
    "compilation_cache_dir",
    "fits_dir",
    "results_dir",
    "runs_dir",
    "write_atomically",
    "written_atomically",
]


def cache_dir() -> Path:
    """This machine's folder for pymc_modal's data blobs, results and run records.

    ``$XDG_CACHE_HOME/pymc-modal``, where ``XDG_CACHE_HOME`` defaults to ``~/.cache``.
    """
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "pymc-modal")


def results_dir() -> Path:
    """The folder of stored results; delete it to free the space, a later call samples anew."""
    return cache_dir() / "results"


def runs_dir() -> Path:
    """The folder of this machine's detached runs."""
    return cache_dir() / "runs"


def fits_dir() -> Path:
    """The records of this machine's sampling calls, which ``extend`` and ``warm_start`` read."""
    return cache_dir() / "fits"


def blob_dir() -> Path:
    """This machine's store of data blobs; delete it to free the space, a run stores them again."""
    return cache_dir() / "blobs"


# The folder of checkpoints, in this machine's cache folder and on Modal's results volume.
CHECKPOINTS = "checkpoints"
# What ends the name of a detached run's list of what it needs, on Modal's results volume.
NEEDS = "needs"


def checkpoints_dir() -> Path:
    """This machine's checkpoints of runs, each in a folder named by its chains (see ``store``)."""
    return cache_dir() / CHECKPOINTS


def compilation_cache_dir() -> Path:
    """This machine's JAX compilation cache."""
    return cache_dir() / "jax"


def blob_path(root: str | os.PathLike, name: str) -> Path:
    """Where blob ``name`` is kept in a store: in a shard named by its first two characters.

    Sharding keeps a store's folders small, so that a backend can look up the
    blobs a job needs without listing every blob it holds.
    """
    return Path(root, name[:2], name)


# The files of a folder every run has one of, by attribute.
_FILES = {
    "record": "record.json",
    "context": "context.pkl",
    "result": "result.nc",
    "attrs": "attrs.json",
}


@dataclasses.dataclass(frozen=True)
class RunPaths:
    """The files of a folder of jobs: a detached run's, a stored result's, or a waited call's.

    Attributes
    ----------
    folder : Path
        The folder; a detached run's is named by the run's id.
    record : Path
        A detached run's record (JSON): backend, price, attrs, and how to find its workers.
    context : Path
        What wrapping a detached run's result takes from the client's model (pickle).
    result : Path
        A fetched run's result, in ArviZ's netCDF form.
    attrs : Path
        A stored result's attrs (JSON).
    """

    folder: Path
    record: Path = dataclasses.field(init=False)
    context: Path = dataclasses.field(init=False)
    result: Path = dataclasses.field(init=False)
    attrs: Path = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        for name, file in _FILES.items():
            object.__setattr__(self, name, self.folder / file)

    def job(self, index: int) -> Path:
        """Worker ``index``'s job."""
        return self.folder / f"job-{index}"

    def answer(self, index: int) -> Path:
        """Worker ``index``'s answer."""
        return self.folder / f"answer-{index}"

    def log(self, index: int) -> Path:
        """Worker ``index``'s output, on the local backend."""
        return self.folder / f"log-{index}.txt"

    def remote_answer(self, index: int) -> str:
        """The name worker ``index``'s answer is kept under on Modal's results volume."""
        return f"{self.folder.name}-{index}"

    @property
    def remote_needs(self) -> str:
        """The name of the list of what the run needs kept, on Modal's results volume, until
        it is fetched: its data blobs and checkpoints, for ``clean`` on any machine."""
        return f"{self.folder.name}-{NEEDS}"


@dataclasses.dataclass(frozen=True)
class CheckpointPaths:
    """The files of one run's checkpoint.

    Attributes
    ----------
    folder : Path
        The checkpoint's folder, named by the run's chains.
    state : Path
        The sampler's state and the run's progress, replaced at each save.
    stop : Path
        Written by the client to ask the run to end after its current block.
    """

    folder: Path
    state: Path = dataclasses.field(init=False)
    stop: Path = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", self.folder / "state")
        object.__setattr__(self, "stop", self.folder / "stop")

    def draws(self, start: int, stop: int) -> Path:
        """The draws ``start`` to ``stop`` of every chain, written once."""
        return self.folder / f"draws-{start}-{stop}"


@contextlib.contextmanager
def written_atomically(path: Path) -> Iterator[Path]:
    """A path beside ``path`` to write a file or folder to; it becomes ``path`` as the block ends.

    A crash mid-write leaves no half-written ``path``, and a block that
    raises leaves nothing behind. Replacing a non-empty folder raises OSError.
    """
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    try:
        yield partial
        partial.replace(path)
    except BaseException:
        if partial.is_dir():
            shutil.rmtree(partial)
        else:
            partial.unlink(missing_ok=True)
        raise


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to the file ``path`` so that no reader sees it half written."""
    with written_atomically(path) as partial:
        partial.write_bytes(data)
