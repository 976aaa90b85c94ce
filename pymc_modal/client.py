"""The public call: ``pymc_modal.sample``, a drop-in for ``pm.sample``.

It translates ``pm.sample``'s arguments into the job's settings and the
call's options, and hands the call to :mod:`pymc_modal.pipeline`, which checks
it on this machine, ships it as bytes to a worker and wraps the answer into
what ``pm.sample`` returns on this installation.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import warnings
from collections.abc import Sequence
from typing import Any

import pytensor
from pymc.model import modelcontext
from pymc.sampling.parallel import _cpu_count

from pymc_modal import attrs, pipeline, samplers, store
from pymc_modal._compat import jax_seed
from pymc_modal.checks import closest, count, invalid, is_number, is_whole
from pymc_modal.config import resolve
from pymc_modal.errors import InvalidOptionError, InvalidTypeError, UnsupportedArgumentError
from pymc_modal.job import STOPPING, SampleSettings
from pymc_modal.paths import fits_dir
from pymc_modal.runs import Run, fetch

__all__ = ["WARM_TUNE", "check_target", "extend", "prepare", "sample"]

# Arguments of pm.sample that mean nothing when a JAX sampler runs on a worker.
_UNSUPPORTED = {
    "step": "every variable is sampled by one JAX sampler (see sampler=); custom step "
    "methods need pm.sample",
    "cores": "chains run on the worker's device, not on local cores; set chains= instead",
    "init": "the samplers start from PyMC's jittered initial point; set initvals= instead",
    "n_init": "there is no ADVI initialisation on the JAX path",
    "jitter_max_retries": "set nuts_sampler_kwargs={'jitter': False} to start unjittered",
    "trace": "the result is always returned in memory as pm.sample's InferenceData",
    "callback": "the sampler runs on the worker as one compiled program, with no call per draw",
    "mp_ctx": "no multiprocessing is used",
    "blas_cores": "the worker's BLAS threads are not set from here",
    "compile_kwargs": "the model is compiled with PyMC's JAX conversion on the worker",
    "keep_warning_stat": "there is no warning stat on the JAX path",
    "progressbar_theme": "the progress bar is the sampler's own",
}
# A warm start's warm-up steps by default. NumPyro adapts the mass matrix in windows that
# double, the last the longest; 200 steps left it too few draws to estimate from
# (BENCHMARKS.md, "Warm start").
WARM_TUNE = 400
# pm.sample arguments accepted only at their default value.
_FIXED = {"discard_tuned_samples": True, "return_inferencedata": True}
# Keys of nuts_sampler_kwargs (or nuts=) that go to the sampling driver, not the NUTS kernel.
_DRIVER_OPTIONS = {
    "jitter": (True, False),
    "keep_untransformed": (True, False),
    "chain_method": ("parallel", "vectorized", "sequential"),
}
# Options of PyMC's JAX path that place a post-processing step this path does not have.
_NO_EFFECT = ("postprocessing_backend", "postprocessing_vectorize", "postprocessing_chunks")


def _refuse_unsupported(kwargs: dict[str, Any], nuts_sampler: str) -> None:
    if nuts_sampler != "numpyro":
        raise UnsupportedArgumentError(
            f"nuts_sampler={nuts_sampler!r} is not available: pymc_modal samples with "
            "NumPyro's NUTS (nuts_sampler='numpyro'), or with nutpie's NUTS or ChEES-HMC "
            "through sampler='nutpie' or 'chees'. Use pm.sample for others."
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
        valid = inspect.signature(sample).parameters
        unexpected = ", ".join(f"{name}{closest(name, valid)}" for name in sorted(kwargs))
        raise UnsupportedArgumentError(
            f"pymc_modal.sample got unexpected argument(s) {unexpected}."
        )


def _sampler_options(
    nuts_sampler_kwargs: dict[str, Any] | None,
    nuts: dict[str, Any] | None,
    target_accept: float | None,
    sampler: str,
    chains: int,
) -> tuple[float, dict[str, Any]]:
    """Split ``nuts_sampler_kwargs`` (PyMC 5) or ``nuts`` (PyMC 6) into driver and kernel options.

    The kernel options are ``sampler``'s own, checked by its registry entry.
    """
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
                stacklevel=4,
            )
    kernel.update(merged)
    for name, allowed in _DRIVER_OPTIONS.items():
        if name in driver and driver[name] not in allowed:
            raise InvalidOptionError(
                f"{name}={driver[name]!r} is not one of {', '.join(map(repr, allowed))}."
            )
    samplers.get(sampler).check_options(kernel, chains, also=_DRIVER_OPTIONS)
    target_accept = 0.8 if target_accept is None else target_accept
    if not is_number(target_accept) or not 0 < target_accept < 1:
        raise invalid(
            target_accept,
            f"target_accept={target_accept!r}: pass the acceptance rate to aim at, a "
            "probability between 0 and 1 such as the default 0.8 (0.95 for hard posteriors).",
        )
    return float(target_accept), {**driver, "sampler_options": kernel}


def _target_settings(
    draws,
    target_ess,
    max_rhat,
    max_draws,
    max_seconds,
    max_cost,
) -> dict[str, Any]:
    """The settings of a run sampled to ``target_ess``, checked; none without a target."""
    caps = {
        "max_rhat": max_rhat,
        "max_draws": max_draws,
        "max_seconds": max_seconds,
        "max_cost": max_cost,
    }
    if target_ess is None:
        given = [name for name, value in caps.items() if value is not None]
        if given:
            raise InvalidOptionError(
                f"{given[0]} applies to a run sampled to a target; pass target_ess= too "
                "(e.g. target_ess=400), or leave it out to draw exactly draws= per chain."
            )
        return {}
    if not is_whole(target_ess) or target_ess < 1:
        raise invalid(
            target_ess,
            f"target_ess={target_ess!r}: pass a positive whole number of effective draws, "
            "such as target_ess=400.",
        )
    if max_rhat is not None and (not is_number(max_rhat) or not max_rhat > 1):
        raise invalid(
            max_rhat,
            f"max_rhat={max_rhat!r}: R-hat is 1 at best, so pass a number above 1, such as "
            "the default 1.01.",
        )
    if max_draws is not None and (not is_whole(max_draws) or max_draws < draws):
        raise invalid(
            max_draws,
            f"max_draws={max_draws!r}: pass a whole number of draws per chain of at least "
            f"draws={draws}, the first block, which is always drawn.",
        )
    for name, unit in (("max_seconds", "seconds"), ("max_cost", "US dollars")):
        value = caps[name]
        if value is not None and (not is_number(value) or not value > 0):
            raise invalid(value, f"{name}={value!r}: pass a positive number of {unit}.")
    return {
        "target_ess": int(target_ess),
        "max_rhat": 1.01 if max_rhat is None else float(max_rhat),
        "max_draws": None if max_draws is None else int(max_draws),
        "max_seconds": None if max_seconds is None else float(max_seconds),
        "max_cost": None if max_cost is None else float(max_cost),
    }


def check_target(
    target_ess: int | None = None,
    max_rhat: float | None = None,
    max_draws: int | None = None,
    max_seconds: float | None = None,
    max_cost: float | None = None,
) -> None:
    """Refuse a target or cap :func:`sample` would refuse, before any call is made.

    Raises
    ------
    InvalidOptionError
        As :func:`sample` raises it.
    """
    _target_settings(1, target_ess, max_rhat, max_draws, max_seconds, max_cost)


def _jax_seed(random_seed, chains: int) -> int:
    """The seed PyMC's ``pm.sample(nuts_sampler="numpyro")`` hands to NumPyro."""
    if isinstance(random_seed, int) and random_seed == -1:
        raise InvalidOptionError(
            "Setting random_seed = -1 is not allowed. Pass `None` to not specify a seed."
        )
    return jax_seed(random_seed, chains)


def sample(
    draws: int = 1000,
    *,
    tune: int | None = None,
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
    target_ess: int | None = None,
    max_rhat: float | None = None,
    max_draws: int | None = None,
    max_seconds: float | None = None,
    max_cost: float | None = None,
    model=None,
    backend: str | None = None,
    gpu: str | Sequence[str] | None = None,
    workers: int | None = None,
    sampler: str | None = None,
    wait: bool = True,
    refit: bool = False,
    warm_start=None,
    **kwargs: Any,
):
    """Draw samples from the posterior on a worker, as ``pm.sample`` does.

    A drop-in for ``pm.sample(nuts_sampler="numpyro", ...)``: the model and its
    data are checked here, shipped as bytes to a worker (a local process or a
    Modal GPU), sampled there, and returned as ``pm.sample`` returns them.

    Parameters
    ----------
    draws : int, default 1000
        The number of samples to draw per chain. Tuning samples are discarded.
    tune : int, optional
        Number of tuning (warm-up) iterations per chain: 1000 by default, as
        in ``pm.sample``, or :data:`WARM_TUNE` (400) with ``warm_start``.
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
        PyMC's name for the default sampler, the only one it accepts here;
        choose BlackJAX's samplers with ``sampler``.
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
    target_ess : int, optional
        Sample until the smallest bulk and tail ESS over the returned
        variables reach this and their largest R-hat is at most ``max_rhat``,
        or until a cap below. ``draws`` is then the first block of draws per
        chain, and further blocks of ``draws`` go on from the adapted sampler;
        after each, a line reports ESS, R-hat and a forecast of the draws,
        time and cost to the target. By default exactly ``draws`` are drawn.
    max_rhat : float, default 1.01
        The largest R-hat ``target_ess`` accepts.
    max_draws : int, optional
        With ``target_ess``: stop at this many draws per chain. It is at most
        what fits under ``pymc_modal.options(max_result_bytes=...)``.
    max_seconds : float, optional
        With ``target_ess``: start no block that would end after this many
        of the worker's seconds (loading, compiling and sampling).
    max_cost : float, optional
        With ``target_ess``, on Modal: start no block that would take the
        worker's seconds past this many US dollars at the GPU's price.
    model : pymc.Model, optional
        The model; by default the one in the enclosing ``with`` block.
    backend : {"auto", "local", "modal"}, optional
        Where to sample. By default the ``PYMC_MODAL_BACKEND`` environment
        variable, an enclosing :func:`pymc_modal.options` block, or ``"auto"``:
        Modal when Modal credentials are configured, else this machine.
    gpu : str or list of str, optional
        The Modal GPU type (default ``"A100"``), e.g. ``"H100"`` or
        ``"A100-80GB:2"``, or a list to fall back through, or ``"none"`` for a
        container with CPU cores only; by default (None) the ``PYMC_MODAL_GPU``
        environment variable or an enclosing :func:`pymc_modal.gpu` or
        :func:`pymc_modal.cpu` block.
    workers : int, optional
        Split the chains across this many workers (default 1), each a Modal
        container with its own GPU, or a process on the local backend. The
        workers' chains have seeds of their own spawned from ``random_seed``:
        the result is reproducible, but only ``workers=1`` gives the draws of
        ``pm.sample``.
    sampler : {"numpyro", "nutpie", "chees"}, optional
        ``"numpyro"`` (the default, or an enclosing :func:`pymc_modal.options`
        block's): NumPyro's NUTS, the draws of ``pm.sample``. ``"nutpie"``:
        nutpie's NUTS and mass-matrix adaptation (fewer gradients a draw),
        the chains in threads; ``nuts=`` takes its
        ``low_rank_modified_mass_matrix``. ``"chees"``: BlackJAX's
        ChEES-adapted HMC, the chains one ensemble on one device, for many
        chains (e.g. ``chains=128``); give it a long warm-up (``tune=1500``
        or more) and judge it by long chains. It takes ``target_accept``,
        ``jitter`` and ``keep_untransformed`` but no NUTS options. README's
        "Choosing a sampler" has what each measured.
    wait : bool, default True
        If False, start the run detached and return a
        :class:`pymc_modal.runs.Run` at once; :func:`pymc_modal.fetch` with
        its id returns the result later, from any process on this machine.
    refit : bool, default False
        Sample even if an identical call (same model, data, arguments, seed,
        library versions and GPU) has stored its result on this machine. A
        waited call with a ``random_seed`` otherwise returns that stored
        result at once, without starting a worker, and says so.
    warm_start : InferenceData, DataTree or str, optional
        An earlier fit of the same model (its result, or its detached run's
        id), on other data or with another seed, sampled on the same
        backend: the warm-up starts from its adapted step size and mass
        matrix, and is shorter (400 steps by default). NumPyro's NUTS only
        (``sampler="numpyro"``, for both fits).

    Returns
    -------
    arviz.InferenceData or xarray.DataTree
        What ``pm.sample`` returns on this installation (a
        :class:`pymc_modal.runs.Run` if ``wait=False``), with posterior,
        sample_stats, observed_data and constant_data. Its ``attrs`` name the
        backend and device (``pymc_modal_backend``, ``pymc_modal_device``),
        the seconds of each phase (``pymc_modal_seconds_<phase>``) and the
        estimated cost (``pymc_modal_cost_usd``); with ``target_ess``, why it
        stopped (``pymc_modal_stop_reason``: ``"target"``, ``"max_cost"``,
        ``"max_seconds"`` or ``"max_draws"``), the blocks and draws per chain,
        the ESS and R-hat reached, and how close the first forecast came.
        A run stopped by a cap warns with :class:`pymc_modal.errors.NotConvergedWarning`.

    Raises
    ------
    pymc_modal.errors.PymcModalError
        A subclass naming the problem, raised before anything is shipped where
        it can be known: unsupported arguments, counts or options of the wrong
        kind, ``initvals`` PyMC cannot apply, a log density that is not finite
        where a chain would start (:class:`pymc_modal.errors.InitialPointError`),
        discrete variables, unknown ``var_names``, a model PyMC cannot convert
        to JAX, a result too large, a target or cap that is not a positive
        number, ``max_cost`` where nothing is billed.
    """
    arguments = dict(locals())
    arguments.update(arguments.pop("kwargs"))
    wait, refit = arguments.pop("wait"), arguments.pop("refit")
    # Called here, not through a helper: its warnings' stacklevel counts these frames.
    outcome = pipeline.run(prepare(**arguments), wait=wait, refit=refit)
    return outcome if wait else Run(outcome)


def _previous(previous, name: str) -> tuple[Any, store.Fit]:
    """An earlier fit's result and record, from the result or its detached run's id.

    Raises
    ------
    InvalidOptionError
        If ``previous`` is neither, or this machine has no record of its fit.
    """
    if isinstance(previous, str):
        previous = fetch(previous)
    key = getattr(previous, "attrs", {}).get(attrs.FIT)
    if key is None:
        raise InvalidOptionError(
            f"{name}={type(previous).__name__}: pass the result of pymc_modal.sample (or "
            f"extend), or a detached run's id; this has no {attrs.FIT!r} attr."
        )
    fit = store.load_fit(key)
    if fit is None:
        raise InvalidOptionError(
            f"{name}: this machine has no record of the fit that made this result (looked "
            f"for {fits_dir() / key}); it was made on another machine, or before pymc_modal "
            "kept these records. Sample it again here."
        )
    return previous, fit


def prepare(**arguments: Any) -> pipeline.Request:
    """The pipeline's request, from :func:`sample`'s arguments but ``wait`` and ``refit``.

    Raises
    ------
    pymc_modal.errors.PymcModalError
        For arguments that are refused before anything else is looked at.
    """
    bound = inspect.signature(sample).bind(**arguments)
    bound.apply_defaults()
    given = types.SimpleNamespace(**bound.arguments)
    _refuse_unsupported(dict(given.kwargs), given.nuts_sampler)
    model = modelcontext(given.model)
    draws = count("draws", given.draws, "draws per chain (with target_ess, per block)", 1000)
    options = resolve(
        backend=given.backend, gpu=given.gpu, workers=given.workers, sampler=given.sampler
    )
    previous = None if given.warm_start is None else _warm_start(given.warm_start, options.sampler)
    tune = given.tune
    if tune is None:
        tune = 1000 if previous is None else WARM_TUNE
    tune = count("tune", tune, "tuning steps per chain, 0 or more", 1000, least=0)
    if given.chains is None:
        chains = max(2, min(4, _cpu_count()))
    else:
        chains = count("chains", given.chains, "chains", 4)
    if isinstance(given.var_names, str):
        raise InvalidTypeError(
            f"var_names={given.var_names!r}: pass a list of names, such as "
            f"var_names=[{given.var_names!r}]."
        )
    idata_kwargs = dict(given.idata_kwargs or {})
    target_accept, driver = _sampler_options(
        given.nuts_sampler_kwargs, given.nuts, given.target_accept, options.sampler, chains
    )
    target = _target_settings(
        draws,
        given.target_ess,
        given.max_rhat,
        given.max_draws,
        given.max_seconds,
        given.max_cost,
    )
    settings = SampleSettings(
        draws=draws,
        tune=tune,
        chains=chains,
        target_accept=target_accept,
        seed=_jax_seed(given.random_seed, chains),
        initvals=given.initvals,
        var_names=None if given.var_names is None else list(given.var_names),
        progressbar=bool(given.progressbar) and not given.quiet,
        log_likelihood=bool(idata_kwargs.get("log_likelihood", False)),
        float_x=pytensor.config.floatX,
        sampler=options.sampler,
        warm_start=None if previous is None else previous.fit.checkpoints[0],
        **driver,
        **target,
    )
    return pipeline.Request(
        model,
        settings,
        options,
        quiet=given.quiet,
        idata_kwargs=idata_kwargs,
        convergence_checks=given.compute_convergence_checks,
        previous=previous,
    )


def _warm_start(warm_start, sampler: str) -> pipeline.Previous:
    """The earlier fit a warm start starts from, if ``sampler`` can start from it.

    Raises
    ------
    UnsupportedArgumentError
        If either fit's sampler cannot warm-start, or they differ.
    """
    _, fit = _previous(warm_start, "warm_start")
    able = [name for name, entry in samplers.SAMPLERS.items() if entry.warm_start]
    for name in (sampler, fit.settings.sampler):
        if not samplers.get(name).warm_start:
            raise UnsupportedArgumentError(
                f"warm_start: sampler={name!r} cannot start from an earlier fit's adapted "
                f"sampler, only {', '.join(map(repr, able))}; "
                + (
                    "nutpie adapts inside its own Rust threads and hands no state out."
                    if name == "nutpie"
                    else "BlackJAX's ChEES adaptation starts from nothing."
                )
            )
    if fit.settings.sampler != sampler:
        raise UnsupportedArgumentError(
            f"warm_start: the earlier fit used sampler={fit.settings.sampler!r} and this one "
            f"sampler={sampler!r}; warm-start with the same sampler."
        )
    return pipeline.Previous(fit)


def extend(
    previous,
    draws: int | None = None,
    *,
    target_ess: int | None = None,
    max_rhat: float | None = None,
    max_draws: int | None = None,
    max_seconds: float | None = None,
    max_cost: float | None = None,
    progressbar: bool = True,
    quiet: bool = False,
    compute_convergence_checks: bool = True,
    model=None,
    wait: bool = True,
):
    """Go on sampling from where an earlier run ended, with no second warm-up.

    The chains go on from the earlier run's last checkpoint, with its
    adapted kernel, seed and settings, on the same backend and GPU: a run of
    N draws extended by M returns the N + M draws one run of N + M would.
    It works as well for a run that reached its target, stopped at a cap,
    was stopped, or ended early.

    Parameters
    ----------
    previous : InferenceData, DataTree or str
        The earlier run's result (from :func:`sample` or :func:`extend`), or
        its detached run's id (waited for if it is still running).
    draws : int, optional
        Without ``target_ess``: the draws per chain to add (required). With
        it: the draws of each block, by default the earlier call's ``draws``.
    target_ess, max_rhat, max_draws, max_seconds, max_cost
        Go on until the smallest bulk and tail ESS reach ``target_ess``, or
        a cap, as in :func:`sample`; ``max_draws`` counts the earlier draws
        too, ``max_seconds`` and ``max_cost`` this call's worker only.
    progressbar, quiet, compute_convergence_checks, model, wait
        As in :func:`sample`.

    Returns
    -------
    arviz.InferenceData or xarray.DataTree
        Every draw, the earlier run's first, as :func:`sample` returns them
        (a :class:`pymc_modal.runs.Run` if ``wait=False``). Its attrs count
        this call's seconds and cost.

    Raises
    ------
    UnsupportedArgumentError
        If the earlier run's sampler cannot go on from a finished run (nutpie).
    InvalidOptionError
        If ``previous`` is not a result of this package made on this machine,
        the model or its data differ from the earlier run's, no draws or
        target is given, or the target is already met.
    """
    idata, fit = _previous(previous, "previous")
    earlier = fit.settings
    if not samplers.get(earlier.sampler).checkpoints:
        raise UnsupportedArgumentError(
            f"extend: sampler={earlier.sampler!r} cannot go on from a finished run: nutpie "
            "draws a fixed number of draws, and its adapted state stays in its Rust threads. "
            "Sample again with more draws, or use sampler='numpyro' or 'chees'."
        )
    drawn = idata["posterior"].sizes["draw"]
    if target_ess is None:
        if draws is None:
            raise InvalidOptionError(
                "extend: pass draws=, the draws per chain to add (e.g. draws=1000), or "
                "target_ess= to go on until the ESS reaches it."
            )
        more = count("draws", draws, "draws per chain to add", 1000)
        target = _target_settings(more, None, max_rhat, max_draws, max_seconds, max_cost)
        length = drawn + more
    else:
        length = count("draws", earlier.draws if draws is None else draws, "draws a block", 1000)
        target = _target_settings(length, target_ess, max_rhat, max_draws, max_seconds, max_cost)
        reached = attrs.convergence(idata.attrs)
        if (
            reached is not None
            and min(reached.min_ess_bulk, reached.min_ess_tail) >= target["target_ess"]
            and reached.max_rhat <= target["max_rhat"]
        ):
            raise InvalidOptionError(
                f"extend: the earlier run already reached target_ess={target['target_ess']} "
                f"(min bulk ESS {reached.min_ess_bulk:.0f}, min tail ESS "
                f"{reached.min_ess_tail:.0f}, max R-hat {reached.max_rhat:.3f}); pass a "
                "higher target_ess= or a lower max_rhat=."
            )
    settings = dataclasses.replace(
        earlier,
        **{
            **STOPPING,
            **target,
            "draws": length,
            "progressbar": bool(progressbar) and not quiet,
            "extend": True,
        },
    )
    request = pipeline.Request(
        modelcontext(model),
        settings,
        fit.options,
        quiet=quiet,
        idata_kwargs=fit.idata_kwargs,
        convergence_checks=compute_convergence_checks,
        previous=pipeline.Previous(fit, drawn),
    )
    outcome = pipeline.run(request, wait=wait, refit=False)
    return outcome if wait else Run(outcome)
