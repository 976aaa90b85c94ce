"""Sample a PyMC model with NumPyro's NUTS, as PyMC's JAX path does.

This is ``pymc.sampling.jax.sample_jax_nuts(nuts_sampler="numpyro")``'s kernel
with the chains stepped here instead of by NumPyro's ``MCMC``, each draw
reduced on the device to the variables the result keeps as it is collected.
``MCMC.run`` traces its loop anew on every call (and under ``pmap`` compiles it
anew), so a run in many blocks, or a warm worker's many calls, would pile up
compiled programs until the process runs out of memory mappings. Here each
program (the warm-up, and the draws of a block of each length) is compiled
once and kept with the :class:`Sampler`. The chains start and step with the
same kernel and keys as in one ``MCMC.run``, so the draws are those
``pm.sample`` gives for the same seed, however they are split into blocks
(:mod:`pymc_modal.worker.blocks`) or into stretches for the progress bar.
"""

from __future__ import annotations

import dataclasses
import operator
import pickle
import warnings
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from numpyro.util import nested_attrgetter

from pymc_modal.job import (
    EXTRA_FIELDS,
    Answer,
    Returned,
    SampleSettings,
    chain_settings,
    returned,
)
from pymc_modal.payload import Job
from pymc_modal.worker import blocks
from pymc_modal.worker.chains import initial_points
from pymc_modal.worker.checkpoint import Attempt

__all__ = ["Sampler", "compile_sampler", "sample"]

# What each draw collects besides the kept variables.
_FIELDS = tuple(dict.fromkeys(("diverging", *EXTRA_FIELDS)))
# With a progress bar, each stretch of warm-up and each block is stepped in about this many.
_UPDATES = 20
# The last run's compiled sampler, under what it was compiled for.
_warm: tuple[tuple[str | None, bytes], Sampler] | None = None


@dataclasses.dataclass
class Sampler:
    """A model's NUTS kernel and its compiled programs, to run again with other seeds.

    Running it again for a model with the same log density and settings (but
    for ``seed``, ``initvals`` and ``jitter``) skips PyMC's conversion to JAX
    and every compilation. A program's steps are a loop whose bounds are
    arguments, not constants, so a stretch of a warm-up or of a block runs
    the very program the whole of it runs, with the same draws, and XLA
    compiles it once. No program calls back to the host, so JAX's persistent
    compilation cache keeps them for other processes too.

    Attributes
    ----------
    chain_method : {"parallel", "vectorized", "sequential"}
        How the chains run: ``MCMC``'s ``chain_method``, "sequential" where
        it would fall back to it.
    programs : dict
        The compiled programs by name and, for draws, the block's length.
    """

    logp_fn: Any
    returned: Returned
    kernel: Any
    tune: int
    chain_method: str
    programs: dict[tuple[str, int], Callable] = dataclasses.field(default_factory=dict)

    def start(self, keys, points):
        """Every chain's start: the state to warm up from, or for parallel chains what makes it.

        ``MCMC`` starts vectorized and sequential chains outside of any
        compiled program, and parallel ones in the program that warms them up.
        """
        if self.chain_method == "parallel":
            return keys, points
        if self.chain_method == "vectorized":
            return jax.vmap(self._init)(keys, points)
        chains = [self._init(key, [point[i] for point in points]) for i, key in enumerate(keys)]
        return jax.tree.map(lambda *chain: jax.numpy.stack(chain), *chains)

    def tune_steps(self, state, steps: int, first: bool):
        """``steps`` warm-up steps of every chain from ``state`` (the start, if ``first``)."""
        starts = first and self.chain_method == "parallel"

        def one_chain(state, steps):
            if starts:
                state = self._init(*state)
            return jax.lax.fori_loop(0, steps, lambda _, state: self._step(state), state)

        program = self._program("start and tune" if starts else "tune", 0, one_chain, (0, None))
        return program(state, np.int32(steps))

    def draw_steps(self, state, collected, n: int, lower: int, upper: int):
        """Draws ``lower`` to ``upper`` of a block of ``n`` from ``state``, into ``collected``.

        ``collected`` holds the block's kept variables and fields, each with
        a leading axis of ``n`` per chain; None for a block's first stretch.
        Returns the last state and ``collected`` with the new draws.
        """

        def one_chain(state, collected, lower, upper):
            def step(i, carry):
                state, collected = carry
                state = self._step(state)
                drawn = (self.returned.fn(*state.z), nested_attrgetter(*_FIELDS)(state))
                collected = jax.tree.map(lambda c, x: c.at[i].set(x), collected, drawn)
                return state, collected

            return jax.lax.fori_loop(lower, upper, step, (state, collected))

        if collected is None:
            collected = self._program("empty", n, lambda state: self._empty(state, n), (0,))(state)
        program = self._program("draw", n, one_chain, (0, 0, None, None))
        return program(state, collected, np.int32(lower), np.int32(upper))

    def _init(self, key, point):
        return self.kernel.init(key, self.tune, point, (), {})

    def _step(self, state):
        return self.kernel.sample(state, (), {})

    def _empty(self, state, n: int):
        """One chain's collection of ``n`` draws, zeros."""
        drawn = jax.eval_shape(
            lambda state: (self.returned.fn(*state.z), nested_attrgetter(*_FIELDS)(state)), state
        )
        return jax.tree.map(lambda x: jax.numpy.zeros((n, *x.shape), x.dtype), drawn)

    def _program(self, name: str, length: int, one_chain: Callable, axes: tuple) -> Callable:
        """``one_chain`` compiled for every chain, the first time ``(name, length)`` is asked for.

        ``axes`` says of each argument whether it has the chains' axis (0) or
        is the same for every chain (None), as ``jax.vmap``'s ``in_axes``.
        """
        if (name, length) not in self.programs:
            if self.chain_method == "parallel":
                program = jax.pmap(one_chain, in_axes=axes)
            elif self.chain_method == "vectorized":
                program = jax.jit(jax.vmap(one_chain, in_axes=axes))
            else:
                program = _one_after_another(jax.jit(one_chain), axes)
            self.programs[name, length] = program
        return self.programs[name, length]


def _one_after_another(compiled: Callable, axes: tuple) -> Callable:
    """Sequential chains: ``compiled`` run for one chain after another, the outputs stacked."""

    def program(*arguments):
        outputs = []
        for i in range(len(jax.tree.leaves(arguments[0])[0])):
            own = [
                argument if axis is None else jax.tree.map(operator.itemgetter(i), argument)
                for argument, axis in zip(arguments, axes, strict=True)
            ]
            outputs.append(compiled(*own))
        return jax.tree.map(lambda *chain: jax.numpy.stack(chain), *outputs)

    return program


def _chain_method(settings: SampleSettings) -> str:
    """How ``MCMC`` would run the chains: "sequential" for one, or too few for "parallel"."""
    devices = jax.local_device_count()
    if settings.chains == 1:
        return "sequential"
    if settings.chain_method == "parallel" and devices < settings.chains:
        warnings.warn(
            f"There are not enough devices to run parallel chains: expected {settings.chains} "
            f"but got {devices}. Chains will be drawn sequentially.",
            stacklevel=2,
        )
        return "sequential"
    return settings.chain_method


def compile_sampler(model, settings: SampleSettings, adapted=None) -> Sampler:
    """Convert ``model`` to JAX and set up NumPyro's NUTS for ``settings``; nothing runs yet.

    ``adapted``: an earlier fit's saved state, for a warm start (:func:`_warm_kernel`).
    """
    from numpyro.infer import NUTS
    from pymc.sampling.jax import get_jaxified_logp

    logp_fn = get_jaxified_logp(model, negative_logp=False)
    nuts_kwargs = {
        "adapt_step_size": True,
        "adapt_mass_matrix": True,
        "dense_mass": False,
        **settings.sampler_options,
    }
    if adapted is not None:
        nuts_kwargs.update(_warm_kernel(adapted, nuts_kwargs["dense_mass"]))
    kernel = NUTS(potential_fn=logp_fn, target_accept_prob=settings.target_accept, **nuts_kwargs)
    graph = returned(model, settings)
    return Sampler(logp_fn, graph, kernel, settings.tune, _chain_method(settings))


def _warm_kernel(adapted, dense_mass) -> dict[str, Any]:
    """NUTS options that start from an earlier fit's adapted step size and mass matrix.

    Its chains' step sizes (their median) and inverse mass matrices (their
    mean) are where the warm-up starts, instead of 1 and the identity, so its
    first steps take short trajectories; the warm-up then adapts both to the
    new posterior as NumPyro does. Kept fixed instead, another dataset's mass
    matrix mixed worse (BENCHMARKS.md, "Warm start").
    """
    inverse = np.mean(np.asarray(adapted.adapt_state.inverse_mass_matrix), axis=0)
    if inverse.ndim == 2 and dense_mass is False:
        inverse = np.diagonal(inverse).copy()
    return {
        "step_size": float(np.median(np.asarray(adapted.adapt_state.step_size))),
        "inverse_mass_matrix": inverse,
    }


def _stretches(steps: int, bar) -> list[int]:
    """``steps`` as one stretch, or with a progress bar as about :data:`_UPDATES` of two lengths."""
    length = steps if bar is None else max(1, steps // _UPDATES)
    whole, rest = divmod(steps, length) if steps else (0, 0)
    return [length] * whole + ([rest] if rest else [])


class _Fields:
    """The collected fields as PyMC reads them from an ``MCMC`` (``get_extra_fields``)."""

    def __init__(self, fields: dict[str, np.ndarray]) -> None:
        self.fields = fields

    def get_extra_fields(self, group_by_chain: bool = False) -> dict[str, np.ndarray]:
        return self.fields


def _warm_sampler(
    model, settings: SampleSettings, fingerprint: str | None, attempt: Attempt | None
) -> Sampler:
    """The last run's sampler if it was compiled for this model and these settings, else a new one.

    Seed, initial values and how many draws are asked for do not change what
    is compiled; anything else may. A warm start's earlier fit is read from
    ``attempt``'s storage.
    """
    global _warm
    unseeded = dataclasses.replace(chain_settings(settings), seed=0, initvals=None, jitter=True)
    key = (fingerprint, pickle.dumps(unseeded))
    if _warm is None or fingerprint is None or _warm[0] != key:
        _warm = None
        adapted = None
        if settings.warm_start is not None:
            adapted = (attempt or Attempt()).adapted(settings.warm_start)
        _warm = (key, compile_sampler(model, settings, adapted))
    return _warm[1]


class _Chains:
    """One job's chains, as :func:`pymc_modal.worker.blocks.run` steps them."""

    stretches = True

    def __init__(self, sampler: Sampler, keys, points, bar) -> None:
        self.sampler, self.keys, self.points, self.bar = sampler, keys, points, bar
        self.returned = sampler.returned
        self.current = None
        # Parallel chains start in the program of their first warm-up steps.
        self.fresh = True

    def begin(self) -> None:
        self.current = self.sampler.start(self.keys, self.points)

    def tune(self, steps: int) -> None:
        # No steps is still one program, which starts parallel chains.
        for length in _stretches(steps, self.bar) or [0]:
            self.current = self.sampler.tune_steps(self.current, length, first=self.fresh)
            self.current = jax.block_until_ready(self.current)
            self.fresh = False
            if self.bar is not None:
                self.bar.update(length)

    def draw(self, n: int) -> blocks.Draw:
        """The next ``n`` draws, by the program of the shortest block at least as long."""
        from pymc.sampling.jax import _numpyro_stats_to_dict

        if self.fresh:
            self.tune(0)
        bar = self.bar
        if bar is not None and bar.n >= bar.total:
            bar.total += n  # one bar over warm-up and every block
        programs = self.sampler.programs
        length = min((size for name, size in programs if name == "draw" and size >= n), default=n)
        collected, done = None, 0
        for stretch in _stretches(n, bar):
            self.current, collected = self.sampler.draw_steps(
                self.current, collected, length, done, done + stretch
            )
            jax.block_until_ready(collected)
            done += stretch
            if bar is not None:
                bar.update(stretch)
        values, fields = jax.tree.map(lambda x: x[:, :n], jax.device_get(collected))
        # MCMC's fields come in a dict, which JAX's tree functions sort by key.
        fields = dict(sorted(zip(_FIELDS, fields, strict=True)))
        return list(values), _numpyro_stats_to_dict(_Fields(fields))

    def state(self):
        return jax.device_get(self.current)

    def restore(self, state, done: int) -> None:
        # The kernel sets itself up as it starts a chain, which a restored state skips.
        jax.eval_shape(self.sampler._init, self.keys[0], [point[0] for point in self.points])
        self.current, self.fresh = state, False
        if self.bar is not None:
            self.bar.update(done)


def sample(job: Job, attempt: Attempt | None = None) -> Answer:
    """Sample ``model`` with NumPyro NUTS as ``pm.sample(nuts_sampler="numpyro")`` would.

    Takes what every sampler's ``sample`` takes (:class:`pymc_modal.samplers.Sampler`).
    The sampler compiled for the last job is used again if the job's
    fingerprint and its settings but for ``seed``, ``initvals`` and
    ``jitter`` are equal.

    Returns
    -------
    Answer
        As :func:`pymc_modal.worker.chains.answer` makes it.
    """
    model, settings = job.model, job.settings
    sampler = _warm_sampler(model, settings, job.fingerprint, attempt)
    points = initial_points(model, settings, sampler.logp_fn)
    key = jax.random.PRNGKey(settings.seed)
    if settings.chains > 1:
        keys = jax.random.split(key, settings.chains)
    else:  # MCMC runs one chain unbatched, with the key as it is
        keys, points = key[None], [np.asarray(point)[None] for point in points]
    bar = None
    if settings.progressbar:
        from tqdm.auto import tqdm

        bar = tqdm(total=settings.tune + settings.draws, desc="numpyro warm-up + draws")
    try:
        return blocks.run(settings, _Chains(sampler, keys, points, bar), attempt)
    finally:
        if bar is not None:
            bar.close()
