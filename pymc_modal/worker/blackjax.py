"""BlackJAX's ChEES-HMC on the worker: many chains as one ensemble on one device.

The same contract as :func:`pymc_modal.worker.numpyro.sample`: PyMC's JAX log density
and jittered initial points in, the kept variables and PyMC's sample-stat
names out. It runs every chain vectorized on one device, and reduces each
draw to the variables the result keeps as it is drawn.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from pymc_modal.job import Answer, SampleSettings
from pymc_modal.payload import Job
from pymc_modal.worker import blocks
from pymc_modal.worker.chains import flat
from pymc_modal.worker.checkpoint import Attempt

__all__ = ["sample"]

# ChEES adapts its step size from here and its trajectory length with Adam at this
# rate (BENCHMARKS.md, "Samplers", says why not BlackJAX's example rate of 0.025).
CHEES_INITIAL_STEP_SIZE = 0.1
CHEES_LEARNING_RATE = 0.1
# Warm-up and draws whose jitter never repeats: 2**30 steps, the most a 32-bit step count holds.
_JITTER_SPAN = 2**30


def _ticking(tick, adaptation_info_fn):
    """BlackJAX's per-step warm-up hook, made to tick the progress bar as well."""

    def info(state, step_info, adaptation_state):
        tick()
        return adaptation_info_fn(state, step_info, adaptation_state)

    return info


def _progress_bar(settings: SampleSettings):
    """A tqdm bar over warm-up and draws, as NumPyro's (tqdm is its dependency); None if off.

    The compiled loop advances it through a host callback: JAX does not put
    such a program in its persistent compilation cache, so it is only there
    when asked for.
    """
    if not settings.progressbar:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=settings.tune + settings.draws, desc=f"{settings.sampler} warm-up + draws")


def _draw_keys(draw_key, start, n: int):
    """The keys of draws ``start`` to ``start + n``: one a draw, however the draws are split."""
    return jax.vmap(lambda i: jax.random.fold_in(draw_key, i))(start + jax.numpy.arange(n))


def _ensemble_draws(step, transform, settings: SampleSettings, tick):
    """``draws(n)`` for an ensemble: every chain one step of ``step(parameters)`` a draw.

    ``step(parameters)`` is the adapted kernel, ``(key, state) -> (state, info)``.
    """

    def draws(n: int):
        def ensemble(carry, start):
            states, parameters, draw_key = carry
            kernel = jax.vmap(step(parameters))

            def one_draw(states, key):
                tick()
                states, info = kernel(jax.random.split(key, settings.chains), states)
                stats = {
                    "lp": states.logdensity,
                    "step_size": jax.numpy.full(settings.chains, parameters["step_size"]),
                    "n_steps": info.num_integration_steps,
                    "acceptance_rate": info.acceptance_rate,
                    "diverging": info.is_divergent,
                    "energy": info.energy,
                }
                return states, (jax.vmap(transform)(states.position), stats)

            states, drawn = jax.lax.scan(one_draw, states, _draw_keys(draw_key, start, n))
            # (draw, chain, ...) to (chain, draw, ...)
            drawn = jax.tree.map(lambda x: jax.numpy.swapaxes(x, 0, 1), drawn)
            return (states, parameters, draw_key), drawn

        return ensemble

    return draws


def _chees(logp_fn, transform, settings: SampleSettings, tick):
    """All chains as one ensemble: ChEES adaptation, then jittered dynamic HMC draws.

    ``logp_fn`` and ``transform`` take a chain's position as one flat vector;
    ``tick()`` is called once a step, warm-up and draws. Returns
    ``warm_up(keys, positions) -> carry`` and ``draws(n)``, a function
    ``(carry, start) -> (carry, (values, stats))`` drawing ``n`` per chain
    after ``start`` draws.
    """
    import blackjax
    import optax
    from blackjax.adaptation.base import get_filter_adapt_info_fn

    # The adapted kernel's jitter functions: Python closures over no traced value, kept
    # from warm-up's trace for the draws' (a compiled program returns only arrays).
    functions = {}

    def warm_up(keys, positions):
        warmup_key, draw_key = jax.random.split(keys[0])
        warmup = blackjax.chees_adaptation(
            logp_fn,
            settings.chains,
            target_acceptance_rate=settings.target_accept,
            adaptation_info_fn=_ticking(tick, get_filter_adapt_info_fn()),
            # A diagonal mass matrix from the ensemble, as NUTS adapts one, for posteriors
            # whose scales differ (BlackJAX's default is the identity). The trajectory-length
            # floor is left off: it accumulates a dense covariance, parameters squared floats.
            mass_matrix_estimation="diagonal",
            _length_floor=False,
        )
        (states, parameters), _ = warmup.run(
            warmup_key,
            positions,
            CHEES_INITIAL_STEP_SIZE,
            optax.adam(CHEES_LEARNING_RATE),
            settings.tune,
            # Its jitter sequence (a Halton sequence of this many bits' span) then runs
            # without repeating for any number of draws, and a draw's jitter does not depend
            # on how many are asked for, so a run goes on as one longer run would.
            max_sampling_steps=_JITTER_SPAN - settings.tune,
        )
        functions.update({name: f for name, f in parameters.items() if callable(f)})
        arrays = {name: value for name, value in parameters.items() if not callable(value)}
        return states, arrays, draw_key

    def step(parameters):
        return blackjax.dynamic_hmc(logp_fn, **parameters, **functions).step

    return warm_up, _ensemble_draws(step, transform, settings, tick)


class _Ensemble:
    """One job's ensemble, as :func:`pymc_modal.worker.blocks.run` steps it."""

    # ChEES adapts in one program.
    stretches = False

    def __init__(self, job: Job, bar) -> None:
        settings = self.settings = job.settings
        # Each chain's position as one flat vector: BlackJAX's ChEES mishandles
        # position leaves of more than one dimension.
        model_flat = flat(job.model, settings)
        self.returned, unravel = model_flat.returned, model_flat.unravel
        self.positions, self.bar = model_flat.starts, bar
        self.warm_up, self.draws = _chees(
            lambda x: model_flat.logp(unravel(x)),
            lambda x: self.returned.fn(*unravel(x)),
            settings,
            (lambda: jax.debug.callback(bar.update)) if bar else (lambda: None),
        )
        self.keys = jax.random.split(jax.random.PRNGKey(settings.seed), settings.chains)
        self.carry = None
        self.drawn = 0
        self.programs: dict[int, Any] = {}  # the draws' program by block size

    def begin(self) -> None:
        pass

    def tune(self, steps: int) -> None:
        run = jax.jit(self.warm_up).lower(self.keys, self.positions).compile()
        if self.bar:
            self.bar.reset()  # its rate and time left count from here, not from compiling
        self.carry = jax.block_until_ready(run(self.keys, self.positions))

    def draw(self, n: int) -> blocks.Draw:
        if self.carry is None:  # no warm-up is still its program, which sets the kernel
            self.tune(0)
        if n not in self.programs:
            self.programs[n] = jax.jit(self.draws(n))
        if self.bar:  # one bar over warm-up and every block
            self.bar.total = max(self.bar.total, self.settings.tune + self.drawn + n)
        self.carry, (values, stats) = self.programs[n](self.carry, self.drawn)
        self.drawn += n
        return [np.asarray(v) for v in values], {k: np.asarray(v) for k, v in stats.items()}

    def state(self):
        return jax.device_get(self.carry)

    def restore(self, state, done: int) -> None:
        # Tracing the warm-up recovers the adapted kernel's functions, which are not arrays.
        jax.eval_shape(self.warm_up, self.keys, self.positions)
        self.carry, self.drawn = state, done - self.settings.tune


def sample(job: Job, attempt: Attempt | None = None) -> Answer:
    """Sample the job's model with ChEES-HMC, as every sampler's ``sample`` does.

    See :class:`pymc_modal.samplers.Sampler`. The ensemble's programs are
    compiled for each job, so the job's fingerprint is not used.

    Returns
    -------
    Answer
        As :func:`pymc_modal.worker.chains.answer` makes it, with PyMC's
        sample-stat names; ``n_steps`` counts gradient evaluations per draw.
    """
    bar = _progress_bar(job.settings)
    try:
        return blocks.run(job.settings, _Ensemble(job, bar), attempt)
    finally:
        if bar:
            bar.close()
