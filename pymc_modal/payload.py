"""What crosses the wire: a job (model, settings) and its result, as bytes.

Every message starts with a small JSON header readable without unpickling
anything. A job's header is the manifest of the client's library versions;
the worker compares it with its own and refuses a mismatch before it loads
the pickled model, because a pickle made by one version of these libraries is
not safe to load with another.

A job's large arrays (the data) can travel apart from it as blobs named by
the SHA-256 of their ``.npy`` bytes: the job then holds only their names, and
a backend stores each blob once, however many runs use it.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import io
import json
import os
import pickle
import pickletools
import platform
import site
import struct
import sys
import sysconfig
import traceback
import types
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np

from pymc_modal.errors import PayloadError, VersionMismatchError, WorkerError
from pymc_modal.job import Answer, ForwardAnswer
from pymc_modal.paths import blob_path

__all__ = [
    "Job",
    "answer_status",
    "blob_names",
    "decode_job",
    "decode_result",
    "encode_failure",
    "encode_job",
    "encode_result",
    "job_checkpoint",
    "job_imports",
    "manifest",
    "python_version",
]

MAGIC = b"pymc-modal/1\n"
# Arrays at least this large travel as blobs when the caller collects blobs.
BLOB_MIN_BYTES = 1024**2
PACKAGES = ("pymc", "pytensor", "numpy", "cloudpickle", "jax", "numpyro", "blackjax", "arviz")


def python_version() -> str:
    """This interpreter's major.minor version, e.g. ``"3.11"``."""
    return ".".join(platform.python_version_tuple()[:2])


def manifest() -> dict[str, str]:
    """Versions that must be equal on both sides for a payload to be loaded."""
    versions = {"python": python_version()}
    versions.update({name: importlib.metadata.version(name) for name in PACKAGES})
    return versions


def _pack(header: dict[str, Any], body: bytes) -> bytes:
    encoded = json.dumps(header, sort_keys=True).encode()
    return MAGIC + struct.pack(">Q", len(encoded)) + encoded + body


def _unpack(data: bytes) -> tuple[dict[str, Any], memoryview]:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise PayloadError(f"Expected bytes, got {type(data).__name__}.")
    view = memoryview(data)
    if bytes(view[: len(MAGIC)]) != MAGIC:
        raise PayloadError("These bytes are not a pymc_modal message (bad magic prefix).")
    start = len(MAGIC) + 8
    (length,) = struct.unpack(">Q", view[len(MAGIC) : start])
    header = json.loads(bytes(view[start : start + length]))
    return header, view[start + length :]


class Job:
    """A decoded job: the model, the sampler settings, and dispatch registrations to make.

    ``fingerprint`` is the client's :attr:`pymc_modal.preflight.Checked.fingerprint`
    of the model, if it sent one: equal fingerprints mean an equal log density.
    ``checkpoint`` names the run's checkpoint, if it keeps one.
    """

    def __init__(
        self,
        model,
        settings,
        registrations: list[tuple[Any, type, Any]],
        fingerprint: str | None,
        checkpoint: str | None = None,
    ) -> None:
        self.model = model
        self.settings = settings
        self.registrations = registrations
        self.fingerprint = fingerprint
        self.checkpoint = checkpoint


@functools.cache
def _installed_roots() -> tuple[str, ...]:
    """Folders of the standard library and of installed packages, as given and resolved.

    Besides site-packages, any folder on ``sys.path`` that holds ``*.dist-info``
    entries: packages installed with ``pip install --target`` and put on
    PYTHONPATH are libraries too, not the user's own code.
    """
    paths = sysconfig.get_paths()
    roots = [paths[name] for name in ("stdlib", "platstdlib", "purelib", "platlib")]
    roots += [*site.getsitepackages(), site.getusersitepackages()]
    roots += [entry for entry in sys.path if entry and any(Path(entry).glob("*.dist-info"))]
    both = {os.path.join(path, "") for root in roots for path in (root, os.path.realpath(root))}
    return tuple(sorted(both))


def _is_local(module: types.ModuleType) -> bool:
    """Whether a module is the user's own Python code rather than an installed library.

    Compiled modules (e.g. PyTensor's cached C code) are never shipped: cloudpickle
    can only carry Python source by value.
    """
    if module.__name__ == "__main__":
        return True
    if module.__name__.partition(".")[0] == "pymc_modal":
        return False
    file = getattr(module, "__file__", None) or ""
    return file.endswith(".py") and not file.startswith(_installed_roots())


def _local_modules() -> list[types.ModuleType]:
    tops = {
        name.partition(".")[0]
        for name, module in list(sys.modules.items())
        if isinstance(module, types.ModuleType) and _is_local(module)
    }
    return [sys.modules[name] for name in sorted(tops) if name in sys.modules]


def _registrations(model, local: list[types.ModuleType]) -> list[tuple[Any, type, Any]]:
    """Dispatch registrations the worker's imports would not make: ``(dispatcher, cls, fn)``.

    JAX conversions registered for Op classes of the user's own modules, and
    PyMC's registrations (log-probability, support point, resizing, ...) for
    Op classes made while the model was built, such as each ``CustomDist``'s:
    the pickle carries those classes by value, and nothing registers them again.
    """
    from pymc.distributions.distribution import _support_point
    from pymc.distributions.shape_utils import _change_dist_size
    from pymc.logprob.abstract import _icdf, _logcdf, _logprob
    from pytensor.link.jax.dispatch import jax_funcify

    try:
        from pytensor.graph.traversal import ancestors
    except ImportError:  # PyTensor 2.31, which PyMC 5.25 uses
        from pytensor.graph.basic import ancestors

    names = {module.__name__ for module in local}
    found = [
        (jax_funcify, cls, fn)
        for cls, fn in jax_funcify.registry.items()
        if getattr(cls, "__module__", "").partition(".")[0] in names
    ]
    graph = [*model.basic_RVs, *model.potentials, *model.deterministics]
    made = {
        type(variable.owner.op)
        for variable in ancestors(graph)
        if variable.owner is not None and not _importable(type(variable.owner.op))
    }
    for dispatcher in (_logprob, _logcdf, _icdf, _support_point, _change_dist_size):
        found += [
            (dispatcher, cls, dispatcher.registry[cls]) for cls in made & dispatcher.registry.keys()
        ]
    return found


def _importable(cls: type) -> bool:
    """Whether ``cls`` is found by its module and name, as an unpickler would find it."""
    found = sys.modules.get(cls.__module__)
    for part in cls.__qualname__.split("."):
        found = getattr(found, part, None)
    return found is cls


def _without_coord_values(model):
    """A shallow copy of ``model`` whose coords keep their names but not their values.

    The worker needs only the dims' lengths, which the model holds apart from
    the coords; the values (often one label per observation, pickled one
    object at a time) stay here, where the result is labelled.
    """
    # Not copy.copy: a Model's __copy__ clones its graph, and the settings'
    # initvals must keep referring to the very variables that are shipped.
    light = object.__new__(type(model))
    for name, value in model.__dict__.items():
        if isinstance(value, types.MethodType) and value.__self__ is model:
            value = types.MethodType(value.__func__, light)  # e.g. str_repr
        light.__dict__[name] = value
    light._coords = dict.fromkeys(model.coords)
    return light


class _BlobPickler(cloudpickle.Pickler):
    """Pickles large arrays as references to blobs collected in ``blobs``."""

    def __init__(self, file, blobs: dict[str, bytes]) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.blobs = blobs

    def persistent_id(self, obj: Any) -> str | None:
        if type(obj) is not np.ndarray or obj.nbytes < BLOB_MIN_BYTES or obj.dtype.hasobject:
            return None
        buffer = io.BytesIO()
        np.save(buffer, obj, allow_pickle=False)
        data = buffer.getvalue()
        name = hashlib.sha256(data).hexdigest()
        self.blobs[name] = data
        return name


_STRINGS = frozenset(
    {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"}
    | {"SHORT_BINSTRING", "BINSTRING", "STRING"}
)
_GETS = frozenset({"GET", "BINGET", "LONG_BINGET"})
_PUTS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
# Functions that import the module named by their argument: cloudpickle's, for the
# modules a function shipped by value refers to.
_IMPORT_BY_NAME = frozenset({("cloudpickle.cloudpickle", "subimport")})


def _imported(body: bytes) -> set[str]:
    """Top-level names of the modules that loading the pickle ``body`` imports.

    Read from its opcodes without loading it: each global it looks up, and
    each module cloudpickle imports by name.
    """
    found: set[str] = set()
    memo: dict[int, Any] = {}
    strings: list[str | None] = []  # what each string (or memo) push put on the stack
    top: Any = None  # the last object pushed, as far as it matters here
    importing = False
    for op, arg, _ in pickletools.genops(body):
        if op.name in _STRINGS or op.name in _GETS:
            top = arg if op.name in _STRINGS else memo.get(arg)
            if isinstance(top, str) and importing:
                found.add(top)
                importing = False
            importing = importing or top in _IMPORT_BY_NAME
            strings.append(top if isinstance(top, str) else None)
        elif op.name == "MEMOIZE":
            memo[len(memo)] = top
        elif op.name in _PUTS:
            memo[arg] = top
        elif op.name in ("GLOBAL", "INST", "STACK_GLOBAL"):
            module, _, name = arg.partition(" ") if arg else (strings[-2], None, strings[-1])
            found.add(module)
            top = (module, name)
            importing = top in _IMPORT_BY_NAME
        else:
            top = None
    return {module.partition(".")[0] for module in found if module}


def job_imports(data: bytes) -> list[str]:
    """Top-level names of the installed modules an encoded job's pickle imports.

    The user's own modules, shipped by value, are not among them.
    """
    header, _ = _unpack(data)
    return header["imports"]


def blob_names(data: bytes) -> list[str]:
    """The names of the blobs an encoded job refers to."""
    header, _ = _unpack(data)
    return header.get("blobs", [])


class _BlobUnpickler(pickle.Unpickler):
    def __init__(self, file, blob_dir: str | os.PathLike) -> None:
        super().__init__(file)
        self.blob_dir = blob_dir

    def persistent_load(self, name: str) -> np.ndarray:
        try:
            return np.load(blob_path(self.blob_dir, name), allow_pickle=False)
        except FileNotFoundError:
            raise PayloadError(
                f"The data blob {name} is not in {self.blob_dir}; it may have been deleted "
                "since the job was sent. Run the call again to store it anew."
            ) from None


def encode_job(
    model,
    settings,
    blobs: dict[str, bytes] | None = None,
    fingerprint: str | None = None,
    *,
    with_coords: bool = False,
    checkpoint: str | None = None,
) -> bytes:
    """Serialize a model and its settings, shipping the user's own modules by value.

    Functions, classes and custom Ops that come from modules outside the
    installed libraries cannot be imported by the worker, so they are pickled
    by value, and the dispatch registrations the worker could not make itself
    travel with them (see :func:`_registrations`).
    Coordinate values are not shipped unless asked (see :func:`_without_coord_values`).

    Parameters
    ----------
    model : pymc.Model
    settings : SampleSettings or ForwardSettings
    blobs : dict, optional
        If given, arrays of :data:`BLOB_MIN_BYTES` or more are left out of the
        job and added here, as ``.npy`` bytes under their SHA-256 name; the
        job refers to them by name.
    fingerprint : str, optional
        The model's fingerprint from :func:`pymc_modal.preflight.check`, which
        lets a warm worker reuse what it compiled for an equal model.
    with_coords : bool, default False
        Ship the coords' values too, for work that labels its output on the worker.
    checkpoint : str, optional
        The name of the run's checkpoint (:func:`pymc_modal.store.checkpoint_names`).

    Raises
    ------
    PayloadError
        If the model cannot be serialized.
    """
    local = _local_modules()
    by_value = [m for m in local if m.__name__ != "__main__"]
    for module in by_value:
        cloudpickle.register_pickle_by_value(module)
    contents = {
        "model": model if with_coords else _without_coord_values(model),
        "settings": settings,
        "registrations": _registrations(model, local),
    }
    collected: dict[str, bytes] = {}
    try:
        if blobs is None:
            body = cloudpickle.dumps(contents, protocol=pickle.HIGHEST_PROTOCOL)
        else:
            buffer = io.BytesIO()
            _BlobPickler(buffer, collected).dump(contents)
            body = buffer.getvalue()
    except Exception as exc:
        shipped = ", ".join(m.__name__ for m in by_value) or "none"
        raise PayloadError(
            f"Could not serialize the model for shipping: {type(exc).__name__}: {exc}. "
            f"Your own modules shipped by value: {shipped}. Move what the model uses "
            "into importable, picklable functions and classes (no open files, locks or "
            "compiled extensions of your own), or install the module in the worker image."
        ) from exc
    finally:
        for module in by_value:
            cloudpickle.unregister_pickle_by_value(module)
    if blobs is not None:
        blobs.update(collected)
    header = {
        "kind": "job",
        "manifest": manifest(),
        "imports": sorted(_imported(body) - {module.__name__ for module in local}),
        "blobs": sorted(collected),
        "fingerprint": fingerprint,
        "checkpoint": checkpoint,
    }
    return _pack(header, body)


def decode_job(data: bytes, blob_dir: str | os.PathLike | None = None) -> Job:
    """Check a job's versions against this interpreter, then load it.

    Parameters
    ----------
    data : bytes
        A job made by :func:`encode_job`.
    blob_dir : path, optional
        The folder holding the job's blobs, each in a file named by its name.

    Raises
    ------
    VersionMismatchError
        If the payload was made with other library versions than this worker has.
    PayloadError
        If a blob the job refers to cannot be found.
    """
    header, body = _unpack(data)
    theirs, ours = header.get("manifest", {}), manifest()
    differ = [name for name in ours if theirs.get(name) != ours[name]]
    if differ:
        details = "; ".join(
            f"{name}: payload {theirs.get(name, 'missing')}, worker {ours[name]}" for name in differ
        )
        raise VersionMismatchError(
            f"Refusing to load a payload made with other library versions ({details}). "
            "A pickle is only safe to load with the versions that made it: run the client "
            "and the worker with the same versions."
        )
    if not header.get("blobs"):
        contents = cloudpickle.loads(body)
    elif blob_dir is None:
        raise PayloadError(
            f"The job refers to {len(header['blobs'])} data blob(s) but no blob folder was given."
        )
    else:
        contents = _BlobUnpickler(io.BytesIO(body), blob_dir).load()
    return Job(
        contents["model"],
        contents["settings"],
        contents["registrations"],
        header.get("fingerprint"),
        header.get("checkpoint"),
    )


def encode_result(result: Answer | ForwardAnswer) -> bytes:
    """Serialize a finished run's answer."""
    return _pack({"kind": "result", "status": "ok"}, pickle.dumps(result, pickle.HIGHEST_PROTOCOL))


def encode_failure(exc: BaseException) -> bytes:
    """Serialize an exception raised in the worker, with its traceback as text."""
    remote_traceback = "".join(traceback.format_exception(exc))
    try:
        pickled = cloudpickle.dumps(exc)
    except Exception:
        pickled = b""
    header = {
        "kind": "result",
        "status": "error",
        "type": type(exc).__qualname__,
        "message": str(exc),
        "traceback": remote_traceback,
    }
    return _pack(header, pickled)


def job_checkpoint(data: bytes) -> str | None:
    """The name of the checkpoint a job keeps, read from its header; None if it keeps none."""
    header, _ = _unpack(data)
    return header.get("checkpoint")


def answer_status(data: bytes) -> str:
    """``"ok"`` or ``"error"``: whether a worker's answer holds a result, read from its header."""
    header, _ = _unpack(data)
    return header["status"]


def decode_result(data: bytes, where: str) -> Answer | ForwardAnswer:
    """Load a worker's answer; re-raise its exception here if it failed.

    Parameters
    ----------
    data : bytes
        What the worker returned.
    where : str
        Where the worker ran, for the message of a re-raised exception.
    """
    header, body = _unpack(data)
    if header["status"] == "ok":
        return pickle.loads(body)
    note = f"Traceback from the worker ({where}):\n{header['traceback']}"
    try:
        exc = cloudpickle.loads(body)
    except Exception:
        exc = None
    if not isinstance(exc, BaseException):
        raise WorkerError(f"{header['type']}: {header['message']}\n\n{note}")
    exc.add_note(note)
    raise exc
