"""nutpie's NUTS on the worker: its Rust sampler and mass-matrix adaptation, JAX's gradients.

nutpie runs each chain in a thread of its own and calls back into Python for
the model: the log density and its gradient once per leapfrog step, and an
"expand" function once per draw. Both are JAX functions here, made from the
same graphs as the other samplers' (PyMC's JAX log density, and the returned
variables' graph), so that they run on whichever device JAX has, and so that
the draws hold the returned variables only. nutpie's trace itself still keeps
every draw's unconstrained position and gradient, so a run whose trace the
machine could not hold is refused before nutpie starts. The expand function
tells :class:`_Arrivals` of each draw, which counts them by chain and tells a
block when its draws are in.

nutpie samples the draws it was asked for at the start and has no way to
draw more from an adapted state later, so a run sampled to a target asks for
``max_draws`` (its registry entry's ``most_blocks`` blocks unless the user
gave one) and is stopped when :mod:`.blocks` has seen enough.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
from pathlib import Path

import jax
import numpy as np

from pymc_modal.errors import WorkerMemoryError
from pymc_modal.job import Answer, SampleSettings
from pymc_modal.payload import Job
from pymc_modal.samplers import SAMPLERS
from pymc_modal.worker import blocks
from pymc_modal.worker.chains import flat
from pymc_modal.worker.checkpoint import Attempt

__all__ = ["sample"]

# nutpie's per-draw statistics by PyMC's names (n_steps counts gradient evaluations).
_STATS = {
    "logp": "lp",
    "step_size": "step_size",
    "n_steps": "n_steps",
    "depth": "tree_depth",
    "mean_tree_accept": "acceptance_rate",
    "diverging": "diverging",
    "energy": "energy",
}


# The samplers to suggest instead.
_LEAN = " or ".join(
    f"sampler={name!r}" for name, entry in SAMPLERS.items() if not entry.trace_bytes_per_value
)


# Where a container's memory limit is, under cgroup v2 and v1.
CGROUP_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def _memory_bytes() -> int:
    """The memory the worker may use: the machine's, or its container's limit if lower."""
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in CGROUP_LIMITS:
        with contextlib.suppress(OSError):
            limit = Path(path).read_text().strip()
            if limit.isdigit():  # "max" where the container has no limit
                return min(physical, int(limit))
    return physical


def _check_memory(parameters: int, settings: SampleSettings, draws: int) -> None:
    """Refuse a run whose trace nutpie could not hold in this machine's memory."""
    per_draw = SAMPLERS["nutpie"].trace_bytes_per_value * parameters * settings.chains
    need, have = per_draw * (settings.tune + draws), _memory_bytes()
    if need <= have:
        return
    fits = have // per_draw - settings.tune
    if settings.target_ess is None:
        fewer = "draws"
    else:  # a block of draws must fit too, and max_draws may not be under it
        fewer = "max_draws" if fits >= settings.draws else "draws and max_draws"
    raise WorkerMemoryError(
        f"sampler='nutpie' would hold about {need / 2**30:.1f} GiB for {settings.chains} "
        f"chains x ({settings.tune} tune + {draws} draws) of {parameters:,} parameters, more "
        f"than the {have / 2**30:.1f} GiB of the machine it runs on: nutpie keeps every "
        "draw's unconstrained position and gradient, whatever var_names keeps. "
        + (f"Pass {fewer} of {fits} or fewer, or use" if fits > 0 else "Use")
        + f" {_LEAN}, whose memory follows var_names."
    )


class _Arrivals:
    """How many draws, warm-up's included, each chain has expanded so far, and what failed."""

    def __init__(self, chains: int, bar) -> None:
        self.chains = chains
        self.bar = bar
        self.counts: dict[int, int] = {}
        self.arrived = threading.Condition()
        self.error: Exception | None = None

    def calling(self, function):
        """``function``, keeping what it raises: nutpie turns it into a Rust panic."""

        def called(*args):
            try:
                return function(*args)
            except Exception as exc:
                self.error = self.error or exc
                raise

        return called

    def add(self, chain: int) -> None:
        with self.arrived:
            self.counts[chain] = self.counts.get(chain, 0) + 1
            self.arrived.notify_all()
        if self.bar is not None:
            self.bar.update()

    def wait_for(self, count: int, sampler) -> None:
        """Return once every chain has expanded ``count`` draws; raise what nutpie raised.

        nutpie is asked whether it stopped with the lock released: its threads
        wait for the lock to hand over a draw.
        """
        while True:
            with self.failing():
                finished = _finished(sampler)
            with self.arrived:
                counts = self.counts.values()
                if len(counts) == self.chains and min(counts) >= count:
                    return
                if not finished:
                    self.arrived.wait(timeout=1.0)
                    continue
            with self.failing():
                sampler.wait()
            raise RuntimeError(f"nutpie stopped before {count} draws a chain")

    @contextlib.contextmanager
    def failing(self):
        """Raise what a call of ours raised in nutpie, rather than nutpie's report of it."""
        try:
            yield
        except BaseException:
            if self.error is not None:
                raise self.error from None
            raise

    def wait_a_moment(self) -> None:
        """Wait for the next draw, or a tenth of a second."""
        with self.arrived:
            self.arrived.wait(timeout=0.1)


def _finished(sampler) -> bool:
    # nutpie 0.16 answers a running sampler's is_finished with TimeoutError.
    try:
        return sampler.is_finished
    except TimeoutError:
        return False


class _Chains:
    """nutpie's chains, as :func:`pymc_modal.worker.blocks.run` steps them: started by the
    warm-up, each block waiting for its draws to arrive."""

    # nutpie warms up and draws on its own, from the start.
    stretches = False

    def __init__(self, settings, compiled, arrivals: _Arrivals, returned, names, total) -> None:
        self.settings, self.compiled, self.arrivals = settings, compiled, arrivals
        self.returned, self.names, self.total = returned, names, total
        self.sampler = None
        self.taken = 0

    def begin(self) -> None:
        pass

    def tune(self, steps: int) -> None:
        import nutpie

        settings = self.settings
        with self.arrivals.failing():
            self.sampler = nutpie.sample(
                self.compiled,
                draws=self.total,
                tune=settings.tune,
                chains=settings.chains,
                # Every chain at once, each a thread: a block waits for every chain's draws.
                cores=settings.chains,
                seed=settings.seed,
                target_accept=settings.target_accept,
                progress_bar=False,
                save_warmup=False,
                blocking=False,
                **settings.sampler_options,
            )
        self.arrivals.wait_for(settings.tune, self.sampler)

    def draw(self, n: int) -> blocks.Draw:
        settings, arrivals, taken = self.settings, self.arrivals, self.taken
        if self.sampler is None:  # no warm-up still starts nutpie
            self.tune(0)
        bar = arrivals.bar
        if bar is not None:  # one bar over warm-up and every block
            bar.total = max(bar.total, settings.chains * (settings.tune + taken + n))
        arrivals.wait_for(settings.tune + taken + n, self.sampler)
        # A draw is in the trace just after its chain expanded it.
        while True:
            trace = self.sampler.inspect()
            stats = {
                ours: np.asarray(trace.sample_stats[theirs])[:, taken : taken + n]
                for theirs, ours in _STATS.items()
            }
            if not np.isnan(stats["lp"]).any():
                break
            arrivals.wait_a_moment()
        values = [np.asarray(trace.posterior[name])[:, taken : taken + n] for name in self.names]
        self.taken += n
        return values, stats


def sample(job: Job, attempt: Attempt | None = None) -> Answer:
    """Sample the job's model with nutpie's NUTS, as every sampler's ``sample`` does.

    See :class:`pymc_modal.samplers.Sampler`. nutpie compiles the model anew
    for each job, so the job's fingerprint is not used. The answer's
    ``n_steps`` counts gradient evaluations per draw, as ChEES's does.
    """
    from nutpie.compiled_pyfunc import from_pyfunc

    settings = job.settings
    model_flat = flat(job.model, settings)
    graph, unravel = model_flat.returned, model_flat.unravel
    total = settings.draws if settings.target_ess is None else settings.max_draws
    _check_memory(model_flat.starts.shape[1], settings, total)
    # nutpie works in float64; the model keeps its own precision.
    dtype = model_flat.starts.dtype
    starts = np.asarray(model_flat.starts, dtype=np.float64)
    value_and_grad = jax.jit(
        jax.value_and_grad(lambda x: model_flat.logp(unravel(x.astype(dtype))))
    )
    expand = jax.jit(lambda x: graph.fn(*unravel(x.astype(dtype))))
    names = [v.name for v in graph.kept] + [f"log_likelihood_{rv.name}" for rv in graph.observed]
    first = [np.asarray(value) for value in expand(starts[0])]

    def logp(x):
        value, grad = value_and_grad(x)
        return float(value), np.asarray(grad, dtype=np.float64)

    bar = None
    if settings.progressbar:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=settings.chains * (settings.tune + settings.draws),
            desc="nutpie warm-up + draws, all chains",
        )
    arrivals = _Arrivals(settings.chains, bar)
    # nutpie makes one expand function per chain, and calls each from its chain's thread.
    made = itertools.count()

    def make_expand(seed1, seed2, chain):
        key = next(made)

        def expand_one(x):
            values = dict(zip(names, map(np.asarray, expand(x)), strict=True))
            arrivals.add(key)
            return values

        return arrivals.calling(expand_one)

    # nutpie asks for each chain's start with a seed; the chains take PyMC's in turn.
    started_chains = itertools.count()

    def start(seed):
        return starts[next(started_chains) % settings.chains]

    compiled = from_pyfunc(
        ndim=starts.shape[1],
        make_logp_fn=lambda: arrivals.calling(logp),
        make_expand_fn=make_expand,
        expanded_dtypes=[value.dtype for value in first],
        expanded_shapes=[value.shape for value in first],
        expanded_names=names,
        make_initial_point_fn=start,
    )
    chains = _Chains(settings, compiled, arrivals, graph, names, total)
    try:
        return blocks.run(settings, chains, attempt)
    finally:
        if chains.sampler is not None and arrivals.error is None:
            chains.sampler.cancel()
        if bar is not None:
            bar.close()
