"""A worker's memory stays flat: its 300th block or call holds no more compiled code than its 10th.

Every compiled program the worker keeps maps its code into memory; a worker
that compiled its sampling loop anew for each block or call died when it ran
out of memory mappings. Both tests run the worker in this process and count
this process's mappings.
"""

import contextlib
import dataclasses
import io
import warnings

import numpy as np
import pymc as pm
import pytest

from pymc_modal import payload, worker
from pymc_modal.errors import NotConvergedWarning
from pymc_modal.payload import Job
from pymc_modal.worker import blackjax, numpyro, nutpie

pytestmark = pytest.mark.slow

BLOCKS = 300
# The mappings that allocations and caches may add or drop between two counts; a
# compiled program adds hundreds.
SLACK = 100


def _mappings() -> int:
    with open("/proc/self/maps") as maps:
        return sum(1 for _ in maps)


class _Mappings(io.StringIO):
    """Standard error that counts this process's mappings as each block reports itself."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: list[int] = []

    def write(self, text: str) -> int:
        if text.startswith("draws "):
            self.counts.append(_mappings())
        return super().write(text)


@pytest.fixture
def tiny():
    with pm.Model() as model:
        mu = pm.Normal("mu", 0, 1)
        pm.Normal("y", mu, 1, observed=np.array([0.1, -0.3, 0.5]))
    return model


@pytest.mark.parametrize(
    ("sampler", "chains", "sample"),
    [
        ("numpyro", 2, numpyro.sample),
        ("chees", 4, blackjax.sample),
        ("nutpie", 2, nutpie.sample),
    ],
)
def test_a_run_of_hundreds_of_blocks_keeps_its_mappings_flat(
    tiny, settings, sampler, chains, sample
):
    settings = dataclasses.replace(
        settings,
        sampler=sampler,
        chains=chains,
        draws=2,
        target_ess=10**9,
        max_draws=2 * BLOCKS,
        chain_method="vectorized",
    )
    stderr = _Mappings()
    with contextlib.redirect_stderr(stderr), warnings.catch_warnings():
        warnings.simplefilter("ignore", NotConvergedWarning)
        result = sample(Job(tiny, settings, [], None))

    assert result.convergence.blocks == BLOCKS == len(stderr.counts)
    assert stderr.counts[-1] - stderr.counts[9] < SLACK, stderr.counts[9::30]


def test_a_warm_worker_s_hundreds_of_calls_keep_its_mappings_flat(tiny, settings):
    settings = dataclasses.replace(settings, draws=5, tune=5, chains=2)
    counts = []
    for seed in range(200):
        job = payload.encode_job(tiny, dataclasses.replace(settings, seed=seed), fingerprint="m")
        answer = worker.run(job)
        counts.append(_mappings())

    assert payload.decode_result(answer, "here").posterior["mu"].shape == (2, 5)
    assert counts[-1] - counts[9] < SLACK, counts[9::20]
