"""Where a call runs and under which limits: keyword, context manager, environment.

A value given to :func:`pymc_modal.sample` wins over one set by an enclosing
:func:`options` block, which wins over the environment, which wins over the
defaults.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import os
from collections.abc import Iterator, Sequence
from typing import Any

from pymc_modal import pricing, samplers
from pymc_modal.checks import count, invalid, is_number
from pymc_modal.errors import InvalidOptionError

__all__ = ["BACKENDS", "Options", "cpu", "gpu", "options", "resolve"]

BACKENDS = ("auto", "local", "modal")
DEFAULT_TIMEOUT = 2 * 60 * 60
MAX_TIMEOUT = 24 * 60 * 60  # Modal's limit for one attempt
MAX_RETRIES = 10  # Modal's limit
SCALEDOWN_WINDOW = (2, 3600)  # Modal's limits; its default is 60 s

ENVIRONMENT = {"backend": "PYMC_MODAL_BACKEND", "gpu": "PYMC_MODAL_GPU"}
# The least CPU (cores) and memory (MiB) a Modal container can be given.
MIN_CPU = 0.125
MIN_MEMORY = 128


@dataclasses.dataclass(frozen=True)
class Options:
    """The settings one call runs under.

    Attributes
    ----------
    backend : {"auto", "local", "modal"}
        Where the worker runs. ``"auto"`` means Modal when Modal credentials
        are configured, else this machine.
    max_result_bytes : int
        Refuse, before shipping, a job whose returned draws would be larger.
    gpu : str or tuple of str or None
        The Modal GPU type, e.g. ``"H100"`` or ``"A100-80GB:2"``; several are
        an ordered fallback list; None for a container with no GPU, its
        ``cpu`` cores only (:func:`cpu`). The environment variable
        ``PYMC_MODAL_GPU`` takes a comma-separated list, or ``none``.
    timeout : int
        Seconds one attempt on Modal may run before it is stopped.
    retries : int
        How many times Modal retries a failed or preempted attempt.
    price_per_second : float, optional
        US dollars per GPU-second for the cost estimate, instead of the table
        in :mod:`pymc_modal.pricing` (whose CPU and memory rates still count).
    workers : int
        How many workers share the chains: Modal containers with a GPU each,
        or processes on the local backend. Each worker's chains get seeds of
        their own, so only ``workers=1`` gives ``pm.sample``'s draws.
    scaledown_window : int
        Seconds a worker stays warm after answering, for the next call to
        reuse with its libraries loaded and its last model compiled (2 to
        3600). On Modal the GPU is billed while it waits.
    sampler : {"numpyro", "nutpie", "chees"}
        ``"numpyro"``: NumPyro's NUTS, as ``pm.sample(nuts_sampler="numpyro")``.
        ``"nutpie"``: nutpie's NUTS and mass-matrix adaptation. ``"chees"``:
        BlackJAX's ChEES-adapted jittered HMC, all chains one ensemble (use
        many chains and a long warm-up).
    cpu : float, optional
        Physical cores to request for each Modal container; by default sized
        for the job (:mod:`pymc_modal.resources`).
    memory : int, optional
        MiB of memory to request for each Modal container; by default sized
        for the job.
    """

    backend: str = "auto"
    max_result_bytes: int = 2 * 1024**3
    gpu: str | tuple[str, ...] | None = pricing.DEFAULT_GPU
    timeout: int = DEFAULT_TIMEOUT
    retries: int = 0
    price_per_second: float | None = None
    workers: int = 1
    scaledown_window: int = 60
    sampler: str = samplers.DEFAULT
    cpu: float | None = None
    memory: int | None = None

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise InvalidOptionError(
                f"backend={self.backend!r} is not one of {', '.join(map(repr, BACKENDS))}."
            )
        samplers.get(self.sampler)
        counts = {
            "max_result_bytes": count(
                "max_result_bytes", self.max_result_bytes, "bytes", 2 * 1024**3
            ),
            "timeout": count("timeout", self.timeout, "seconds", 3600, most=MAX_TIMEOUT),
            "workers": count("workers", self.workers, "workers", 2),
            "scaledown_window": count(
                "scaledown_window",
                self.scaledown_window,
                "seconds",
                60,
                *SCALEDOWN_WINDOW,
            ),
            "retries": count("retries", self.retries, "retries", 2, 0, MAX_RETRIES),
        }
        if self.memory is not None:
            counts["memory"] = count("memory", self.memory, "MiB", 32768, MIN_MEMORY)
        for name, value in counts.items():
            object.__setattr__(self, name, value)
        if self.cpu is not None and not (is_number(self.cpu) and self.cpu >= MIN_CPU):
            raise invalid(
                self.cpu,
                f"cpu={self.cpu!r}: pass a number of physical cores of at least {MIN_CPU}, "
                "such as cpu=8.",
            )
        if self.cpu is not None:
            object.__setattr__(self, "cpu", float(self.cpu))
        if self.gpu is None or (isinstance(self.gpu, str) and self.gpu.lower() == "none"):
            object.__setattr__(self, "gpu", None)
        elif isinstance(self.gpu, str):
            gpus = self.gpu.split(",")
        else:
            gpus = list(self.gpu) if isinstance(self.gpu, list | tuple) else [self.gpu]
        if self.gpu is not None:
            if not gpus:
                raise InvalidOptionError(
                    "gpu=[] names no GPU; give at least one GPU type, or gpu=None for a "
                    "container with CPU cores only."
                )
            for spec in gpus:
                pricing.parse_gpu(spec)
            gpus = [spec.strip() for spec in gpus]
            object.__setattr__(self, "gpu", gpus[0] if len(gpus) == 1 else tuple(gpus))
        if self.price_per_second is not None and not self.price_per_second >= 0:
            raise InvalidOptionError(
                f"price_per_second={self.price_per_second!r} must be a non-negative number."
            )


_FIELDS = tuple(field.name for field in dataclasses.fields(Options))
_context: contextvars.ContextVar[tuple[tuple[str, Any], ...]] = contextvars.ContextVar(
    "pymc_modal_options", default=()
)


def _check_names(overrides: dict[str, Any]) -> None:
    unknown = sorted(set(overrides) - set(_FIELDS))
    if unknown:
        raise InvalidOptionError(
            f"Unknown option(s) {', '.join(unknown)}; valid options are {', '.join(_FIELDS)}."
        )


@contextlib.contextmanager
def options(**overrides: Any) -> Iterator[Options]:
    """Set options for every :func:`pymc_modal.sample` call inside the block.

    Parameters
    ----------
    **overrides
        Any field of :class:`Options`, e.g. ``backend="local"``.

    Yields
    ------
    Options
        The options now in force (environment and enclosing blocks included).

    Examples
    --------
    .. code-block:: python

        with pymc_modal.options(backend="local"):
            idata = pymc_modal.sample(model=model)
    """
    _check_names(overrides)
    token = _context.set(tuple({**dict(_context.get()), **overrides}.items()))
    try:
        # Resolved from the block's context, where None is a value (gpu=None: no GPU).
        yield resolve()
    finally:
        _context.reset(token)


def gpu(spec: str | Sequence[str], **overrides: Any) -> contextlib.AbstractContextManager[Options]:
    """Choose the Modal GPU (and other options) for every call inside the block.

    Parameters
    ----------
    spec : str or sequence of str
        A GPU type Modal offers (``"T4"``, ``"L4"``, ``"A10G"``, ``"L40S"``,
        ``"A100"``, ``"A100-80GB"``, ``"H100"``, ``"H200"``, ``"B200"``, ...),
        optionally with a count (``"H100:2"``), or a list of them to fall back
        through in order.
    **overrides
        Other options, e.g. ``timeout=4 * 3600`` or ``retries=2``.

    Examples
    --------
    .. code-block:: python

        with pymc_modal.gpu("H100", timeout=3600):
            idata = pymc_modal.sample(model=model, var_names=["beta"])
    """
    return options(gpu=spec, **overrides)


def cpu(cores: float | None = None, **overrides: Any) -> contextlib.AbstractContextManager[Options]:
    """Run every call inside the block on a Modal container with CPU cores and no GPU.

    For models too small for a GPU to pay (README, "GPU or CPU?"): Modal bills
    a core by the second at about a hundredth of a GPU's price.

    Parameters
    ----------
    cores : float, optional
        Physical cores; by default one per chain, and at least 4. Each chain
        runs on a JAX device of its own.
    **overrides
        Other options, e.g. ``memory=16384`` or ``timeout=3600``.

    Examples
    --------
    .. code-block:: python

        with pymc_modal.cpu(8):
            idata = pymc_modal.sample(model=model, chains=8)
    """
    cores_given = {} if cores is None else {"cpu": cores}
    return options(gpu=None, **cores_given, **overrides)


def resolve(**call_overrides: Any) -> Options:
    """Return the options in force for one call.

    Parameters
    ----------
    **call_overrides
        Values given to the call itself; ``None`` means "not given".
    """
    _check_names(call_overrides)
    settings: dict[str, Any] = {}
    for name, variable in ENVIRONMENT.items():
        if os.environ.get(variable):
            settings[name] = os.environ[variable]
    settings.update(_context.get())
    settings.update({k: v for k, v in call_overrides.items() if v is not None})
    return Options(**settings)
