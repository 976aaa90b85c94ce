"""Sample a PyMC model with NumPyro's NUTS, as PyMC's JAX path does.

This is ``pymc.sampling.jax.sample_jax_nuts(nuts_sampler="numpyro")`` with the
result left as plain arrays for the client to wrap, and each draw reduced on
the device to the variables the result keeps as it is collected. NumPyro's
``MCMC.warmup`` then ``MCMC.run`` from the warmed-up state draw what one
``MCMC.run`` draws, so the first block's draws are those PyMC itself would
give for the same seed; each further block goes on from the last one's state
(:mod:`pymc_modal.worker.blocks`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from pymc_modal.job import EXTRA_FIELDS, Returned, SampleSettings, returned
from pymc_modal.worker import blocks
from pymc_modal.worker.chains import initial_points

__all__ = ["Sampler", "compile_sampler", "sample"]


@dataclasses.dataclass
class Sampler:
    """A model converted to JAX with its NumPyro ``MCMC``, to run again with other seeds.

    Running it again for a model with the same log density and settings (but
    for ``seed``, ``initvals`` and ``jitter``) skips PyMC's conversion to JAX.
    NumPyro traces its loop anew on every run and block; with JAX's persistent
    compilation cache the XLA compilation is skipped too, which is why the
    loop reports nothing to the host (a program with host callbacks is never
    cached).
    """

    logp_fn: Any
    returned: Returned
    mcmc: Any


def compile_sampler(model, settings: SampleSettings) -> Sampler:
    """Convert ``model`` to JAX and set up NumPyro's NUTS for ``settings``; nothing runs yet."""
    from numpyro.infer import MCMC, NUTS
    from pymc.sampling.jax import get_jaxified_logp

    logp_fn = get_jaxified_logp(model, negative_logp=False)
    nuts_kwargs = {
        "adapt_step_size": True,
        "adapt_mass_matrix": True,
        "dense_mass": False,
        **settings.nuts_kwargs,
    }
    graph = returned(model, settings)
    kernel = NUTS(potential_fn=logp_fn, target_accept_prob=settings.target_accept, **nuts_kwargs)
    mcmc = MCMC(
        kernel,
        num_warmup=settings.tune,
        num_samples=settings.draws,
        num_chains=settings.chains,
        postprocess_fn=lambda z: graph.fn(*z),
        chain_method=settings.chain_method,
        progress_bar=settings.progressbar,
    )
    return Sampler(logp_fn, graph, mcmc)


def sample(
    model, settings: SampleSettings, sampler: Sampler | None = None, started: float | None = None
) -> dict[str, Any]:
    """Sample ``model`` with NumPyro NUTS as ``pm.sample(nuts_sampler="numpyro")`` would.

    Parameters
    ----------
    model : pymc.Model
    settings : SampleSettings
    sampler : Sampler, optional
        This model's sampler from an earlier run with equal settings but for
        ``seed``, ``initvals`` and ``jitter``; by default one is compiled.
    started : float, optional
        When the worker took the job, as :func:`pymc_modal.worker.blocks.run` takes it.

    Returns
    -------
    dict
        As :func:`pymc_modal.worker.chains.answer` makes it.
    """
    from pymc.sampling.jax import _numpyro_stats_to_dict

    if sampler is None:
        sampler = compile_sampler(model, settings)
    mcmc = sampler.mcmc
    points = initial_points(model, settings, sampler.logp_fn)
    key = jax.random.PRNGKey(settings.seed)
    if settings.chains > 1:
        key = jax.random.split(key, settings.chains)

    def warm_up() -> None:
        mcmc.warmup(key, init_params=points)
        jax.block_until_ready(mcmc.post_warmup_state)

    def draw(n: int) -> blocks.Draw:
        mcmc.num_samples = n
        mcmc.run(mcmc.post_warmup_state.rng_key, extra_fields=EXTRA_FIELDS)
        mcmc.post_warmup_state = mcmc.last_state
        values = [np.asarray(value) for value in mcmc.get_samples(group_by_chain=True)]
        stats = {name: np.asarray(v) for name, v in _numpyro_stats_to_dict(mcmc).items()}
        return values, stats

    return blocks.run(settings, sampler.returned, warm_up, draw, started)
