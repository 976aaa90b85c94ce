"""Plugin mode: PyMC's own calls go through pymc_modal inside a block.

Libraries that call ``pm.sample`` themselves (bambi, pymc-marketing, causalpy)
reach a worker unchanged inside ``with pymc_modal.patch(...):``, or between a
patch's ``start()`` and ``stop()`` in a notebook. While a patch is active,
PyMC's ``sample``, ``sample_prior_predictive``,
``sample_posterior_predictive`` and ``compute_log_likelihood`` are replaced,
under every name that refers to them in a loaded module (``pm.sample``,
``pymc.sampling.mcmc.sample``, a ``from pymc import sample`` made before), by
functions that take PyMC's whole signature and call :func:`pymc_modal.sample`
and its companions, as in :mod:`unittest.mock`. PyMC's own modules and this
package's keep the originals, and a call made while one is already being
routed (a worker in this process) goes to PyMC, so nothing is routed twice. A
call that needs PyMC's own step methods (a non-NUTS ``step=``, or discrete
variables) runs with PyMC on this machine, saying so once.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
import sys
import threading
from collections.abc import Callable
from typing import Any

from pymc_modal import client, config, predictive, samplers
from pymc_modal.errors import InvalidOptionError

__all__ = ["patch"]

_log = logging.getLogger("pymc_modal")

# PyMC's public namespaces, where a user's `pm.` finds the functions; PyMC's other modules
# keep calling the originals.
_PUBLIC = frozenset(
    {"pymc", "pymc.sampling", "pymc.sampling.mcmc", "pymc.sampling.forward", "pymc.stats"}
    | {"pymc.stats.log_density"}
)
# What a patch takes besides pymc_modal.options' fields: how a sampling call stops.
_STOPPING = ("target_ess", "max_rhat", "max_draws", "max_seconds", "max_cost")
# Arguments of pm.sample that pm.sample(nuts_sampler="numpyro") does not use either.
_UNUSED = (
    "cores",
    "init",
    "n_init",
    "jitter_max_retries",
    "discard_tuned_samples",
    "keep_warning_stat",
    "return_inferencedata",
    "progressbar_theme",
    "mp_ctx",
    "blas_cores",
    "compile_kwargs",
    "backend",  # PyMC 6's compile backend: the worker compiles to JAX
)
# Of those, what a user may have expected to be called or written, said once.
_NOT_CALLED = {
    "callback": "callback= is not called on a worker (nor by pm.sample with an external sampler)",
    "trace": "trace= is not written to on a worker; the result is returned in memory",
}

_lock = threading.RLock()
_active: list[patch] = []
_installed: list[tuple[Any, str, Callable]] = []
_said: set[str] = set()
_routing = threading.local()


def _say_once(key: str, line: str) -> None:
    if key not in _said:
        _said.add(key)
        _log.info("pymc_modal.patch: %s.", line)


def _reachable(module_name: str) -> bool:
    """Whether a patch replaces the functions in this module: not in PyMC's internals or ours."""
    if module_name.startswith("pymc_modal"):
        return False
    return module_name in _PUBLIC or not module_name.startswith("pymc.")


def _install() -> None:
    """Replace every reachable reference to the targets with its routed function."""
    routed = {}
    for (module_name, name), handler in _TARGETS.items():
        original = getattr(importlib.import_module(module_name), name)
        routed[id(original)] = (original, _routed(original, handler))
    for module_name, module in list(sys.modules.items()):
        if module is None or not _reachable(module_name):
            continue
        try:
            attributes = list(vars(module).items())
        except TypeError:
            continue
        for attribute, value in attributes:
            found = routed.get(id(value))
            if found is not None and found[0] is value:
                setattr(module, attribute, found[1])
                _installed.append((module, attribute, value))
    _said.clear()


def _uninstall() -> None:
    """Put every replaced reference back."""
    while _installed:
        module, attribute, original = _installed.pop()
        setattr(module, attribute, original)


def _routed(original: Callable, handler: Callable) -> Callable:
    """``original``'s stand-in: ``handler`` while a patch is active, else ``original``."""

    @functools.wraps(original)
    def routed(*args: Any, **kwargs: Any):
        if not _active or getattr(_routing, "busy", False):
            return original(*args, **kwargs)
        _routing.busy = True
        try:
            with config.options(**_active[-1].options):
                return handler(original, _active[-1], *args, **kwargs)
        finally:
            _routing.busy = False

    return routed


def _needs_pymc(model, step) -> str | None:
    """Why ``pm.sample`` would need PyMC's own step methods here, or None if NUTS alone does.

    PyMC's own rule (``pm.sample`` refuses an external sampler in these cases).
    """
    import pymc as pm
    from pymc.sampling.mcmc import assign_step_methods
    from pymc.step_methods.hmc import NUTS

    provided, selected = assign_step_methods(model, step, methods=pm.STEP_METHODS)
    if not selected and len(provided) == 1 and isinstance(provided[0], NUTS):
        return None
    if not provided and len(selected) == 1 and issubclass(next(iter(selected)), NUTS):
        return None
    if provided:
        return f"step={step!r} asks for PyMC's own step methods"
    return "the model has discrete variables (or no gradient), which NUTS alone cannot sample"


def _sampler(nuts_sampler: str, chosen: str) -> str:
    """The registry's sampler for ``nuts_sampler``: PyMC's default ``"pymc"`` is ``chosen``."""
    if nuts_sampler == "pymc":
        if chosen == samplers.DEFAULT:
            _say_once("pymc", f"nuts_sampler='pymc' samples with {chosen!r} on the worker")
        return chosen
    for name, entry in samplers.SAMPLERS.items():
        if entry.nuts_sampler == nuts_sampler:
            return name
    names = ", ".join(repr(e.nuts_sampler) for e in samplers.SAMPLERS.values())
    raise InvalidOptionError(f"nuts_sampler={nuts_sampler!r} is not 'pymc' or one of {names}.")


def _sample(original: Callable, active: patch, *args: Any, **kwargs: Any):
    """``pm.sample``'s call, as ``pm.sample(nuts_sampler=...)`` would treat it, on a worker."""
    from pymc.model import modelcontext
    from pymc.sampling.parallel import _cpu_count

    given = inspect.signature(original).bind(*args, **kwargs).arguments
    extra = given.pop("kwargs", {})
    model = modelcontext(given.pop("model", None))
    reason = _needs_pymc(model, given.pop("step", None))
    if reason is not None:
        _say_once("pymc-steps", f"{reason}; sampling with PyMC on this machine")
        return original(*args, **kwargs)
    for name, why in _NOT_CALLED.items():
        if given.pop(name, None) is not None:
            _say_once(name, why)
    cores = given.get("cores") or min(4, _cpu_count())
    for name in _UNUSED:
        given.pop(name, None)
    if given.get("chains") is None:
        given["chains"] = max(2, cores)
    sampler = _sampler(given.pop("nuts_sampler", "pymc"), config.resolve().sampler)
    given["progressbar"] = bool(given.get("progressbar", True))
    return client.sample(
        **given, **extra, **active.stopping, model=model, sampler=sampler, nuts_sampler="numpyro"
    )


def _forward(public: Callable) -> Callable:
    """The handler of a PyMC forward function: its call, by name, to ``public``.

    Its compile options (``compile_kwargs``, PyMC 6's ``backend``) are left
    out: the worker compiles to JAX.
    """

    def handler(original: Callable, active: patch, *args: Any, **kwargs: Any):
        given = inspect.signature(original).bind(*args, **kwargs).arguments
        for name in ("compile_kwargs", "backend"):
            given.pop(name, None)
        return public(**given)

    return handler


# PyMC's functions a patch replaces, by the module that defines them, and the handler
# each call goes to.
_TARGETS = {
    ("pymc.sampling.mcmc", "sample"): _sample,
    ("pymc.sampling.forward", "sample_prior_predictive"): _forward(
        predictive.sample_prior_predictive
    ),
    ("pymc.sampling.forward", "sample_posterior_predictive"): _forward(
        predictive.sample_posterior_predictive
    ),
    ("pymc.stats.log_density", "compute_log_likelihood"): _forward(
        predictive.compute_log_likelihood
    ),
}


class patch:  # noqa: N801 - named as unittest.mock.patch, which it is used like
    """Send PyMC's own ``pm.sample`` calls through pymc_modal while it is active.

    A context manager, or, for notebooks, an object to :meth:`start` and
    :meth:`stop`. Inside it ``pm.sample``, ``pm.sample_prior_predictive``,
    ``pm.sample_posterior_predictive`` and ``pm.compute_log_likelihood`` run
    on a worker with the patch's
    options, however they were imported, so that libraries which call them
    (bambi, pymc-marketing, causalpy) run on a rented GPU unchanged.
    ``pm.sample`` takes its whole signature, as ``pm.sample`` with an external
    sampler treats it: ``nuts_sampler="pymc"`` (PyMC's default) samples with
    the patch's ``sampler`` (NumPyro's NUTS unless given), ``"numpyro"``,
    ``"nutpie"`` and ``"blackjax"`` with the registry's sampler of that
    library; ``cores`` sets the default chains as in PyMC; ``init``,
    ``n_init``, ``blas_cores`` and the like are not used. A call that needs
    PyMC's own step methods (a non-NUTS ``step=``, discrete variables) runs
    with PyMC on this machine, saying so once. Patches nest: the innermost
    active one's options apply, process-wide.

    Parameters
    ----------
    **options
        Any option :func:`pymc_modal.options` takes (``backend``, ``gpu``,
        ``workers``, ``sampler``, ``timeout``, ...), and ``target_ess`` with
        its caps ``max_rhat``, ``max_draws``, ``max_seconds`` and
        ``max_cost``, as :func:`pymc_modal.sample` takes them.

    Raises
    ------
    InvalidOptionError
        For an unknown option or a value it does not take.

    Examples
    --------
    .. code-block:: python

        with pymc_modal.patch(gpu="H100"):
            mmm.fit(X, y)  # calls pm.sample inside

        patcher = pymc_modal.patch(backend="local")
        patcher.start()
        ...
        patcher.stop()
    """

    def __init__(self, **options: Any) -> None:
        self.stopping = {name: options.pop(name) for name in _STOPPING if name in options}
        with config.options(**options):  # checked as the calls will apply them
            pass
        if self.stopping:
            client.check_target(**self.stopping)
        self.options = options

    def start(self) -> patch:
        """Route PyMC's calls through pymc_modal until :meth:`stop`; returns the patch."""
        with _lock:
            if self in _active:
                raise RuntimeError("This pymc_modal.patch is already started.")
            if not _active:
                _install()
            _active.append(self)
        return self

    def stop(self) -> None:
        """Stop routing PyMC's calls; the last patch to stop restores PyMC's functions."""
        with _lock:
            if not _active or _active[-1] is not self:
                raise RuntimeError(
                    "This pymc_modal.patch is not the innermost one started: patches stop in "
                    "the reverse order they started."
                )
            _active.pop()
            if not _active:
                _uninstall()

    def __enter__(self) -> patch:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
