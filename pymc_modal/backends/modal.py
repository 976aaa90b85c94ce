"""The Modal backend: one App, one generic function, an image pinned to the client.

All Modal-specific code lives in this module. The infrastructure is declared
once, here, as data: the image is ``debian_slim`` with the client's Python
version and the client's exact versions of the libraries a pickle depends on
(plus JAX's CUDA plugin for that JAX version) and this package's own source.
Equal client versions give an equal image definition, so Modal's image cache
is hit on every run after the first. Jobs whose pickles import other
installed packages run on that image with those packages added, at the
client's versions, as one more layer. The GPU, CPU, memory, timeout and
retries of a call are applied with ``Function.with_options``, not by one
function per GPU; a fallback list of GPUs, or none (a container with CPU
cores only), is a variant app. Three
Volumes are mounted on every container: ``pymc-modal-data`` holds the data
blobs by content hash, ``pymc-modal-results`` the answers of detached runs
until they are fetched and every run's checkpoint, ``pymc-modal-jax-cache``
JAX's compiled programs (capped in size), so that a model sampled again skips
XLA compilation even in a new container.

The app started by the first waited call keeps running for the calls after
it, and each container stays warm for ``scaledown_window`` seconds after it
answers, until :func:`close` or the end of this process. Detached runs start
an app of their own, as a running app cannot be started again.
"""

from __future__ import annotations

import atexit
import builtins
import contextlib
import functools
import importlib.metadata
import io
import json
import logging
import queue as stdlib_queue
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import modal
import modal.config
import modal.exception
import modal.types
from modal.volume import FileEntryType
from packaging.utils import canonicalize_name

from pymc_modal import console, payload
from pymc_modal.backends import Delivery, OnAnswer, say_stopping
from pymc_modal.config import DEFAULT_TIMEOUT, Options
from pymc_modal.errors import (
    InvalidOptionError,
    MissingCredentialsError,
    ModalServiceError,
    PayloadError,
    RunTimeoutError,
    WorkerError,
)
from pymc_modal.paths import (
    CHECKPOINTS,
    NEEDS,
    CheckpointPaths,
    RunPaths,
    blob_path,
    write_atomically,
)
from pymc_modal.pricing import DEFAULT_GPU, Tariff
from pymc_modal.resources import Resources

__all__ = [
    "BACKEND",
    "ModalBackend",
    "app",
    "extra_requirements",
    "gpu_function",
    "requirements",
    "run_job",
    "service_errors_explained",
]

_log = logging.getLogger("pymc_modal")

APP_NAME = "pymc-modal"
DETACHED_APP_NAME = "pymc-modal-detached"
DATA_VOLUME = "pymc-modal-data"
RESULTS_VOLUME = "pymc-modal-results"
JAX_CACHE_VOLUME = "pymc-modal-jax-cache"
JAX_CACHE_MAX_BYTES = 4 * 1024**3
PINNED = ("pymc", "pytensor", "numpy", "arviz", "numpyro", "nutpie", "blackjax", "cloudpickle")
# JAX publishes no CUDA 12 plugin from 0.12.1 on; Modal's hosts run NVIDIA's 580 driver
# series, which CUDA 13 needs.
CUDA13_FROM = "0.12.1"
# How often a worker's output is sent to a notebook's client, at most.
OUTPUT_SECONDS = 0.25
# Modal sends an argument over 2 MiB (over 8 KiB for spawn) through its blob storage,
# holding it in memory at both ends: a cap keeps a job off that path's limits.
MAX_PAYLOAD_BYTES = 2 * 1024**3


def requirements(cuda: bool = True) -> list[str]:
    """The image's pip requirements: this client's versions, exactly.

    With ``cuda=False``, JAX without its CUDA plugin (4 GB of NVIDIA's
    libraries), for a CPU-only copy of the image.
    """
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in PINNED]
    jax = importlib.metadata.version("jax")
    extra = f"[{cuda_extra(jax)}]" if cuda else ""
    return [*pins, f"jax{extra}=={jax}"]


def cuda_extra(jax_version: str) -> str:
    """JAX's CUDA extra for that JAX version: ``"cuda12"``, or ``"cuda13"`` from 0.12.1 on."""
    from packaging.version import Version

    return "cuda13" if Version(jax_version) >= Version(CUDA13_FROM) else "cuda12"


@functools.cache
def _image(extra: tuple[str, ...] = ()) -> modal.Image:
    """The image, with the pinned packages ``extra`` added in a layer of their own."""
    # The image's Python must be the client's for its pickles to load.
    built = modal.Image.debian_slim(python_version=payload.python_version())
    built = built.uv_pip_install(*requirements())
    if extra:
        built = built.uv_pip_install(*extra)
    # Modal refuses a build step on top of local files, so the package's source comes last.
    return built.add_local_python_source("pymc_modal")


# Built wherever this module is imported: in one of its own containers the image goes
# unused, but a user's own Modal function that calls `sample` needs the real one.
image = _image()
app = modal.App(APP_NAME, image=image, include_source=False)
detached_app = modal.App(DETACHED_APP_NAME, image=image, include_source=False)


# Data blobs, stored once by content hash; detached runs' answers, kept until
# fetched; JAX's compilation cache. All mounted on every container.
data_volume = modal.Volume.from_name(DATA_VOLUME, create_if_missing=True)
results_volume = modal.Volume.from_name(RESULTS_VOLUME, create_if_missing=True)
jax_cache_volume = modal.Volume.from_name(JAX_CACHE_VOLUME, create_if_missing=True)
BLOB_MOUNT = "/blobs"
RESULTS_MOUNT = "/results"
JAX_CACHE_MOUNT = "/jax-cache"
VOLUMES = {
    BLOB_MOUNT: data_volume,
    RESULTS_MOUNT: results_volume,
    JAX_CACHE_MOUNT: jax_cache_volume,
}


def run_job(
    job: bytes,
    answer_name: str | None = None,
    timeout: float | None = None,
    submitted: float | None = None,
    gpu: bool = True,
    output: modal.Queue | None = None,
) -> bytes:
    """Run one job in a Modal container; the worker does not know it is on Modal.

    Without ``gpu`` the container has CPU cores only, and the worker samples
    on them (PyMC gives JAX a CPU device per chain). With ``output`` (for a
    client in a notebook) what the worker writes to stderr, its progress bar
    and report lines, is sent there rather than to Modal's log.

    The run's checkpoint is kept on the results volume, committed at each
    save, so that an attempt Modal restarts on the same input (after a
    preemption, or a failure with ``retries``) goes on from it; the worker
    ends the run before ``timeout`` (this attempt's) with the draws it has.
    A detached run's answer is written to the results volume as
    ``answer_name`` before it is returned, so it outlasts the call. What JAX
    compiled is then committed to the compilation cache's volume, for the
    next container; if that fails, the answer is returned all the same.
    """
    from pymc_modal import worker

    began = time.time()
    # A warm container sees the data volume as it was when it started, without the
    # blobs of calls made since.
    data_volume.reload()
    worker.use_compilation_cache(JAX_CACHE_MOUNT, JAX_CACHE_MAX_BYTES)
    storage = worker.Storage(
        Path(RESULTS_MOUNT, CHECKPOINTS),
        submitted,
        publish=results_volume.commit,
        refresh=results_volume.reload,
    )
    with _stderr_to(output):
        answer = worker.run(
            job,
            BLOB_MOUNT,
            require_gpu=gpu,
            storage=storage,
            timeout=timeout,
            timeout_from=began,
        )
    if answer_name is not None:
        Path(RESULTS_MOUNT, answer_name).write_bytes(answer)
        try:
            results_volume.commit()
        except Exception as exc:  # The call's own result carries the answer all the same.
            _log.warning(
                "The answer was not saved to the results volume (%s); it is fetched from the "
                "call instead, which Modal keeps for 7 days.",
                exc,
            )
    try:
        jax_cache_volume.commit()
    except Exception as exc:  # Containers committing the same programs at once can conflict.
        _log.warning("JAX's compiled programs were not saved for the next container: %s", exc)
    return answer


class _QueueWriter(io.TextIOBase):
    """A text stream whose writes are put on a Modal Queue, gathered a quarter second at a time.

    If the queue fails, the rest goes to the container's own stderr: the run goes on.
    """

    def __init__(self, queue: modal.Queue) -> None:
        self.queue, self.pending, self.sent = queue, [], time.monotonic()
        self.lock = threading.Lock()

    def write(self, text: str) -> int:
        with self.lock:
            self.pending.append(text)
        if time.monotonic() - self.sent >= OUTPUT_SECONDS:
            self.flush()
        return len(text)

    def flush(self) -> None:
        with self.lock:
            text, self.pending, self.sent = "".join(self.pending), [], time.monotonic()
            if not text:
                return
            if self.queue is not None:
                try:
                    self.queue.put(text)
                    return
                except Exception:  # The client's display is lost, not the run.
                    self.queue = None
            sys.__stderr__.write(text)
            sys.__stderr__.flush()


@contextlib.contextmanager
def _stderr_to(queue: modal.Queue | None) -> Iterator[None]:
    """This process's stderr sent to ``queue`` inside the block, if one is given."""
    if queue is None:
        yield
        return
    writer = _QueueWriter(queue)
    try:
        with contextlib.redirect_stderr(writer):
            yield
    finally:
        writer.flush()


def _decorate(function_app: modal.App, gpu: str | list[str], **options: Any) -> modal.Function:
    # Decorated by call rather than with @, so that `run_job` stays the plain function
    # a container imports, whichever app ran it.
    return function_app.function(gpu=gpu, volumes=VOLUMES, **options)(run_job)


gpu_function = _decorate(app, DEFAULT_GPU, timeout=DEFAULT_TIMEOUT)
detached_function = _decorate(detached_app, DEFAULT_GPU, timeout=DEFAULT_TIMEOUT)


def credentials_configured() -> bool:
    """Whether Modal's client can authenticate, as ``modal.client._Client.from_env`` decides.

    Inside a Modal container it authenticates as the container; elsewhere with
    a token (``token_id`` and ``token_secret``) or OAuth credentials (a
    refresh token, a client id and one of a client secret or a JWT key), from
    the environment or the active profile of ``~/.modal.toml``.
    """
    if modal.config._is_remote():
        return True
    config = modal.config.config
    if config.get("token_id") and config.get("token_secret"):
        return True
    secret, jwt_key = config.get("oauth_client_secret"), config.get("oauth_jwt_key")
    oauth = config.get("oauth_refresh_token") and config.get("oauth_client_id")
    return bool(oauth) and bool(secret) != bool(jwt_key)


def check_credentials() -> None:
    """Raise :class:`MissingCredentialsError` unless Modal credentials are configured."""
    if not credentials_configured():
        raise MissingCredentialsError(
            "No Modal credentials found. Run `modal setup` once (it stores a token in "
            "~/.modal.toml), or set the MODAL_TOKEN_ID and MODAL_TOKEN_SECRET environment "
            "variables (or Modal's OAuth settings); or sample on this machine with "
            "backend='local'."
        )


def _function_for(
    options: Options, detached: bool = False, extra: tuple[str, ...] = ()
) -> tuple[modal.App, modal.Function]:
    """The app to run and the function variant with this call's GPU, CPU, memory and limits.

    ``extra`` are the pinned packages the jobs need beyond the image's.
    """
    container = {
        "cpu": options.cpu,
        "memory": options.memory,
        "timeout": options.timeout,
        "retries": options.retries,
        "scaledown_window": options.scaledown_window,
    }
    if isinstance(options.gpu, str) and not extra:
        base = detached_function if detached else gpu_function
        return (detached_app if detached else app), base.with_options(gpu=options.gpu, **container)
    variant_app, function = _variant(_gpus(options), detached, extra)
    return variant_app, function.with_options(**container)


def _gpus(options: Options) -> tuple[str, ...]:
    """The GPU specs of ``options``, in order; none for a container with CPU cores only."""
    if options.gpu is None:
        return ()
    return (options.gpu,) if isinstance(options.gpu, str) else options.gpu


@functools.cache
def _variant(
    gpus: tuple[str, ...], detached: bool, extra: tuple[str, ...]
) -> tuple[modal.App, modal.Function]:
    # Function.with_options takes one GPU type, cannot take a GPU away, and takes no image;
    # a fallback list, no GPU or an image with more packages is a decorator option, so it
    # gets an app of its own around the same function, made once: Modal keeps every App.
    variant_app = modal.App(
        DETACHED_APP_NAME if detached else APP_NAME, image=_image(extra), include_source=False
    )
    gpu = None if not gpus else gpus[0] if len(gpus) == 1 else list(gpus)
    return variant_app, _decorate(variant_app, gpu, timeout=DEFAULT_TIMEOUT)


def extra_requirements(jobs: Sequence[bytes]) -> tuple[str, ...]:
    """The packages the jobs' pickles import beyond the image's, at this client's versions.

    Raises
    ------
    PayloadError
        For a module that no installed distribution provides, or one installed
        otherwise than from a package index, which a Modal image cannot install.
    """
    in_image = {canonicalize_name(name) for name in (*PINNED, "jax", "pymc-modal")}
    providers = importlib.metadata.packages_distributions()
    pins = set()
    for module in sorted(set().union(*map(payload.job_imports, jobs))):
        if module in sys.stdlib_module_names:
            continue
        if module not in providers:
            raise PayloadError(
                f"The model refers to the module {module!r}, which no installed package "
                "provides, so a Modal image cannot install it. Install it as a package "
                "(pip install ...), or make it Python source on your path, which pymc_modal "
                "ships with the model."
            )
        for name in providers[module]:
            if canonicalize_name(name) in in_image:
                continue
            distribution = importlib.metadata.distribution(name)
            origin = distribution.read_text("direct_url.json")
            if origin is not None:
                raise PayloadError(
                    f"The model refers to the module {module!r} of {name} "
                    f"{distribution.version}, installed from {json.loads(origin)['url']} rather "
                    "than a package index, so a Modal image cannot install it. Install a "
                    "released version (pip install ...), or sample with backend='local'."
                )
            pins.add(f"{name}=={distribution.version}")
    return tuple(sorted(pins))


def _check_jobs(jobs: Sequence[bytes]) -> tuple[str, ...]:
    """Refuse what Modal cannot run; return the packages to add to the image."""
    check_credentials()
    largest = max(map(len, jobs))
    if largest > MAX_PAYLOAD_BYTES:
        raise InvalidOptionError(
            f"The payload is {largest / 1024**3:.1f} GiB, over the "
            f"{MAX_PAYLOAD_BYTES // 1024**3} GiB that pymc_modal sends as one Modal argument. "
            "Pass less data to the model (e.g. a subsample, or float32 arrays)."
        )
    return extra_requirements(jobs)


@contextlib.contextmanager
def service_errors_explained() -> Iterator[None]:
    """Modal's own errors as :class:`ModalServiceError`, each with what to do about it."""
    try:
        yield
    except modal.exception.AuthError as exc:
        raise ModalServiceError(
            f"Modal refused the credentials ({exc}). Run `modal token new` (or `modal setup`) "
            "again, or check MODAL_TOKEN_ID and MODAL_TOKEN_SECRET."
        ) from exc
    except modal.exception.ConnectionError as exc:
        raise ModalServiceError(
            f"Modal could not be reached ({exc}). Check this machine's network, and "
            "https://status.modal.com."
        ) from exc
    except modal.exception.ImageBuildError as exc:
        raise ModalServiceError(
            f"Modal could not build the image ({exc}). Its build log is on Modal's dashboard "
            "(https://modal.com/apps); a package pinned at your installed version may have no "
            "wheel for Linux x86_64 on your Python."
        ) from exc
    except modal.exception.Error as exc:
        raise ModalServiceError(
            f"Modal failed: {type(exc).__name__}: {exc}. The app pymc-modal's log on Modal's "
            "dashboard (https://modal.com/apps) says more."
        ) from exc


@contextlib.contextmanager
def _timeout_explained(options: Options) -> Iterator[None]:
    try:
        yield
    except modal.exception.FunctionTimeoutError as exc:
        attempts = options.retries + 1
        raise RunTimeoutError(
            f"The run on Modal was stopped at its timeout of {options.timeout} s, on each of "
            f"{attempts} attempt(s) ({attempts} x {options.timeout} s billed at most). Its "
            "checkpoint is kept: calling again with the same arguments goes on from its last "
            "block. Allow more time with pymc_modal.gpu(..., timeout=SECONDS) (up to 86400)."
        ) from exc


def _submitted() -> float:
    """When a job is submitted, for the worker: a stop asked for before then is not its own."""
    return time.time()


def _ask_stop(checkpoints: Sequence[str | None]) -> None:
    """Ask the runs keeping these checkpoints to end after their current block."""
    names = list(filter(None, checkpoints))
    if not names:
        return
    stamp = repr(time.time()).encode()
    with results_volume.batch_upload(force=True) as batch:
        for name in names:
            batch.put_file(io.BytesIO(stamp), f"/{CheckpointPaths(Path(CHECKPOINTS, name)).stop}")


def _wait(call: modal.FunctionCall, options: Options, job: bytes) -> bytes:
    """The call's answer; the first Ctrl-C asks its run to stop, a second cancels it."""
    interrupted = False
    while True:
        try:
            with _timeout_explained(options):
                return call.get()
        except KeyboardInterrupt:
            if interrupted:
                call.cancel(terminate_containers=True)
                raise
            interrupted = True
            _ask_stop([payload.job_checkpoint(job)])
            say_stopping()


# The app this process keeps running between waited calls, and the stack that stops it.
_running: tuple[modal.App, contextlib.ExitStack] | None = None


def close() -> None:
    """Stop the app this process keeps running, if any, and with it its warm containers."""
    global _running
    if _running is not None:
        stack = _running[1]
        _running = None
        stack.close()


atexit.register(close)


def _started(options: Options, extra: tuple[str, ...]) -> tuple[modal.Function, float]:
    """This call's function in a running app, started unless the last call's is the same.

    Returns the function and the seconds spent starting the app.
    """
    global _running
    run_app, function = _function_for(options, extra=extra)
    if _running is not None and _running[0] is run_app:
        if _alive(run_app):
            return function, 0.0
        _log.warning(
            "Modal had stopped the app this session kept running (it stops one whose client "
            "sends no heartbeats, as while this machine sleeps, and `modal app stop` does); "
            "starting it again."
        )
        with contextlib.suppress(modal.exception.Error):
            close()
    close()
    start = time.perf_counter()
    with contextlib.ExitStack() as stack:  # closed, Modal's output with it, if the app fails
        if console.in_notebook():
            # A running app's log goes to the output enabled when it started, so in a
            # notebook it would print into later cells; there only the image's build is
            # shown, in this cell, and the worker's output comes back through a queue.
            with modal.enable_output():
                _image(extra).build()
        else:
            stack.enter_context(modal.enable_output())
        stack.enter_context(run_app.run())
        _running = (run_app, stack.pop_all())
    return function, time.perf_counter() - start


def _alive(run_app: modal.App) -> bool:
    """Whether Modal still runs an app this process started."""
    state = run_app.info(refresh=True).lifecycle.state
    return state not in (modal.types.AppState.STOPPING, modal.types.AppState.STOPPED)


@contextlib.contextmanager
def _relayed(queue: modal.Queue | None) -> Iterator[None]:
    """What a worker puts on ``queue`` written here as it arrives, until the block ends."""
    if queue is None:
        yield
        return
    done = threading.Event()

    def relay() -> None:
        with contextlib.suppress(modal.exception.Error):  # the queue gone: nothing to show
            while not done.is_set():
                with contextlib.suppress(stdlib_queue.Empty):
                    console.write("".join(queue.get_many(100, timeout=OUTPUT_SECONDS)), sys.stderr)
            while left := queue.get_many(100, block=False):  # what came before the answer
                console.write("".join(left), sys.stderr)

    thread = threading.Thread(target=relay, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


class _Waited:
    """A waited call's jobs in the running app: one spawned, several fanned out with map.

    On Ctrl-C or a failure the app is stopped, which stops its containers.
    """

    def __init__(self, jobs: Sequence[bytes], options: Options, extra: tuple[str, ...]) -> None:
        self.jobs, self.options, self.call = jobs, options, None
        # In a notebook the first worker's output comes back through a queue, for one panel.
        self.output = contextlib.ExitStack()
        try:
            self.function, image_seconds = _started(options, extra)
            self.seconds = {"image": image_seconds}
            self.queue = None
            if console.in_notebook():
                self.queue = self.output.enter_context(modal.Queue.ephemeral())
            start = time.perf_counter()
            if len(jobs) == 1:
                self.call = self.function.spawn(*self._arguments(0))
                self.seconds["transfer"] = time.perf_counter() - start
        except BaseException:
            self.output.close()
            close()
            raise

    def _arguments(self, index: int) -> tuple:
        """Job ``index``'s arguments of :func:`run_job`."""
        options = self.options
        queue = self.queue if index == 0 else None
        return self.jobs[index], None, options.timeout, _submitted(), options.gpu is not None, queue

    def wait(self, on_answer: OnAnswer = None, block: bool = True) -> list[Delivery]:
        """Every job's delivery; with several jobs, each carries the whole fan-out's wall time."""
        where = ModalBackend.where(self.options)
        seconds = self.seconds
        start = time.perf_counter()
        try:
            with self.output, console.shown(), _relayed(self.queue):
                if self.call is not None:
                    answers = [_wait(self.call, self.options, self.jobs[0])]
                else:
                    with _timeout_explained(self.options):
                        answers = []
                        arguments = zip(*map(self._arguments, range(len(self.jobs))), strict=True)
                        for answer in self.function.map(*arguments):
                            answers.append(answer)
                            if on_answer is not None:
                                elapsed = {**seconds, "wall": time.perf_counter() - start}
                                on_answer(len(answers) - 1, Delivery(answer, elapsed, where))
            seconds["wall"] = time.perf_counter() - start
        except BaseException:
            close()
            raise
        deliveries = [Delivery(answer=a, seconds=seconds, where=where) for a in answers]
        if on_answer is not None and self.call is not None:
            on_answer(0, deliveries[0])
        return deliveries


class _Detached:
    """A detached run's calls; each answer is also kept in the results volume until fetched."""

    def __init__(self, record: dict[str, Any], folder: Path) -> None:
        self.record, self.folder, self.run = record, folder, RunPaths(folder)

    def _answer(self, index: int, block: bool) -> bytes | None:
        """Job ``index``'s answer, from the run's folder, else the results volume, else its call."""
        path = self.run.answer(index)
        if path.exists():
            return path.read_bytes()
        return _detached_answer(self.run.remote_answer(index), self.record["calls"][index], block)

    def answers(self) -> list[bytes] | None:
        """Each answer, read where it is and left there."""
        found = []
        for index in range(len(self.record["calls"])):
            answer = self._answer(index, block=False)
            if answer is None:
                return None
            found.append(answer)
        return found

    def wait(self, on_answer: OnAnswer = None, block: bool = True) -> list[Delivery] | None:
        """Each answer; one found remotely is kept in the run's folder, then removed there.

        Raises
        ------
        WorkerError
            If a call ended without an answer (its container died, or it ran
            out of time), or its answer expired.
        """
        if block:
            _log.info("Waiting for run %s on Modal...", self.folder.name)
        deliveries = []
        for index in range(len(self.record["calls"])):
            answer = self._answer(index, block)
            if answer is None:
                return None
            path = self.run.answer(index)
            if not path.exists():
                write_atomically(path, answer)
                with contextlib.suppress(FileNotFoundError):
                    results_volume.remove_file(self.run.remote_answer(index))
            deliveries.append(Delivery(answer, {}, "Modal"))
            if on_answer is not None:
                on_answer(index, deliveries[-1])
        with contextlib.suppress(FileNotFoundError):
            results_volume.remove_file(self.run.remote_needs)
        return deliveries


def _detached_answer(answer_name: str, call_id: str, wait: bool) -> bytes | None:
    """A detached job's answer, from the results volume or else its call.

    Returns None if it has not finished and ``wait`` is False.
    """
    try:
        return b"".join(results_volume.read_file(answer_name))
    except FileNotFoundError:
        pass
    try:
        return modal.FunctionCall.from_id(call_id).get(timeout=None if wait else 0)
    except builtins.TimeoutError:  # Modal's way of saying the call is still running.
        return None
    except modal.exception.OutputExpiredError as exc:
        raise WorkerError(
            f"The answer of {answer_name} has expired: Modal keeps a call's output for 7 days "
            "and the results volume did not have it. Sample again."
        ) from exc
    except modal.exception.Error as exc:
        raise WorkerError(
            f"{answer_name} ended on Modal without an answer ({type(exc).__name__}: {exc}). "
            "Its container may have run out of time (see pymc_modal.gpu(timeout=...)) or died; "
            "its log is on Modal's dashboard under the app pymc-modal-detached. Its checkpoint "
            "is kept: sampling again with the same arguments goes on from its last block."
        ) from exc


def _prune(volume: modal.Volume, doomed: Callable[[str], bool], dry_run: bool) -> int:
    """Delete the files of ``volume`` that ``doomed`` picks; the bytes that frees."""
    freed = 0
    for entry in volume.listdir("/", recursive=True):
        if entry.type == FileEntryType.FILE and doomed(entry.path):
            freed += entry.size
            if not dry_run:
                volume.remove_file(entry.path)
    return freed


def _needed_elsewhere(fetched: set[str]) -> set[str]:
    """The blobs and checkpoints of the detached runs not fetched yet, from any machine."""
    needed = set()
    for entry in results_volume.listdir("/"):
        run_id, _, kind = entry.path.rpartition("-")
        if entry.type == FileEntryType.FILE and kind == NEEDS and run_id not in fetched:
            needs = json.loads(b"".join(results_volume.read_file(entry.path)))
            needed.update(needs["blobs"], needs["checkpoints"])
    return needed


def _by_shard(blobs: dict[str, bytes]) -> dict[str, list[str]]:
    """The blobs' names by the data volume's folder that holds them."""
    shards: dict[str, list[str]] = {}
    for name in blobs:
        shards.setdefault(f"/{blob_path('', name).parent}", []).append(name)
    return shards


class ModalBackend:
    """Modal containers with GPUs, or CPU cores only; see the module's docstring."""

    name = "modal"

    @staticmethod
    def where(options: Options) -> str:
        """Where jobs run with these options, in words, e.g. ``"Modal H100"``, ``"Modal CPU"``."""
        return f"Modal {' or '.join(_gpus(options)) or 'CPU'}"

    @staticmethod
    def tariff(options: Options, resources: Resources) -> Tariff:
        """What a call's containers are billed at: their GPU, CPU and memory, and the idle
        window each is kept warm after its answer."""
        return Tariff(
            _gpus(options),
            resources.cpu,
            resources.memory,
            options.scaledown_window,
            options.price_per_second,
        )

    credentials_configured = staticmethod(credentials_configured)
    check_credentials = staticmethod(check_credentials)

    def store_blobs(self, blobs: dict[str, bytes]) -> int:
        """Upload the blobs the data volume lacks; return how many bytes that took.

        Parameters
        ----------
        blobs : dict of str to bytes
            Blobs by name, as :func:`pymc_modal.payload.encode_job` collects them.
        """
        if not blobs:
            return 0
        check_credentials()
        missing = {}
        for shard, names in _by_shard(blobs).items():
            try:
                present = {Path(entry.path).name for entry in data_volume.listdir(shard)}
            except (FileNotFoundError, modal.exception.NotFoundError):
                present = set()
            missing.update((name, blobs[name]) for name in names if name not in present)
        if missing:
            # Another client may store the same blob meanwhile; as it is named by its
            # content, overwriting it is safe.
            with data_volume.batch_upload(force=True) as batch:
                for name, data in missing.items():
                    batch.put_file(io.BytesIO(data), f"/{blob_path('', name)}")
        return sum(map(len, missing.values()))

    def prune(self, keep: set[str], fetched: set[str], dry_run: bool) -> dict[str, int]:
        """Delete the data volume's blobs not in ``keep``, the compilation cache's programs,
        and from the results volume the answers of runs in ``fetched`` and the
        checkpoints not in ``keep``. What the detached runs of any machine
        not fetched yet need (as each listed on the results volume) is kept too.

        Returns the bytes freed (or, with ``dry_run``, that would be) by volume.

        Raises
        ------
        MissingCredentialsError
            If no Modal credentials are configured.
        """
        check_credentials()
        keep = keep | _needed_elsewhere(fetched)

        def done_with(path: str) -> bool:
            parts = Path(path).parts
            if parts[0] == CHECKPOINTS:
                return parts[1] not in keep
            return path.rpartition("-")[0] in fetched

        return {
            DATA_VOLUME: _prune(data_volume, lambda path: Path(path).name not in keep, dry_run),
            JAX_CACHE_VOLUME: _prune(jax_cache_volume, lambda path: True, dry_run),
            RESULTS_VOLUME: _prune(results_volume, done_with, dry_run),
        }

    def submit(
        self, jobs: Sequence[bytes], options: Options, detached: Path | None = None
    ) -> _Waited | _Detached:
        """Start ``jobs`` on Modal containers, showing Modal's output.

        Waited jobs run in the app this process keeps running between calls
        (see :meth:`close`). Detached jobs are spawned in an app that outlives
        this process; job ``i`` also writes its answer to the results volume
        as ``"{run_id}-{i}"``, ``run_id`` being the name of ``detached``.

        Raises
        ------
        MissingCredentialsError
            If no Modal credentials are configured.
        InvalidOptionError
            If a job is larger than Modal can take as an argument.
        PayloadError
            If a job's pickle needs a module a Modal image cannot install.
        """
        extra = _check_jobs(jobs)
        if detached is None:
            return _Waited(jobs, options, extra)
        run_app, function = _function_for(options, detached=True, extra=extra)
        run = RunPaths(detached)
        needs = {
            "blobs": sorted(set().union(*map(payload.blob_names, jobs))),
            "checkpoints": sorted(filter(None, map(payload.job_checkpoint, jobs))),
        }
        with results_volume.batch_upload(force=True) as batch:
            batch.put_file(io.BytesIO(json.dumps(needs).encode()), f"/{run.remote_needs}")
        calls = []
        try:
            with modal.enable_output(), run_app.run(detach=True):
                for index, job in enumerate(jobs):
                    answer_name = run.remote_answer(index)
                    calls.append(
                        function.spawn(
                            job, answer_name, options.timeout, _submitted(), options.gpu is not None
                        )
                    )
            if len(calls) < len(jobs):
                # Modal's runner ends the app's block quietly on Ctrl-C; the caller must know.
                for call in calls:
                    call.cancel(terminate_containers=True)
                raise KeyboardInterrupt
        except BaseException:
            with contextlib.suppress(Exception):
                results_volume.remove_file(run.remote_needs)
            raise
        return _Detached({"calls": [call.object_id for call in calls]}, detached)

    def reattach(self, record: dict[str, Any], folder: Path) -> _Detached:
        """A detached run's calls, from its record."""
        return _Detached(record, folder)

    def stop(self, checkpoints: Sequence[str]) -> None:
        """Ask the runs keeping these checkpoints to end after their current block.

        The worker reads the request from the results volume between blocks.
        """
        check_credentials()
        _ask_stop(checkpoints)

    def close(self) -> None:
        """Stop the app this process keeps running, and with it its warm containers."""
        close()


BACKEND = ModalBackend()
