"""The samplers, one entry each: what the client checks and the worker runs, by name.

Both sides read this registry: the client checks a call's sampler options
and plans its draws with an entry, the worker runs the entry's module.
Adding a sampler is an entry here and its module in :mod:`pymc_modal.worker`.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Iterable

import numpy as np

from pymc_modal.checks import closest, is_bool, is_number, is_whole
from pymc_modal.errors import InvalidOptionError

__all__ = ["DEFAULT", "SAMPLERS", "Sampler", "get"]


def _max_tree_depth(value) -> bool:
    pair = isinstance(value, tuple) and len(value) == 2
    return all(is_whole(d) and d >= 1 for d in value) if pair else is_whole(value) and value >= 1


@functools.cache
def _numpyro_nuts_options() -> frozenset[str]:
    from numpyro.infer import NUTS

    own = {"self", "model", "potential_fn", "target_accept_prob"}
    return frozenset(inspect.signature(NUTS).parameters) - own


# Checks of the values of NumPyro NUTS options that NumPyro itself only meets on the worker.
_NUMPYRO_VALUES = {
    "max_tree_depth": (
        _max_tree_depth,
        "a positive whole number of tree doublings (the default is 10), or a pair of them "
        "for warm-up and sampling",
    ),
    "step_size": (lambda v: is_number(v) and 0 < v < np.inf, "a positive number"),
    **{
        name: (is_bool, "True or False")
        for name in (
            "adapt_step_size",
            "adapt_mass_matrix",
            "dense_mass",
            "find_heuristic_step_size",
            "forward_mode_differentiation",
            "regularize_mass_matrix",
        )
    },
}
_NUTPIE_VALUES = {"low_rank_modified_mass_matrix": (is_bool, "True or False")}


@dataclasses.dataclass(frozen=True)
class Sampler:
    """One sampler, as ``sampler=`` names it.

    Attributes
    ----------
    name : str
        Its name for ``sampler=``.
    module : str
        The module of :mod:`pymc_modal.worker` that runs it, with a function
        ``sample(job, attempt=None)``: a :class:`pymc_modal.payload.Job`
        (model, settings, and the client's fingerprint of the model, under
        which the sampler may keep what it compiled for the next job) and
        the :class:`pymc_modal.worker.checkpoint.Attempt` it runs in, handing
        its chains to :func:`pymc_modal.worker.blocks.run` and returning its
        answer, with PyMC's sample-stat names.
    options : callable
        The names of its own options (``nuts=``'s keys other than
        ``jitter``, ``keep_untransformed`` and ``chain_method``).
    values : dict
        Checks of some options' values: name to ``(valid, what to pass)``.
    whose : str
        What its options are called in messages.
    ensemble : bool
        It adapts from an ensemble of chains, so it needs two or more.
    trace_bytes_per_value : int
        Bytes per parameter per draw (warm-up's included) per chain that it
        keeps in memory whatever ``var_names`` keeps; 0 where the worker
        holds only the variables ``var_names`` keeps.
    thread_per_chain : bool
        Each chain runs in a thread of its own on the worker's CPU.
    most_blocks : int, optional
        With ``target_ess`` and no ``max_draws``, stop after this many blocks
        (the sampler reserves memory for every draw it may draw); None: only
        the result's size bounds the draws.
    checkpoints : bool
        Its chains' state can be saved and gone on from, so an attempt
        resumes where an earlier one left off; otherwise a restart begins
        again (deadlines, stops and partial results work all the same), and
        a finished run cannot be extended (:func:`pymc_modal.extend`).
    warm_start : bool
        It can start a new fit from an earlier fit's adapted kernel
        (``sample(warm_start=...)``).
    nuts_sampler : str
        ``pm.sample``'s ``nuts_sampler`` name of its library, which
        :func:`pymc_modal.patch` maps to it.
    """

    name: str
    module: str
    options: Callable[[], frozenset[str]]
    values: dict[str, tuple[Callable[[object], bool], str]]
    whose: str
    ensemble: bool = False
    trace_bytes_per_value: int = 0
    thread_per_chain: bool = False
    most_blocks: int | None = None
    checkpoints: bool = True
    warm_start: bool = False
    nuts_sampler: str = "numpyro"

    def check_options(self, given: dict[str, object], chains: int, also: Iterable[str]) -> None:
        """Refuse options this sampler does not take, or values it cannot use.

        Parameters
        ----------
        given : dict
            Its options as the call gave them.
        chains : int
            The call's chains.
        also : iterable of str
            The options every sampler takes, named in the message.

        Raises
        ------
        InvalidOptionError
            Naming the option and what to pass instead.
        """
        own = self.options()
        unknown = sorted(set(given) - own)
        if unknown and not own:
            raise InvalidOptionError(
                f"{', '.join(unknown)}: NumPyro NUTS options apply to sampler='numpyro' only; "
                f"sampler={self.name!r} takes target_accept, jitter and keep_untransformed."
            )
        if unknown:
            named = ", ".join(f"{name}{closest(name, {*also, *own})}" for name in unknown)
            raise InvalidOptionError(
                f"Unknown NUTS option(s) {named}. Sampler options are {', '.join(also)}; "
                f"{self.whose} are {', '.join(sorted(own))}."
            )
        for name, (valid, what) in self.values.items():
            if name in given and not valid(given[name]):
                raise InvalidOptionError(f"NUTS option {name}={given[name]!r}: pass {what}.")
        if self.ensemble and chains < 2:
            raise InvalidOptionError(
                f"sampler={self.name!r} adapts from an ensemble of chains; pass chains=16 or "
                "more (64 or more on a GPU)."
            )

    def max_draws(self, draws: int, fits: int) -> int:
        """The draws per chain a target run with no ``max_draws`` stops at.

        Parameters
        ----------
        draws : int
            A block's draws per chain.
        fits : int
            The most draws per chain the result's size allows.
        """
        return fits if self.most_blocks is None else min(fits, self.most_blocks * draws)


SAMPLERS = {
    entry.name: entry
    for entry in (
        Sampler(
            "numpyro",
            "pymc_modal.worker.numpyro",
            _numpyro_nuts_options,
            _NUMPYRO_VALUES,
            "NumPyro NUTS options",
            warm_start=True,
        ),
        Sampler(
            "nutpie",
            "pymc_modal.worker.nutpie",
            lambda: frozenset(_NUTPIE_VALUES),
            _NUTPIE_VALUES,
            "nutpie's options",
            # nutpie 0.16 keeps every draw's unconstrained position and gradient, whatever it
            # is asked to store: the most measured (33.6 to 36.7, benchmarks/nutpie_memory.py).
            trace_bytes_per_value=37,
            thread_per_chain=True,
            # nutpie reserves memory for every draw it is asked for when it starts, some 5
            # bytes per parameter per draw per chain (it could not reserve 4 x 10**6 draws
            # of 42,042), and cannot draw more later.
            most_blocks=10,
            # Its chains live in Rust threads whose adapted state it does not hand out.
            checkpoints=False,
            nuts_sampler="nutpie",
        ),
        Sampler(
            "chees",
            "pymc_modal.worker.blackjax",
            frozenset,
            {},
            "ChEES's options",
            ensemble=True,
            # BlackJAX's ChEES adaptation starts from no mass matrix or trajectory length.
            warm_start=False,
            nuts_sampler="blackjax",
        ),
    )
}
DEFAULT = "numpyro"


def get(name: str) -> Sampler:
    """The entry of the sampler called ``name``.

    Raises
    ------
    InvalidOptionError
        If there is none.
    """
    if name not in SAMPLERS:
        raise InvalidOptionError(
            f"sampler={name!r} is not one of {', '.join(map(repr, SAMPLERS))}."
        )
    return SAMPLERS[name]
