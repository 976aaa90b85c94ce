"""Chains across workers: split one run's settings into a job per worker, merge the answers.

Each worker samples its share of the chains with a seed of its own, spawned
from the run's seed, so no two workers draw the same chain; the answers are
joined along the chain axis in worker order.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from pymc_modal.errors import InvalidOptionError
from pymc_modal.job import SampleSettings

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
        2), each with its own seed; only the first shows a progress bar.

    Raises
    ------
    InvalidOptionError
        If there are more workers than chains, or ``initvals`` is a list whose
        length is not the number of chains.
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
    if per_chain and len(initvals) != settings.chains:
        raise InvalidOptionError(
            f"initvals has {len(initvals)} entries for {settings.chains} chains; give one "
            "dict per chain, or one dict for all."
        )
    seeds = np.random.SeedSequence(settings.seed).spawn(workers)
    shares = np.array_split(np.arange(settings.chains), workers)
    return [
        dataclasses.replace(
            settings,
            chains=len(share),
            seed=int(seed.generate_state(1)[0]),
            initvals=[initvals[i] for i in share] if per_chain else initvals,
            progressbar=settings.progressbar and index == 0,
        )
        for index, (share, seed) in enumerate(zip(shares, seeds, strict=True))
    ]


def _concat(parts: list[dict[str, np.ndarray] | None]) -> dict[str, np.ndarray] | None:
    if parts[0] is None:
        return None
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def merge(answers: list[dict[str, Any]]) -> dict[str, Any]:
    """Join the workers' decoded answers into the answer of one run.

    Arrays are concatenated along their first (chain) axis in worker order;
    the seconds of each phase are the longest worker's, since workers run side
    by side.
    """
    if len(answers) == 1:
        return answers[0]
    first = answers[0]
    devices = list(dict.fromkeys(answer["device"] for answer in answers))
    return {
        "posterior": _concat([answer["posterior"] for answer in answers]),
        "sample_stats": _concat([answer["sample_stats"] for answer in answers]),
        "log_likelihood": _concat([answer["log_likelihood"] for answer in answers]),
        "attrs": {
            **first["attrs"],
            "sampling_time": max(answer["attrs"]["sampling_time"] for answer in answers),
        },
        "seconds": {
            phase: max(answer["seconds"][phase] for answer in answers) for phase in first["seconds"]
        },
        "device": ", ".join(devices),
    }
