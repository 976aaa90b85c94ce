"""Sample a PyMC model with NumPyro's NUTS, phase by phase, as PyMC's JAX path does.

This is ``pymc.sampling.jax.sample_jax_nuts(nuts_sampler="numpyro")`` timed by
phase (compiling, tuning, drawing, post-processing) and with the result left as
plain arrays for the client to wrap. The draws are those PyMC itself would give
for the same seed.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

__all__ = [
    "EXTRA_FIELDS",
    "NutsSettings",
    "Sampler",
    "collect",
    "compile_sampler",
    "jittered_initial_points",
    "kept_variables",
    "sample",
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

_COMPILE_EVENTS = frozenset(
    {
        "/jax/core/compile/jaxpr_trace_duration",
        "/jax/core/compile/jaxpr_to_mlir_module_duration",
        "/jax/core/compile/backend_compile_duration",
    }
)


@dataclasses.dataclass(frozen=True)
class NutsSettings:
    """Everything one NUTS run needs besides the model.

    The fields are the arguments of ``pymc.sampling.jax.sample_jax_nuts``;
    ``seed`` is the integer seed PyMC would pass to it, ``log_likelihood``
    whether to compute the pointwise log-likelihood, ``float_x`` the client's
    ``pytensor.config.floatX``, ``sampler`` one of
    :data:`pymc_modal.config.SAMPLERS` (``"numpyro"``: this module; the
    others: :mod:`pymc_modal.samplers`).
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
    nuts_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    sampler: str = "numpyro"


class _CompileClock:
    """Sum of the seconds JAX reports spending on tracing, lowering and compiling."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __call__(self, event: str, duration: float, **_: Any) -> None:
        if event in _COMPILE_EVENTS:
            self.seconds += duration


def kept_variables(model, settings: NutsSettings) -> list:
    """The variables a run returns, in terms of the model's value variables, as PyMC picks them."""
    from pymc.sampling.jax import get_default_varnames

    kept = model.unobserved_value_vars
    if settings.var_names is not None:
        kept = [v for v in kept if v.name in settings.var_names]
    return list(get_default_varnames(kept, include_transformed=settings.keep_untransformed))


@dataclasses.dataclass
class Sampler:
    """A model converted to JAX with its NumPyro ``MCMC``, to run again with other seeds.

    Running it again for a model with the same log density and settings (but
    for ``seed``, ``initvals`` and ``jitter``) skips PyMC's conversion to JAX.
    NumPyro traces its loop anew on every run; with JAX's persistent
    compilation cache the XLA compilation is skipped too, which is why the
    loop reports nothing to the host (a program with host callbacks is never
    cached).
    """

    logp_fn: Any
    kept: list
    observed: list
    mcmc: Any


def compile_sampler(model, settings: NutsSettings) -> Sampler:
    """Convert ``model`` to JAX and set up NumPyro's NUTS for ``settings``; nothing runs yet."""
    from numpyro.infer import MCMC, NUTS
    from pymc.sampling.jax import get_jaxified_graph, get_jaxified_logp

    logp_fn = get_jaxified_logp(model, negative_logp=False)
    nuts_kwargs = {
        "adapt_step_size": True,
        "adapt_mass_matrix": True,
        "dense_mass": False,
        **settings.nuts_kwargs,
    }
    kept = kept_variables(model, settings)
    observed = model.observed_RVs if settings.log_likelihood else []
    # Each draw is turned into what the result keeps as it is collected, so the
    # device never holds every unconstrained value of every draw.
    transform = get_jaxified_graph(
        inputs=model.value_vars, outputs=[*kept, *model.logp(observed, sum=False)]
    )

    kernel = NUTS(potential_fn=logp_fn, target_accept_prob=settings.target_accept, **nuts_kwargs)
    mcmc = MCMC(
        kernel,
        num_warmup=settings.tune,
        num_samples=settings.draws,
        num_chains=settings.chains,
        postprocess_fn=lambda z: transform(*z),
        chain_method=settings.chain_method,
        progress_bar=settings.progressbar,
    )
    return Sampler(logp_fn, kept, observed, mcmc)


def sample(model, settings: NutsSettings, sampler: Sampler | None = None) -> dict[str, Any]:
    """Sample ``model`` with NumPyro NUTS as ``pm.sample(nuts_sampler="numpyro")`` would.

    Parameters
    ----------
    model : pymc.Model
    settings : NutsSettings
    sampler : Sampler, optional
        This model's sampler from an earlier run with equal settings but for
        ``seed``, ``initvals`` and ``jitter``; by default one is compiled.

    Returns
    -------
    dict
        ``posterior``, ``sample_stats`` and ``log_likelihood`` (or None): dicts
        of numpy arrays shaped (chain, draw, ...); ``attrs``: PyMC's posterior
        attributes; ``seconds``: compile, sample (tuning and drawing) and
        postprocess times;
        ``device``: the JAX device that ran it.
    """
    from pymc.sampling.jax import _numpyro_stats_to_dict

    if sampler is None:
        sampler = compile_sampler(model, settings)
    kept, observed, mcmc = sampler.kept, sampler.observed, sampler.mcmc
    initial_points = jittered_initial_points(model, settings, sampler.logp_fn)
    key = jax.random.PRNGKey(settings.seed)
    if settings.chains > 1:
        key = jax.random.split(key, settings.chains)

    clock = _CompileClock()
    jax.monitoring.register_event_duration_secs_listener(clock)
    try:
        start = time.perf_counter()
        mcmc.run(key, init_params=initial_points, extra_fields=EXTRA_FIELDS)
        jax.block_until_ready(mcmc.last_state)
        end = time.perf_counter()
    finally:
        jax.monitoring.unregister_event_duration_listener(clock)
    compile_seconds = clock.seconds
    sample_seconds = max(0.0, end - start - compile_seconds)

    seconds = {"compile": compile_seconds, "sample": sample_seconds}
    values = mcmc.get_samples(group_by_chain=True)
    return collect(settings, kept, observed, values, _numpyro_stats_to_dict(mcmc), seconds)


def jittered_initial_points(model, settings: NutsSettings, logp_fn) -> list:
    """PyMC's initial points for the chains, one array per value variable.

    Batched over chains (but for one chain), checked finite with ``logp_fn``.
    """
    from pymc.sampling.jax import _get_batched_jittered_initial_points

    return _get_batched_jittered_initial_points(
        model=model,
        chains=settings.chains,
        initvals=settings.initvals,
        random_seed=settings.seed,
        jitter=settings.jitter,
        logp_fn=logp_fn,
    )


def collect(settings: NutsSettings, kept, observed, values, sample_stats, seconds) -> dict:
    """A run's answer from its device arrays, each shaped (chain, draw, ...).

    ``values`` are the kept variables then the observed variables'
    log-likelihood, in that order; ``seconds`` the compile and sample times.
    """
    start = time.perf_counter()
    values = [np.asarray(value) for value in values]
    posterior = {v.name: value for v, value in zip(kept, values[: len(kept)], strict=True)}
    log_likelihood = {
        rv.name: value for rv, value in zip(observed, values[len(kept) :], strict=True)
    }
    sample_stats = {name: np.asarray(value) for name, value in sample_stats.items()}
    seconds = {**seconds, "postprocess": time.perf_counter() - start}
    device = jax.devices()[0]
    return {
        "posterior": posterior,
        "sample_stats": sample_stats,
        "log_likelihood": log_likelihood if settings.log_likelihood else None,
        "attrs": {
            "sampling_time": seconds["compile"] + seconds["sample"],
            "tuning_steps": settings.tune,
        },
        "seconds": seconds,
        "device": f"{device.platform}: {device.device_kind}",
    }
