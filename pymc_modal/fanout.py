"""Chains across workers: split one run's settings into a job per worker, merge the answers.

Each worker samples its share of the chains with a seed of its own, spawned
from the run's seed, so no two workers draw the same chain; the answers are
joined along the chain axis in worker order. In a run sampled to a target,
each worker aims at the share of ``target_ess`` (and of ``max_cost``) its
chains are of all the chains, and stops on its own; as the chains of a result
are equally long, the joined result keeps the draws every worker has, and
its ESS and R-hat are measured anew over all the chains.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np

from pymc_modal.convergence import diagnose
from pymc_modal.errors import InvalidOptionError
from pymc_modal.job import ENDED_EARLY, Answer, Convergence, SampleSettings

_log = logging.getLogger("pymc_modal")

__all__ = ["merge", "split"]


def split(settings: SampleSettings, workers: int) -> list[SampleSettings]:
    """Settings for each of ``workers`` workers, which together sample ``settings.chains``.

    Parameters
    ----------
    settings : SampleSettings
        The whole run.
    workers : int
        How many workers share the chains; one returns ``settings`` unchanged.

    Returns
    -------
    list of SampleSettings
        One per worker, chains as even as they go (5 chains on 2 workers: 3 and
        2), each with its own seed and its share of ``target_ess`` and
        ``max_cost``; only the first shows a progress bar.

    Raises
    ------
    InvalidOptionError
        If there are more workers than chains.
    """
    if workers == 1:
        return [settings]
    if workers > settings.chains:
        raise InvalidOptionError(
            f"workers={workers} is more than chains={settings.chains}; each worker samples "
            "at least one chain. Ask for fewer workers or more chains."
        )
    initvals = settings.initvals
    per_chain = isinstance(initvals, list | tuple)
    seeds = np.random.SeedSequence(settings.seed).spawn(workers)
    shares = np.array_split(np.arange(settings.chains), workers)
    chains = [len(share) for share in shares]
    targets = None if settings.target_ess is None else _apportion(settings.target_ess, chains)
    return [
        dataclasses.replace(
            settings,
            chains=len(share),
            seed=int(seed.generate_state(1)[0]),
            initvals=[initvals[i] for i in share] if per_chain else initvals,
            progressbar=settings.progressbar and index == 0,
            **({} if targets is None else _target_share(settings, targets[index], len(share))),
        )
        for index, (share, seed) in enumerate(zip(shares, seeds, strict=True))
    ]


def _apportion(total: int, chains: list[int]) -> list[int]:
    """``total`` in whole numbers in proportion to ``chains``, summing to ``total``.

    Each share is rounded down and the rest goes one each to the largest remainders.
    """
    exact = [total * n / sum(chains) for n in chains]
    shares = [int(x) for x in exact]
    by_remainder = sorted(range(len(chains)), key=lambda i: shares[i] - exact[i])
    for i in by_remainder[: total - sum(shares)]:
        shares[i] += 1
    return shares


def _target_share(settings: SampleSettings, target_ess: int, chains: int) -> dict[str, Any]:
    """A worker's ``target_ess`` and its chains' share of ``max_cost``."""
    max_cost = None if settings.max_cost is None else settings.max_cost * chains / settings.chains
    return {"target_ess": target_ess, "max_cost": max_cost}


def _concat(parts: list[dict[str, np.ndarray] | None]) -> dict[str, np.ndarray] | None:
    if parts[0] is None:
        return None
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def merge(answers: list[Answer]) -> Answer:
    """Join the workers' decoded answers into the answer of one run.

    Arrays are concatenated along their first (chain) axis in worker order,
    each cut to the fewest draws any worker returned; the seconds of each
    phase are the longest worker's, since workers run side by side.
    """
    if len(answers) == 1:
        return answers[0]
    first = answers[0]
    draws = min(answer.draws for answer in answers)
    if any(answer.draws > draws for answer in answers):
        _log.info(
            "The workers stopped at %s draws per chain; the result keeps the first %d of each.",
            ", ".join(str(answer.draws) for answer in answers),
            draws,
        )
    posterior = _concat([_first(answer.posterior, draws) for answer in answers])
    return Answer(
        posterior=posterior,
        sample_stats=_concat([_first(answer.sample_stats, draws) for answer in answers]),
        log_likelihood=_concat([_first(answer.log_likelihood, draws) for answer in answers]),
        attrs={
            **first.attrs,
            "sampling_time": max(answer.attrs["sampling_time"] for answer in answers),
        },
        seconds={
            phase: max(answer.seconds[phase] for answer in answers) for phase in first.seconds
        },
        device=", ".join(dict.fromkeys(answer.device for answer in answers)),
        convergence=_joined_convergence(answers, posterior, draws),
        stop_reason=_joined_reason([answer.stop_reason for answer in answers]),
        error=next((answer.error for answer in answers if answer.error), None),
        attempts=max(answer.attempts for answer in answers),
        # Billed for each worker's attempts.
        earlier_seconds=sum(answer.earlier_seconds for answer in answers),
    )


def _joined_reason(reasons: list[str | None]) -> str | None:
    """Why the joined run stopped: the first worker's that ended early, else the first cap
    any worker stopped at, else the target or None as every worker's."""
    for ended in (ENDED_EARLY, ("max_draws", "max_seconds", "max_cost")):
        found = [reason for reason in reasons if reason in ended]
        if found:
            return found[0]
    return reasons[0]


def _first(arrays: dict[str, np.ndarray] | None, draws: int) -> dict[str, np.ndarray] | None:
    return None if arrays is None else {name: a[:, :draws] for name, a in arrays.items()}


def _joined_convergence(
    answers: list[Answer], posterior: dict[str, np.ndarray], draws: int
) -> Convergence | None:
    """The workers' convergence records as one.

    The figures are the joined chains'; the forecast is the slowest
    worker's, its cost all of theirs; the first forecast's accuracy is the
    first worker's.
    """
    records = [answer.convergence for answer in answers]
    if records[0] is None:
        return None
    found = diagnose(posterior)
    costs = [record.forecast_cost_usd for record in records]
    return dataclasses.replace(
        records[0],
        blocks=max(record.blocks for record in records),
        draws=draws,
        target_ess=sum(record.target_ess for record in records),
        min_ess_bulk=found.min_bulk,
        min_ess_tail=found.min_tail,
        max_rhat=found.max_rhat,
        forecast_draws=max(record.forecast_draws for record in records),
        forecast_seconds=max(record.forecast_seconds for record in records),
        forecast_cost_usd=None if costs[0] is None else sum(costs),
    )
