"""The job contract, imported by both sides: what a job asks for and what a run answers.

The client builds these settings and checks the returned variables' graph
before anything ships; the worker reads the same settings and runs the same
graph. Nothing here knows where it runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "ANSWERED",
    "ENDED_EARLY",
    "EXTRA_FIELDS",
    "FLOAT64_TRUNCATION",
    "FORWARD",
    "Answer",
    "Convergence",
    "ForwardAnswer",
    "ForwardSettings",
    "Returned",
    "STOPPING",
    "SampleSettings",
    "chain_settings",
    "kept_variables",
    "returned",
]

# The per-draw statistics PyMC asks NumPyro for.
EXTRA_FIELDS = (
    "num_steps",
    "potential_energy",
    "energy",
    "adapt_state.step_size",
    "accept_prob",
    "diverging",
)


# PyTensor accumulates a float32 sum in float64 (CAReduce._acc_dtype) and its JAX
# conversion casts to that accumulator; without 64-bit types JAX keeps float32 and warns
# with this message at every such cast. The sums are float32 sums either way, as in
# pm.sample, so both sides silence it where they convert a float32 graph.
FLOAT64_TRUNCATION = "Explicitly requested dtype float64 requested in astype"


@dataclasses.dataclass(frozen=True)
class SampleSettings:
    """Everything one sampling run needs besides the model.

    The fields are the arguments of ``pymc.sampling.jax.sample_jax_nuts``;
    ``seed`` is the integer seed PyMC would pass to it, ``log_likelihood``
    whether to compute the pointwise log-likelihood, ``float_x`` the client's
    ``pytensor.config.floatX``, ``sampler`` the name of an entry of
    :data:`pymc_modal.samplers.SAMPLERS` and ``sampler_options`` its own
    options (NumPyro NUTS's, nutpie's), checked by that entry.

    With ``target_ess`` set, ``draws`` is the first block of draws, and more
    blocks of up to ``draws`` follow until every returned variable's bulk and
    tail ESS reach ``target_ess`` and its R-hat is at most ``max_rhat``, or
    until a cap: ``max_draws`` per chain (always set, by the client's plan),
    ``max_seconds`` of the worker's own time, or ``max_cost`` dollars of it
    at ``price_per_second`` (its container's whole rate, also what the
    forecast of the cost to the target is priced at; None where nothing is
    billed), ``idle_seconds`` of which are billed after the answer. See
    :mod:`pymc_modal.worker.blocks`.

    ``extend`` lets the run go on from its chains' checkpoint even where the
    run that saved it had ended as asked (:func:`pymc_modal.extend`).
    ``warm_start`` names the checkpoint of an earlier fit of the same model
    whose adapted step size and mass matrix the chains start with
    (``sample(warm_start=...)``).
    """

    draws: int
    tune: int
    chains: int
    target_accept: float
    seed: int
    initvals: Any
    var_names: Sequence[str] | None
    progressbar: bool
    log_likelihood: bool
    float_x: str
    jitter: bool = True
    keep_untransformed: bool = False
    chain_method: str = "parallel"
    sampler_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    sampler: str = "numpyro"
    target_ess: int | None = None
    max_rhat: float = 1.01
    max_draws: int | None = None
    max_seconds: float | None = None
    max_cost: float | None = None
    price_per_second: float | None = None
    idle_seconds: float = 0.0
    extend: bool = False
    warm_start: str | None = None


# What a warm local worker writes to its stderr once a job's answer is written: the
# client, relaying that stream, knows then that it has relayed all the job's output.
ANSWERED = b"\x00pymc-modal: answered\x00"
# Why a run ended before it drew what it was asked for: its attempt's time ran out, it
# was stopped, or a block failed. Such a run returns the draws it has and keeps its
# checkpoint.
ENDED_EARLY = ("deadline", "stopped", "error")
# Settings that decide only when a run stops, not what it draws: runs that differ in
# nothing else draw the same chains (the first draws of a longer run are a shorter run's),
# so one can go on from the other's checkpoint. Their values here are the defaults.
STOPPING = {
    "draws": 0,
    "max_draws": None,
    "extend": False,
    "progressbar": False,
    "target_ess": None,
    "max_rhat": 1.01,
    "max_seconds": None,
    "max_cost": None,
    "price_per_second": None,
    "idle_seconds": 0.0,
}


def chain_settings(settings: SampleSettings) -> SampleSettings:
    """``settings`` without what decides only when the run stops: what its chains depend on."""
    return dataclasses.replace(settings, **STOPPING)


# The forward computations, by kind: the name of PyMC's function that does each.
FORWARD = {
    "prior_predictive": "sample_prior_predictive",
    "posterior_predictive": "sample_posterior_predictive",
    "log_likelihood": "compute_log_likelihood",
}


@dataclasses.dataclass(frozen=True)
class ForwardSettings:
    """One forward computation: prior draws, or one over a posterior.

    Attributes
    ----------
    kind : str
        A key of ``FORWARD``.
    groups : dict of str to xarray.Dataset
        The trace's ``posterior`` and, where it has them, ``constant_data``
        and ``observed_data`` (PyMC compares them with the model's data);
        empty for the prior.
    kwargs : dict
        The other arguments of PyMC's function of that name, as the caller
        gave them (``draws``, ``var_names``, ``random_seed``, ``predictions``, ...).
    float_x : str
        The client's ``pytensor.config.floatX``.
    """

    kind: str
    groups: dict[str, Any]
    kwargs: dict[str, Any]
    float_x: str


def kept_variables(model, settings: SampleSettings) -> list:
    """The variables a run returns, in terms of the model's value variables, as PyMC picks them."""
    from pymc.sampling.jax import get_default_varnames

    kept = model.unobserved_value_vars
    if settings.var_names is not None:
        kept = [v for v in kept if v.name in settings.var_names]
    return list(get_default_varnames(kept, include_transformed=settings.keep_untransformed))


@dataclasses.dataclass(frozen=True)
class Returned:
    """What a run returns per draw, as one JAX function of the value variables.

    Attributes
    ----------
    kept : list
        The returned variables (:func:`kept_variables`).
    observed : list
        The observed variables whose pointwise log-likelihood is returned
        (none unless ``settings.log_likelihood``).
    fn : callable
        ``fn(*values)`` gives the kept variables, then each observed
        variable's pointwise log-likelihood, in that order.
    """

    kept: list
    observed: list
    fn: Callable


def returned(model, settings: SampleSettings) -> Returned:
    """The returned variables' graph, converted to JAX by PyMC."""
    from pymc.sampling.jax import get_jaxified_graph

    kept = kept_variables(model, settings)
    observed = list(model.observed_RVs) if settings.log_likelihood else []
    fn = get_jaxified_graph(
        inputs=model.value_vars, outputs=[*kept, *model.logp(observed, sum=False)]
    )
    return Returned(kept, observed, fn)


@dataclasses.dataclass(frozen=True)
class Answer:
    """A sampling run's answer: its arrays, each shaped (chain, draw, ...), and its record.

    Attributes
    ----------
    posterior : dict of str to numpy.ndarray
        The returned variables.
    sample_stats : dict of str to numpy.ndarray
        The per-draw statistics, by PyMC's names.
    log_likelihood : dict of str to numpy.ndarray, optional
        The observed variables' pointwise log-likelihood, if asked for.
    attrs : dict
        PyMC's posterior attributes (``sampling_time``, ``tuning_steps``).
    seconds : dict of str to float
        The worker's phases: load, compile, sample, postprocess.
    device : str
        The JAX device, e.g. ``"gpu: NVIDIA H100 80GB HBM3"``.
    convergence : Convergence, optional
        For a run sampled to a target.
    stop_reason : str, optional
        Why the run stopped: for a run sampled to a target, ``"target"`` or
        the cap it reached (``"max_draws"``, ``"max_seconds"``,
        ``"max_cost"``); for any run, one of :data:`ENDED_EARLY` if it ended
        before that; None for a run that drew all its ``draws``.
    error : str, optional
        For ``stop_reason="error"``: the exception that ended it, with its traceback.
    attempts : int
        The attempts the run took: one, plus one for each time it went on
        from its checkpoint.
    earlier_seconds : float
        The worker's seconds in the attempts before this one, up to their
        last checkpoint.
    """

    posterior: dict[str, Any]
    sample_stats: dict[str, Any]
    log_likelihood: dict[str, Any] | None
    attrs: dict[str, Any]
    seconds: dict[str, float]
    device: str
    convergence: Convergence | None = None
    stop_reason: str | None = None
    error: str | None = None
    attempts: int = 1
    earlier_seconds: float = 0.0

    @property
    def draws(self) -> int:
        """Draws per chain."""
        return next(iter(self.sample_stats.values())).shape[1]


@dataclasses.dataclass(frozen=True)
class ForwardAnswer:
    """A forward computation's answer.

    Attributes
    ----------
    values : Any
        What PyMC's function returned.
    seconds : dict of str to float
        The worker's phases: load, compute.
    device : str
        The JAX device.
    """

    values: Any
    seconds: dict[str, float]
    device: str


@dataclasses.dataclass(frozen=True)
class Convergence:
    """What a run sampled to a target reached, and what more was forecast.

    Why it stopped is the answer's ``stop_reason``.

    Attributes
    ----------
    blocks, draws : int
        Blocks drawn, and draws per chain.
    target_ess : int
        The target the run aimed at.
    max_rhat_target : float
        The largest R-hat the target accepted.
    min_ess_bulk, min_ess_tail, max_rhat : float
        What the returned variables reached.
    forecast_draws : int
        More draws per chain forecast to reach the target (0 if reached).
    forecast_seconds : float
        The seconds those draws were forecast to take.
    forecast_cost_usd : float, optional
        Their cost, where the run is billed.
    first_forecast_seconds, first_forecast_actual_seconds : float, optional
        The first forecast of the seconds to the target, and the seconds it
        took, where the run reached it after a forecast.
    """

    # Where it stopped.
    blocks: int
    draws: int
    # What it aimed at, and what it reached.
    target_ess: int
    max_rhat_target: float
    min_ess_bulk: float
    min_ess_tail: float
    max_rhat: float
    # What more it would take.
    forecast_draws: int
    forecast_seconds: float
    forecast_cost_usd: float | None = None
    # How close the first forecast came, where the target was reached after one.
    first_forecast_seconds: float | None = None
    first_forecast_actual_seconds: float | None = None
