"""The public call: ``pymc_modal.sample``, a drop-in for ``pm.sample``.

It checks the arguments and the model on this machine, ships the model as
bytes to a worker through a backend, and wraps the worker's arrays into what
``pm.sample(nuts_sampler="numpyro")`` returns on this installation.
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
import types
import warnings
from collections.abc import Sequence
from typing import Any

import pytensor
from pymc.model import modelcontext
from pymc.sampling.parallel import _cpu_count
from pymc.util import _get_seeds_per_chain, get_random_generator

from pymc_modal import fanout, payload, preflight, pricing, result, store
from pymc_modal.backends import Delivery
from pymc_modal.config import Options, resolve
from pymc_modal.errors import InvalidOptionError, UnsupportedArgumentError
from pymc_modal.nuts import NutsSettings

__all__ = ["sample"]

_log = logging.getLogger("pymc_modal")

# Arguments of pm.sample that mean nothing when NumPyro samples on a worker.
_UNSUPPORTED = {
    "step": "every variable is sampled by NumPyro's NUTS; custom step methods need pm.sample",
    "cores": "chains run on the worker's device, not on local cores; set chains= instead",
    "init": "NumPyro NUTS starts from PyMC's jittered initial point; set initvals= instead",
    "n_init": "there is no ADVI initialisation on the NumPyro path",
    "jitter_max_retries": "set nuts_sampler_kwargs={'jitter': False} to start unjittered",
    "trace": "the result is always returned in memory as pm.sample's InferenceData",
    "callback": "NumPyro does not call back per draw",
    "mp_ctx": "no multiprocessing is used",
    "blas_cores": "the worker's BLAS threads are not set from here",
    "compile_kwargs": "the model is compiled with PyMC's JAX conversion on the worker",
    "keep_warning_stat": "there is no warning stat on the NumPyro path",
    "progressbar_theme": "the progress bar is NumPyro's",
}
# pm.sample arguments accepted only at their default value.
_FIXED = {"discard_tuned_samples": True, "return_inferencedata": True}
# Keys of nuts_sampler_kwargs (or nuts=) that go to the sampling driver, not the NUTS kernel.
_DRIVER_OPTIONS = {
    "jitter": None,
    "keep_untransformed": None,
    "chain_method": ("parallel", "vectorized", "sequential"),
}
# Options of PyMC's JAX path that place a post-processing step this path does not have.
_NO_EFFECT = ("postprocessing_backend", "postprocessing_vectorize", "postprocessing_chunks")


def _refuse_unsupported(kwargs: dict[str, Any], nuts_sampler: str) -> None:
    if nuts_sampler != "numpyro":
        raise UnsupportedArgumentError(
            f"nuts_sampler={nuts_sampler!r} is not available: pymc_modal samples with "
            "NumPyro's NUTS (nuts_sampler='numpyro'), or with BlackJAX's low-rank NUTS or "
            "ChEES-HMC through sampler='blackjax' or sampler='chees'. Use pm.sample for others."
        )
    for name, default in _FIXED.items():
        if name in kwargs and kwargs.pop(name) != default:
            raise UnsupportedArgumentError(
                f"{name}={not default!r} is not supported; pymc_modal returns what "
                f"pm.sample returns with {name}={default!r}."
            )
    for name in kwargs:
        if name in _UNSUPPORTED:
            raise UnsupportedArgumentError(
                f"pymc_modal.sample does not take {name}=: {_UNSUPPORTED[name]}."
            )
    if kwargs:
        raise UnsupportedArgumentError(
            f"pymc_modal.sample got unexpected argument(s) {', '.join(sorted(kwargs))}."
        )


@functools.cache
def _kernel_options() -> frozenset[str]:
    from numpyro.infer import NUTS

    own = {"self", "model", "potential_fn", "target_accept_prob"}
    return frozenset(inspect.signature(NUTS).parameters) - own


def _sampler_options(
    nuts_sampler_kwargs: dict[str, Any] | None,
    nuts: dict[str, Any] | None,
    target_accept: float | None,
) -> tuple[float, dict[str, Any]]:
    """Split ``nuts_sampler_kwargs`` (PyMC 5) or ``nuts`` (PyMC 6) into driver and NUTS options."""
    merged = {**(nuts_sampler_kwargs or {}), **(nuts or {})}
    kernel = dict(merged.pop("nuts_kwargs", None) or {})
    if "target_accept" in merged:
        if target_accept is not None:
            raise InvalidOptionError(
                "target_accept was given twice; pass it either directly or in nuts=."
            )
        target_accept = merged.pop("target_accept")
    driver = {name: merged.pop(name) for name in _DRIVER_OPTIONS if name in merged}
    for name in _NO_EFFECT:
        if name in merged:
            merged.pop(name)
            warnings.warn(
                f"{name} has no effect: pymc_modal turns each draw into the variables it "
                "returns on the device as the draw is collected, so there is no separate "
                "post-processing step (and no out-of-memory at 'Transforming variables').",
                UserWarning,
                stacklevel=3,
            )
    kernel.update(merged)
    unknown = sorted(set(kernel) - _kernel_options())
    if unknown:
        raise InvalidOptionError(
            f"Unknown NUTS option(s) {', '.join(unknown)}. Sampler options are "
            f"{', '.join(_DRIVER_OPTIONS)}; NumPyro NUTS options are "
            f"{', '.join(sorted(_kernel_options()))}."
        )
    for name, allowed in _DRIVER_OPTIONS.items():
        if allowed is not None and name in driver and driver[name] not in allowed:
            raise InvalidOptionError(
                f"{name}={driver[name]!r} is not one of {', '.join(map(repr, allowed))}."
            )
    return (0.8 if target_accept is None else target_accept), {**driver, "nuts_kwargs": kernel}


def _check_sampler(sampler: str, chains: int, driver: dict[str, Any]) -> None:
    """Refuse options the chosen BlackJAX sampler cannot honour."""
    if sampler == "numpyro":
        return
    if driver["nuts_kwargs"]:
        raise InvalidOptionError(
            f"{', '.join(sorted(driver['nuts_kwargs']))}: NumPyro NUTS options apply to "
            f"sampler='numpyro' only; sampler={sampler!r} takes target_accept, jitter and "
            "keep_untransformed."
        )
    if sampler == "chees" and chains < 2:
        raise InvalidOptionError(
            "sampler='chees' adapts from an ensemble of chains; pass chains=16 or more "
            "(64 or more on a GPU)."
        )


def _jax_seed(random_seed, chains: int) -> int:
    """The seed PyMC's ``pm.sample(nuts_sampler="numpyro")`` hands to NumPyro."""
    if isinstance(random_seed, int) and random_seed == -1:
        raise InvalidOptionError(
            "Setting random_seed = -1 is not allowed. Pass `None` to not specify a seed."
        )
    if result.PYMC_MAJOR >= 6:
        random_seed = int(get_random_generator(random_seed).spawn(chains)[0].integers(2**30))
    (seed,) = _get_seeds_per_chain(random_seed, 1)
    return int(seed)


def _backend(name: str) -> types.ModuleType:
    """The backend module: ``store_blobs(blobs) -> int`` and ``run(jobs, options)``."""
    if name == "local":
        from pymc_modal.backends import local

        return local
    from pymc_modal.backends import modal

    return modal


@functools.cache
def _say_why_local() -> None:
    _log.info(
        "No Modal credentials found, so sampling runs on this machine's CPU (local backend); "
        "run `modal setup` to sample on Modal GPUs, or pass backend='local' to silence this."
    )


def _choose_backend(name: str) -> str:
    """The backend to use; for Modal, credentials are checked before anything else."""
    if name == "local":
        return name
    from pymc_modal.backends import modal

    if name == "modal":
        modal.check_credentials()
        return name
    if modal.credentials_configured():
        return "modal"
    _say_why_local()
    return "local"


def _billed_gpu(options: Options) -> str:
    """The GPU a cost is estimated for: the first of a fallback list."""
    return options.gpu if isinstance(options.gpu, str) else options.gpu[0]


def _cost(backend: str, deliveries: list[Delivery], options: Options) -> dict[str, Any]:
    """The estimated charge: GPU-seconds, from sending each job to its answer, times the price."""
    if backend != "modal":
        return {"pymc_modal_cost_usd": 0.0}
    gpu = _billed_gpu(options)
    gpu_seconds = sum(delivery.seconds["wall"] for delivery in deliveries)
    return {
        "pymc_modal_gpu": gpu,
        "pymc_modal_gpu_seconds": gpu_seconds,
        "pymc_modal_cost_usd": pricing.cost(gpu, gpu_seconds, options.price_per_second),
    }


def _format_seconds(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def sample(
    draws: int = 1000,
    *,
    tune: int = 1000,
    chains: int | None = None,
    target_accept: float | None = None,
    random_seed=None,
    initvals=None,
    var_names: Sequence[str] | None = None,
    progressbar: bool = True,
    quiet: bool = False,
    idata_kwargs: dict[str, Any] | None = None,
    nuts_sampler: str = "numpyro",
    nuts_sampler_kwargs: dict[str, Any] | None = None,
    nuts: dict[str, Any] | None = None,
    compute_convergence_checks: bool = True,
    model=None,
    backend: str | None = None,
    gpu: str | Sequence[str] | None = None,
    workers: int | None = None,
    sampler: str | None = None,
    wait: bool = True,
    refit: bool = False,
    **kwargs: Any,
):
    """Draw samples from the posterior with NumPyro's NUTS, on a worker.

    A drop-in for ``pm.sample(nuts_sampler="numpyro", ...)``: the model and its
    data are checked here, shipped as bytes to a worker (a local process or a
    Modal GPU), sampled there, and returned as ``pm.sample`` returns them.

    Parameters
    ----------
    draws : int, default 1000
        The number of samples to draw per chain. Tuning samples are discarded.
    tune : int, default 1000
        Number of tuning (warm-up) iterations per chain.
    chains : int, optional
        The number of chains; by default ``max(2, min(4, cpu_count))`` as in
        ``pm.sample``.
    target_accept : float, default 0.8
        The acceptance rate that step-size adaptation aims at.
    random_seed : int, numpy.random.Generator or None
        Seed for the initial points and the sampler. The same seed gives the
        same draws as ``pm.sample(nuts_sampler="numpyro")``.
    initvals : dict or list of dict, optional
        Initial values, as for ``pm.sample``.
    var_names : list of str, optional
        Variables to return in the posterior; all by default.
    progressbar : bool, default True
        Show the sampler's progress bar (relayed from the worker).
    quiet : bool, default False
        Show no progress bar and no summary line.
    idata_kwargs : dict, optional
        As for ``pm.sample``; ``log_likelihood=True`` computes the pointwise
        log-likelihood on the worker.
    nuts_sampler : {"numpyro"}
        Only NumPyro's NUTS is available.
    nuts_sampler_kwargs, nuts : dict, optional
        Sampler options, as ``pm.sample`` takes them in PyMC 5
        (``nuts_sampler_kwargs``) or PyMC 6 (``nuts``): ``chain_method``,
        ``jitter``, ``keep_untransformed``, ``nuts_kwargs``; any other key is
        passed to ``numpyro.infer.NUTS`` (e.g. ``max_tree_depth``). Each draw
        is reduced on the device to the variables the result keeps as it is
        collected, so ``postprocessing_*`` options have no effect (a warning
        says so).
    compute_convergence_checks : bool, default True
        Warn about R-hat, ESS and divergences, as ``pm.sample`` does.
    model : pymc.Model, optional
        The model; by default the one in the enclosing ``with`` block.
    backend : {"auto", "local", "modal"}, optional
        Where to sample. By default the ``PYMC_MODAL_BACKEND`` environment
        variable, an enclosing :func:`pymc_modal.options` block, or ``"auto"``:
        Modal when Modal credentials are configured, else this machine.
    gpu : str or list of str, optional
        The Modal GPU type (default ``"A100"``), e.g. ``"H100"`` or
        ``"A100-80GB:2"``, or a list to fall back through; by default the
        ``PYMC_MODAL_GPU`` environment variable or an enclosing
        :func:`pymc_modal.gpu` block.
    workers : int, optional
        Split the chains across this many workers (default 1), each a Modal
        container with its own GPU, or a process on the local backend. The
        workers' chains have seeds of their own spawned from ``random_seed``:
        the result is reproducible, but only ``workers=1`` gives the draws of
        ``pm.sample``.
    sampler : {"numpyro", "blackjax", "chees"}, optional
        ``"numpyro"`` (the default, or an enclosing :func:`pymc_modal.options`
        block's): NumPyro's NUTS, the draws of ``pm.sample``.
        ``"blackjax"``: BlackJAX's NUTS with a low-rank mass matrix, for
        posteriors with a few slow directions. ``"chees"``: BlackJAX's
        ChEES-adapted HMC, the chains one ensemble on one device, for many
        chains (e.g. ``chains=128``); its trajectories are short, so give it
        a long warm-up (``tune=1500`` or more) and judge it by long chains.
        Both run the chains vectorized and take ``target_accept``, ``jitter``
        and ``keep_untransformed`` but no NumPyro NUTS options.
    wait : bool, default True
        If False, start the run detached and return a
        :class:`pymc_modal.runs.Run` at once; :func:`pymc_modal.fetch` with
        its id returns the result later, from any process on this machine.
    refit : bool, default False
        Sample even if an identical call (same model, data, arguments, seed,
        library versions and GPU) has stored its result on this machine. A
        waited call with a ``random_seed`` otherwise returns that stored
        result at once, without starting a worker, and says so.

    Returns
    -------
    arviz.InferenceData or xarray.DataTree
        What ``pm.sample`` returns on this installation (a
        :class:`pymc_modal.runs.Run` if ``wait=False``), with posterior,
        sample_stats, observed_data and constant_data. Its ``attrs`` name the
        backend and device (``pymc_modal_backend``, ``pymc_modal_device``),
        the seconds of each phase (``pymc_modal_seconds_<phase>``) and the
        estimated cost (``pymc_modal_cost_usd``).

    Raises
    ------
    pymc_modal.errors.PymcModalError
        A subclass naming the problem, raised before anything is shipped where
        it can be known: unsupported arguments, discrete variables, unknown
        ``var_names``, a model PyMC cannot convert to JAX, a result too large.
    """
    call = _Call(
        draws=draws,
        tune=tune,
        chains=chains,
        target_accept=target_accept,
        random_seed=random_seed,
        initvals=initvals,
        var_names=var_names,
        progressbar=progressbar,
        quiet=quiet,
        idata_kwargs=idata_kwargs,
        nuts_sampler=nuts_sampler,
        nuts_sampler_kwargs=nuts_sampler_kwargs,
        nuts=nuts,
        compute_convergence_checks=compute_convergence_checks,
        model=model,
        backend=backend,
        gpu=gpu,
        workers=workers,
        sampler=sampler,
        **kwargs,
    )
    stored = None if refit or not wait else call.stored()
    if stored is not None:
        return stored
    call.encode()
    if not wait:
        return call.submit()
    return call.finish(call.runner.run(call.jobs, call.options))


class _Call:
    """One call of :func:`sample`, step by step: checked, encoded, run, wrapped.

    Creating it checks the arguments and the model (preflight); nothing is
    shipped until :meth:`encode` and a backend's ``run``.
    """

    def __init__(
        self,
        draws: int = 1000,
        *,
        tune: int = 1000,
        chains: int | None = None,
        target_accept: float | None = None,
        random_seed=None,
        initvals=None,
        var_names: Sequence[str] | None = None,
        progressbar: bool = True,
        quiet: bool = False,
        idata_kwargs: dict[str, Any] | None = None,
        nuts_sampler: str = "numpyro",
        nuts_sampler_kwargs: dict[str, Any] | None = None,
        nuts: dict[str, Any] | None = None,
        compute_convergence_checks: bool = True,
        model=None,
        backend: str | None = None,
        gpu: str | Sequence[str] | None = None,
        workers: int | None = None,
        sampler: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.started = time.perf_counter()
        _refuse_unsupported(kwargs, nuts_sampler)
        self.model = modelcontext(model)
        if chains is None:
            chains = max(2, min(4, _cpu_count()))
        idata_kwargs = dict(idata_kwargs or {})
        target_accept, driver = _sampler_options(nuts_sampler_kwargs, nuts, target_accept)
        self.options = resolve(backend=backend, gpu=gpu, workers=workers, sampler=sampler)
        _check_sampler(self.options.sampler, chains, driver)
        self.settings = NutsSettings(
            draws=draws,
            tune=tune,
            chains=chains,
            target_accept=target_accept,
            seed=_jax_seed(random_seed, chains),
            initvals=initvals,
            var_names=None if var_names is None else list(var_names),
            progressbar=bool(progressbar) and not quiet,
            log_likelihood=bool(idata_kwargs.get("log_likelihood", False)),
            float_x=pytensor.config.floatX,
            sampler=self.options.sampler,
            **driver,
        )
        self.quiet, self.compute_convergence_checks = quiet, compute_convergence_checks
        self.shares = fanout.split(self.settings, self.options.workers)
        self.backend = _choose_backend(self.options.backend)
        self.checked = preflight.check(self.model, self.settings, self.options.max_result_bytes)
        self.runner = _backend(self.backend)
        self.key = store.key(self.checked.fingerprint, self.shares, self.runner.where(self.options))
        self.context = result.context(self.model, idata_kwargs)
        self.seconds = {"preflight": time.perf_counter() - self.started}
        self.jobs: list[bytes] = []
        self.attrs: dict[str, Any] = {}

    def stored(self):
        """The stored result of an identical earlier call, or None."""
        stored = store.load(self.key)
        if stored is None:
            return None
        answers, attrs = stored
        if not self.quiet:
            _log.info(
                "Returned the stored result of an identical run made %s on %s; "
                "nothing was sampled. Pass refit=True to sample again.",
                attrs[store.STORED_AT],
                attrs["pymc_modal_where"],
            )
        raw = fanout.merge([payload.decode_result(answer, "") for answer in answers])
        return self._checked(result.wrap(raw, self.context, attrs))

    def encode(self) -> None:
        """Serialize the jobs, one per worker, and store their data where the workers read it."""
        start = time.perf_counter()
        blobs: dict[str, bytes] = {}
        fingerprint = self.checked.fingerprint
        self.jobs = [payload.encode_job(self.model, s, blobs, fingerprint) for s in self.shares]
        self.seconds["serialize"] = time.perf_counter() - start

        start = time.perf_counter()
        uploaded = self.runner.store_blobs(blobs)
        self.seconds["upload"] = time.perf_counter() - start
        self.attrs = {
            "pymc_modal_backend": self.backend,
            "pymc_modal_payload_bytes": sum(map(len, self.jobs)),
            "pymc_modal_data_bytes": sum(map(len, blobs.values())),
            "pymc_modal_uploaded_bytes": uploaded,
            "pymc_modal_result_bytes_estimated": self.checked.result_bytes,
        }

    def submit(self):
        """Start the encoded jobs detached; return the :class:`pymc_modal.runs.Run`."""
        from pymc_modal import runs

        attrs = {**self.attrs, "pymc_modal_where": self.runner.where(self.options)}
        if self.backend == "modal":
            attrs["pymc_modal_gpu"] = _billed_gpu(self.options)
        attrs.update({f"pymc_modal_seconds_{name}": v for name, v in self.seconds.items()})
        run = runs.submit(self.backend, self.jobs, self.options, self.context, attrs)
        if not self.quiet:
            _log.info("Started run %s; pymc_modal.fetch(%r) returns its result.", run.id, run.id)
        return run

    def finish(self, deliveries: Sequence[Delivery]):
        """Wrap the workers' answers and store them; re-raise a worker's exception."""
        seconds, attrs = self.seconds, self.attrs
        start = time.perf_counter()
        answers = [payload.decode_result(d.answer, d.where) for d in deliveries]
        raw = fanout.merge(answers)
        for name in deliveries[0].seconds.keys() - {"wall"}:
            seconds[name] = max(d.seconds[name] for d in deliveries)
        seconds["start"] = max(
            max(0.0, d.seconds["wall"] - sum(answer["seconds"].values()))
            for d, answer in zip(deliveries, answers, strict=True)
        )
        seconds.update(raw["seconds"])
        where = deliveries[0].where
        attrs.update(
            {
                "pymc_modal_where": where,
                "pymc_modal_device": raw["device"],
                "pymc_modal_workers": len(deliveries),
                "pymc_modal_returned_bytes": sum(len(d.answer) for d in deliveries),
                **_cost(self.backend, deliveries, self.options),
            }
        )
        idata = result.wrap(raw, self.context, attrs)
        seconds["return"] = time.perf_counter() - start
        seconds["total"] = time.perf_counter() - self.started
        attrs.update({f"pymc_modal_seconds_{name}": value for name, value in seconds.items()})
        idata.attrs.update(attrs)
        store.save(self.key, [d.answer for d in deliveries], attrs)
        if not self.quiet:
            cost = attrs["pymc_modal_cost_usd"]
            _log.info(
                "Sampled %d chains x %d draws on %s in %s (sampling %s), %s.",
                self.settings.chains,
                self.settings.draws,
                where if len(deliveries) == 1 else f"{len(deliveries)} workers on {where}",
                _format_seconds(seconds["total"]),
                _format_seconds(seconds["compile"] + seconds["sample"]),
                f"about ${cost:.2f}" if self.backend == "modal" else "no charge",
            )
        return self._checked(idata)

    def _checked(self, idata):
        """Warn about R-hat, ESS and divergences as ``pm.sample`` does; return ``idata``."""
        if self.compute_convergence_checks:
            from pymc.stats.convergence import log_warnings, run_convergence_checks

            found = run_convergence_checks(idata, self.model)
            if not self.quiet:
                log_warnings(found)
        return idata
