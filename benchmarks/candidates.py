"""BlackJAX samplers evaluated for ``sampler=`` and not shipped: MEADS and adjusted MCLMC.

The flagship at a small size (2,000 observations x 200 groups x 5 covariates:
1,212 parameters), where a long run of the default is cheap: NumPyro's NUTS,
4 chains x (1,000 tune + 2,000 draws) at target acceptance 0.9, is both the
default's row and the reference. Beside it the shipped ChEES (16 chains x
(600 + 100)), and, written here against BlackJAX directly, MEADS (64 chains,
1,000 adaptation steps, then 100 draws of 10 generalized-HMC steps each) and
adjusted MCLMC (BlackJAX's tuning recipe, 4 chains of 2,000 tuning steps and
2,000 draws). For each: the smallest bulk ESS over the fixed effects,
gradients while drawing (every chain's), ESS per 1,000 of them, and the
largest distance of a posterior mean from the reference's, in its sds.

    python benchmarks/candidates.py
"""

import dataclasses
import os
import tempfile

import arviz as az
import blackjax
import jax
import jax.numpy as jnp
import numpy as np
import pytensor
from _flagship import FIXED_EFFECTS, SHIPPED_SETTINGS, build_model, fit, simulate
from blackjax.adaptation.base import get_filter_adapt_info_fn
from jax.flatten_util import ravel_pytree
from pymc.sampling.jax import get_jaxified_graph, get_jaxified_logp

from pymc_modal.job import kept_variables
from pymc_modal.worker.chains import initial_points

SIZE = (2_000, 200, 5)
MEADS_CHAINS, MEADS_TUNE, MEADS_DRAWS, MEADS_THIN = 64, 1_000, 100, 10
MCLMC_CHAINS, MCLMC_TUNE, MCLMC_DRAWS = 4, 2_000, 2_000


def _flat_problem(model, chains: int):
    """The log density and kept-variable transform of one flat position, and each chain's start."""
    settings = dataclasses.replace(SHIPPED_SETTINGS, chains=chains, var_names=FIXED_EFFECTS)
    logp = get_jaxified_logp(model)
    transform = get_jaxified_graph(inputs=model.value_vars, outputs=kept_variables(model, settings))
    points = initial_points(model, settings, logp)
    _, unravel = ravel_pytree([point[0] for point in points])
    # PyMC's JAX mode runs in float64; BlackJAX's loops need the positions to match.
    positions = jax.vmap(lambda *p: ravel_pytree(list(p))[0])(*points).astype(jnp.float64)
    return (lambda x: logp(unravel(x))), (lambda x: transform(*unravel(x))), positions


def _meads(logp, transform, positions):
    def run(key):
        warmup_key, draw_key = jax.random.split(key)
        warmup = blackjax.meads_adaptation(
            logp, MEADS_CHAINS, adaptation_info_fn=get_filter_adapt_info_fn()
        )
        (states, parameters), _ = warmup.run(warmup_key, positions, MEADS_TUNE)
        kernel = jax.vmap(blackjax.ghmc(logp, **parameters).step)

        def one_step(states, key):
            return kernel(jax.random.split(key, MEADS_CHAINS), states)[0], None

        def one_draw(states, key):
            states = jax.lax.scan(one_step, states, jax.random.split(key, MEADS_THIN))[0]
            return states, jax.vmap(transform)(states.position)

        draws = jax.lax.scan(one_draw, states, jax.random.split(draw_key, MEADS_DRAWS))[1]
        return [jnp.swapaxes(x, 0, 1) for x in draws], parameters["step_size"]

    values, step_size = jax.jit(run)(jax.random.PRNGKey(1))
    return values, MEADS_CHAINS * MEADS_DRAWS * MEADS_THIN, float(step_size)


def _adjusted_mclmc(logp, transform, positions):
    kernel = blackjax.mcmc.adjusted_mclmc_dynamic.build_kernel(
        integration_steps_fn=lambda key, average: jnp.ceil(
            jax.random.uniform(key) * 2 * average
        ).astype(int),
    )

    def chain(key, position):
        init_key, tune_key, draw_key = jax.random.split(key, 3)
        state = blackjax.mcmc.adjusted_mclmc_dynamic.init(position, logp, init_key)
        state, params, _ = blackjax.adjusted_mclmc_find_L_and_step_size(
            mclmc_kernel=kernel,
            logdensity_fn=logp,
            num_steps=MCLMC_TUNE,
            state=state,
            rng_key=tune_key,
            target=0.9,
            frac_tune3=0.1,
        )

        def one_draw(state, key):
            state, info = kernel(
                key,
                state,
                logp,
                params.step_size,
                inverse_mass_matrix=params.inverse_mass_matrix,
                integration_steps_params=(params.L / params.step_size,),
            )
            return state, (transform(state.position), info.num_integration_steps)

        return jax.lax.scan(one_draw, state, jax.random.split(draw_key, MCLMC_DRAWS))[1], (
            params.step_size
        )

    (values, steps), step_size = jax.jit(jax.vmap(chain))(
        jax.random.split(jax.random.PRNGKey(1), MCLMC_CHAINS), positions
    )
    # Its isokinetic McLachlan integrator evaluates the gradient twice a step.
    return values, 2 * int(np.asarray(steps).sum()), float(np.mean(step_size))


def _row(name, shape, posterior, gradients, reference, note=""):
    idata = az.from_dict(posterior={k: np.asarray(v) for k, v in posterior.items()})
    ess = az.ess(idata, method="bulk")
    bulk = min(float(np.min(ess[var])) for var in FIXED_EFFECTS)
    shift = max(
        float(np.max(np.abs(np.asarray(posterior[var]).mean((0, 1)) - mean) / sd))
        for var, (mean, sd) in reference.items()
    )
    print(
        f"| {name} | {shape} | {gradients:,} | {bulk:.1f} | {1000 * bulk / gradients:.2f} | "
        f"{shift:.2f} | {note} |"
    )


def main() -> None:
    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="pymc-modal-bench-")
    runs = {}
    with pytensor.config.change_flags(floatX="float32"):
        model = build_model(simulate(*SIZE))
        for name, size in {
            "numpyro": {"chains": 4, "tune": 1000, "draws": 2000, "target_accept": 0.9},
            "chees": {"chains": 16, "tune": 600, "draws": 100},
        }.items():
            idata = fit(model, sampler=name, random_seed=1, **size)
            runs[name] = (
                f"{size['chains']} x ({size['tune']} + {size['draws']})",
                {var: idata.posterior[var].values for var in FIXED_EFFECTS},
                int(np.asarray(idata.sample_stats["n_steps"]).sum()),
            )
        logp, transform, positions = _flat_problem(model, MEADS_CHAINS)
        meads = _meads(logp, transform, positions)
        logp, transform, positions = _flat_problem(model, MCLMC_CHAINS)
        mclmc = _adjusted_mclmc(logp, transform, positions)

    reference = {
        var: (values.mean((0, 1)), values.std((0, 1))) for var, values in runs["numpyro"][1].items()
    }
    print(f"\nflagship {SIZE[0]:,} x {SIZE[1]:,} x {SIZE[2]}, local backend, float32")
    print(
        "| sampler | chains x (tune + draws) | gradients | min bulk ESS | ESS / 1k gradients | "
        "max mean shift (sd) | note |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, (shape, posterior, gradients) in runs.items():
        _row(name, shape, posterior, gradients, reference)
    for name, shape, (values, gradients, step_size) in (
        ("meads", f"{MEADS_CHAINS} x ({MEADS_TUNE} + {MEADS_DRAWS} x {MEADS_THIN})", meads),
        ("adjusted mclmc", f"{MCLMC_CHAINS} x ({MCLMC_TUNE} + {MCLMC_DRAWS})", mclmc),
    ):
        posterior = dict(zip(FIXED_EFFECTS, values, strict=True))
        _row(name, shape, posterior, gradients, reference, f"step size {step_size:.3g}")


if __name__ == "__main__":
    main()
