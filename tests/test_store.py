"""An identical call returns its stored result without a worker; refit=True samples anew."""

import logging
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import make_model

import pymc_modal
from pymc_modal import payload, store
from pymc_modal.backends import local
from pymc_modal.preflight import check

TINY = {"draws": 10, "tune": 10, "chains": 1, "backend": "local", "progressbar": False}


@pytest.fixture
def runs_counted(monkeypatch):
    """The local backend's runs, counted."""
    counted = []
    real_submit = local.LocalBackend.submit

    def submit(backend, jobs, options, detached=None):
        counted.append(len(jobs))
        return real_submit(backend, jobs, options, detached)

    monkeypatch.setattr(local.LocalBackend, "submit", submit)
    return counted


def test_identical_call_returns_stored_result(model, runs_counted, caplog):
    first = pymc_modal.sample(model=model, random_seed=4, **TINY)
    with caplog.at_level(logging.INFO, logger="pymc_modal"):
        second = pymc_modal.sample(model=make_model(), random_seed=4, **TINY)
    assert runs_counted == [1]
    assert "stored result of an identical run" in caplog.text
    assert "refit=True" in caplog.text
    np.testing.assert_array_equal(first.posterior["mu"].values, second.posterior["mu"].values)
    assert store.STORED_AT in second.attrs and store.STORED_AT not in first.attrs
    assert list(second.posterior["effect"].coords["group"].values) == ["g0", "g1", "g2", "g3"]


def test_refit_samples_again(model, runs_counted):
    pymc_modal.sample(model=model, random_seed=4, **TINY)
    again = pymc_modal.sample(model=model, random_seed=4, refit=True, **TINY)
    assert runs_counted == [1, 1]
    assert store.STORED_AT not in again.attrs


@pytest.mark.parametrize(
    "change",
    [
        {"random_seed": 5},
        {"random_seed": 4, "draws": 11},
        {"random_seed": 4, "model": make_model(seed=1)},  # the same graph, other data
        {"random_seed": None},
    ],
)
def test_any_difference_samples_again(model, runs_counted, change):
    pymc_modal.sample(model=model, random_seed=4, **TINY)
    pymc_modal.sample(**{"model": model, **TINY, **change})
    assert runs_counted == [1, 1]


def test_failed_run_is_not_stored():
    failure = payload.encode_failure(ValueError("no"))
    store.save("k", [payload.encode_result({}), failure], {"pymc_modal_workers": 2})
    assert store.load("k") is None
    store.save("k", [payload.encode_result({})], {"pymc_modal_workers": 1})
    assert store.load("k")[1]["pymc_modal_workers"] == 1


def test_fingerprint_is_the_same_in_another_process(settings):
    code = textwrap.dedent(
        """
        import sys
        sys.path.insert(0, "tests")
        from conftest import make_model
        from pymc_modal.job import SampleSettings
        from pymc_modal.preflight import check
        settings = SampleSettings(**{settings!r})
        print(check(make_model(), settings, 10**9).fingerprint)
        """
    ).format(settings=dict(settings.__dict__))
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()[-1]
    assert check(make_model(), settings, 10**9).fingerprint == other
    assert check(make_model(seed=1), settings, 10**9).fingerprint != other
