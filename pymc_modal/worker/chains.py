"""What every sampler on the worker shares: the chains' initial points and the run's answer."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from pymc_modal.job import Answer, Convergence, Returned, SampleSettings, returned

__all__ = ["Flat", "answer", "flat", "flat_starts", "initial_points"]


def initial_points(model, settings: SampleSettings, logp_fn) -> list:
    """PyMC's jittered initial points for the chains, one array per value variable.

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


def flat_starts(points, chains: int):
    """Each chain's start from :func:`initial_points` as one flat vector, and ``unravel``.

    Returns an array shaped (chains, parameters) and a function turning one
    such vector back into the value variables' arrays.
    """
    from jax.flatten_util import ravel_pytree

    if chains == 1:
        points = [np.asarray(point)[None] for point in points]
    _, unravel = ravel_pytree([point[0] for point in points])
    return jax.vmap(lambda *point: ravel_pytree(list(point))[0])(*points), unravel


@dataclasses.dataclass(frozen=True)
class Flat:
    """A model as a sampler of flat vectors sees it: one vector of parameters a chain.

    Attributes
    ----------
    logp : callable
        The log density of the value variables (PyMC's JAX conversion).
    returned : Returned
        The returned variables' graph.
    starts : jax.Array
        Each chain's start, shaped (chains, parameters).
    unravel : callable
        One chain's vector back into the value variables' arrays.
    """

    logp: Callable
    returned: Returned
    starts: Any
    unravel: Callable


def flat(model, settings: SampleSettings) -> Flat:
    """``model``'s log density, returned variables and chains' starts, for a flat-vector sampler."""
    from pymc.sampling.jax import get_jaxified_logp

    # PyMC's flag is named for NumPyro's potential: the default is the log density itself.
    logp = get_jaxified_logp(model)
    starts, unravel = flat_starts(initial_points(model, settings, logp), settings.chains)
    return Flat(logp, returned(model, settings), starts, unravel)


def answer(
    settings: SampleSettings,
    returned: Returned,
    values,
    sample_stats,
    seconds,
    *,
    convergence: Convergence | None = None,
) -> Answer:
    """A run's answer from its device arrays, each shaped (chain, draw, ...).

    Parameters
    ----------
    settings : SampleSettings
        The run's settings (``tune`` and ``log_likelihood`` are read).
    returned : Returned
        The graph that made ``values``.
    values : sequence of arrays
        ``returned.fn``'s outputs for every draw: the kept variables, then
        the observed variables' log-likelihood.
    sample_stats : dict of str to array
        The per-draw statistics, by PyMC's names.
    seconds : dict of str to float
        The compile and sample times.
    convergence : Convergence, optional
        For a run sampled to a target, why it stopped and what it reached.
    """
    start = time.perf_counter()
    kept = returned.kept
    values = [np.asarray(value) for value in values]
    posterior = {v.name: value for v, value in zip(kept, values[: len(kept)], strict=True)}
    log_likelihood = {
        rv.name: value for rv, value in zip(returned.observed, values[len(kept) :], strict=True)
    }
    seconds = {**seconds, "postprocess": time.perf_counter() - start}
    device = jax.devices()[0]
    return Answer(
        posterior=posterior,
        sample_stats={name: np.asarray(value) for name, value in sample_stats.items()},
        log_likelihood=log_likelihood if settings.log_likelihood else None,
        attrs={
            "sampling_time": seconds["compile"] + seconds["sample"],
            "tuning_steps": settings.tune,
        },
        seconds=seconds,
        device=f"{device.platform}: {device.device_kind}",
        convergence=convergence,
    )
