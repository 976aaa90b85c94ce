"""Detached runs: start, lose the client, fetch from anywhere; and the command line."""

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pymc as pm
import pytest

import pymc_modal
from pymc_modal import runs
from pymc_modal.errors import RunNotFoundError, WorkerError

SCRIPT = textwrap.dedent(
    """
    import signal, pymc as pm, pymc_modal
    with pm.Model(coords={"k": ["a", "b"]}):
        pm.Normal("x", 0, 1, dims="k")
        run = pymc_modal.sample(
            draws=40, tune=40, chains=2, workers=2, random_seed=7, backend="local", wait=False
        )
    print(run.id, flush=True)
    signal.pause()  # until killed, like a laptop whose lid is closed
    """
)


@pytest.mark.slow
def test_detached_run_survives_its_client_and_is_fetched_from_another_process(tmp_path):
    client_process = subprocess.Popen(
        [sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, text=True
    )
    run_id = client_process.stdout.readline().strip()
    client_process.send_signal(signal.SIGKILL)
    client_process.wait()

    saved = tmp_path / "saved.nc"
    fetched = subprocess.run(
        [sys.executable, "-m", "pymc_modal", "fetch", run_id, "-o", str(saved)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert fetched.returncode == 0, fetched.stderr
    assert f"Saved run {run_id}" in fetched.stdout

    first, second = pymc_modal.fetch(run_id), pymc_modal.fetch(run_id)
    np.testing.assert_array_equal(first.posterior["x"].values, second.posterior["x"].values)
    assert list(first.posterior["x"].coords["k"].values) == ["a", "b"]
    assert first.attrs["pymc_modal_run_id"] == run_id
    with pm.Model(coords={"k": ["a", "b"]}):
        pm.Normal("x", 0, 1, dims="k")
        waited = pymc_modal.sample(
            draws=40, tune=40, chains=2, workers=2, random_seed=7, backend="local"
        )
    np.testing.assert_array_equal(first.posterior["x"].values, waited.posterior["x"].values)

    # ArviZ's own netCDF form: it opens without pymc_modal.
    opened = subprocess.run(
        [sys.executable, "-c", f"import xarray; print(xarray.open_datatree({str(saved)!r}))"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert opened.returncode == 0, opened.stderr
    assert "posterior" in opened.stdout

    listed = subprocess.run(
        [sys.executable, "-m", "pymc_modal", "runs"], capture_output=True, text=True, check=True
    )
    assert run_id in listed.stdout and "done" in listed.stdout


@pytest.mark.slow
def test_a_failed_run_raises_the_workers_exception(model):
    run = pymc_modal.sample(
        model=model,
        nuts={"inverse_mass_matrix": np.ones(2)},  # the wrong size, found on the worker
        draws=5,
        tune=5,
        chains=1,
        backend="local",
        wait=False,
    )
    with pytest.raises(ValueError) as info:
        pymc_modal.fetch(run.id)
    assert "Traceback from the worker (this machine)" in "".join(info.value.__notes__)
    assert run.status() == "failed"


@pytest.mark.slow
def test_a_worker_that_dies_is_reported_with_its_log(model):
    run = pymc_modal.sample(
        model=model, draws=10_000_000, tune=10, chains=1, backend="local", wait=False
    )
    with pytest.raises(WorkerError, match="still running"):
        pymc_modal.fetch(run.id, wait=False)
    (pid,) = run.record["pids"]
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(WorkerError, match="ended without an answer.*log-"):
        pymc_modal.fetch(run.id)


@pytest.mark.slow
def test_unknown_run_says_how_to_list_runs():
    with pytest.raises(RunNotFoundError, match="python -m pymc_modal runs"):
        pymc_modal.fetch("20990101-000000-abcdef")
    out = subprocess.run(
        [sys.executable, "-m", "pymc_modal", "fetch", "nope"], capture_output=True, text=True
    )
    assert out.returncode == 1 and "No run 'nope'" in out.stderr
    assert runs.list_runs() == []
