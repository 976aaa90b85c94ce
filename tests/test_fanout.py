"""Chains across workers: how a run is split, and how the answers are joined."""

import dataclasses

import numpy as np
import pytest

import pymc_modal
from pymc_modal import fanout
from pymc_modal.errors import InvalidOptionError
from pymc_modal.job import Answer


def test_one_worker_keeps_the_run_as_it_is(settings):
    assert fanout.split(settings, 1) == [settings]


def test_chains_are_shared_evenly_with_distinct_reproducible_seeds(settings):
    run = dataclasses.replace(settings, chains=5, progressbar=True)
    shares = fanout.split(run, 2)
    assert [share.chains for share in shares] == [3, 2]
    assert len({share.seed for share in shares}) == 2
    assert run.seed not in {share.seed for share in shares}
    assert [share.seed for share in fanout.split(run, 2)] == [share.seed for share in shares]
    assert [share.progressbar for share in shares] == [True, False]
    assert {share.draws for share in shares} == {run.draws}


def test_per_chain_initvals_follow_their_chains(settings):
    initvals = [{"mu": float(i)} for i in range(3)]
    shares = fanout.split(dataclasses.replace(settings, chains=3, initvals=initvals), 2)
    assert [share.initvals for share in shares] == [initvals[:2], initvals[2:]]
    shared = fanout.split(dataclasses.replace(settings, chains=3, initvals={"mu": 1.0}), 3)
    assert [share.initvals for share in shared] == [{"mu": 1.0}] * 3


def test_more_workers_than_chains_is_refused_before_shipping(model, nothing_shipped):
    with pytest.raises(InvalidOptionError, match="workers=3 is more than chains=2"):
        pymc_modal.sample(model=model, chains=2, workers=3, backend="local")


def _answer(first_chain: int, chains: int, seconds: float, device: str = "gpu: H100") -> Answer:
    values = np.arange(first_chain, first_chain + chains, dtype=float)[:, None] * np.ones((1, 4))
    return Answer(
        posterior={"x": values},
        sample_stats={"diverging": np.zeros((chains, 4), dtype=bool)},
        log_likelihood=None,
        attrs={"sampling_time": seconds, "tuning_steps": 10},
        seconds={"compile": seconds, "tune": 1.0, "draw": 2.0, "postprocess": 0.1},
        device=device,
    )


def test_answers_are_joined_along_the_chain_axis_in_worker_order():
    merged = fanout.merge([_answer(0, 2, 5.0), _answer(2, 1, 7.0)])
    np.testing.assert_array_equal(merged.posterior["x"][:, 0], [0.0, 1.0, 2.0])
    assert merged.sample_stats["diverging"].shape == (3, 4)
    assert merged.log_likelihood is None
    assert merged.seconds["compile"] == 7.0
    assert merged.attrs == {"sampling_time": 7.0, "tuning_steps": 10}
    assert merged.device == "gpu: H100"


@pytest.mark.parametrize("workers", [0, -1, 1.5, True])
def test_workers_must_be_a_positive_integer(workers):
    with pytest.raises(InvalidOptionError, match="workers="), pymc_modal.options(workers=workers):
        pass
