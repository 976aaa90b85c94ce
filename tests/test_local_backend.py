"""The local backend: warm worker processes, live output, remote tracebacks, Ctrl-C."""

import dataclasses
import os
import select
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pymc as pm
import pytest

import pymc_modal
from pymc_modal import client, fanout, payload, worker
from pymc_modal.backends import local

pytestmark = pytest.mark.slow


def test_worker_exception_arrives_with_its_remote_traceback(model):
    # NumPyro finds the mass matrix's size wrong only when it starts on the worker.
    wrong_size = {"inverse_mass_matrix": np.ones(2)}
    with pytest.raises(ValueError) as info:
        pymc_modal.sample(model=model, nuts=wrong_size, draws=5, tune=5, chains=1, backend="local")
    notes = "".join(getattr(info.value, "__notes__", []))
    assert "Traceback from the worker (this machine)" in notes
    assert "pymc_modal/worker/__init__.py" in notes


def _children(pid: int) -> list[int]:
    children = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(c) for c in (task / "children").read_text().split()]
    return children


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status


def _start_client() -> subprocess.Popen:
    """A client sampling (for hours) on two local workers, in a session of its own."""
    # Ctrl-C in a terminal is a KeyboardInterrupt, even where these tests run as a
    # background job, whose children inherit SIGINT ignored.
    script = textwrap.dedent(
        """
        import signal
        signal.signal(signal.SIGINT, signal.default_int_handler)
        import pymc as pm, pymc_modal
        with pm.Model():
            pm.Normal("x", 0, 1)
            pymc_modal.sample(draws=10_000_000, tune=10, chains=2, workers=2, backend="local")
        """
    )
    # NumPyro turns its progress bar off when CI (or PYTEST_XDIST_WORKER) is set.
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_XDIST_WORKER")}
    return subprocess.Popen(
        [sys.executable, "-c", script],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
        env=env,
    )


def _workers_once_sampling(client: subprocess.Popen) -> list[int]:
    # The worker's progress bar (carriage returns, no newlines) reaches the
    # client's terminal while it runs.
    seen = b""
    while b"it/s" not in seen:
        ready, _, _ = select.select([client.stderr], [], [], 300)
        assert ready, f"no progress from the worker in 300 s:\n{seen.decode()}"
        chunk = os.read(client.stderr.fileno(), 4096)
        assert chunk, f"client ended early:\n{seen.decode()}"
        seen += chunk
    workers = _children(client.pid)
    assert len(workers) == 2, f"expected two worker processes, found {workers}"
    return workers


def _ended_within(pid: int, seconds: float) -> bool:
    try:
        handle = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([handle], [], [], seconds)[0])
    finally:
        os.close(handle)


def _read_until(client: subprocess.Popen, text: bytes) -> None:
    seen = b""
    while text not in seen:
        ready, _, _ = select.select([client.stderr], [], [], 60)
        assert ready, f"the client did not say {text!r} in 60 s:\n{seen.decode()}"
        chunk = os.read(client.stderr.fileno(), 4096)
        assert chunk, f"client ended early:\n{seen.decode()}"
        seen += chunk


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="needs Linux /proc and pidfd_open")
def test_a_second_ctrl_c_stops_the_workers_and_leaves_nothing_running():
    client = _start_client()
    try:
        workers = _workers_once_sampling(client)
        os.kill(client.pid, signal.SIGINT)  # asks the runs to end after their block
        _read_until(client, b"Press Ctrl-C again to stop at once")
        os.kill(client.pid, signal.SIGINT)
        client.stderr.read()
        assert client.wait(timeout=60) != 0
        assert not any(_alive(pid) for pid in workers)
    finally:
        if client.poll() is None:
            os.killpg(client.pid, signal.SIGKILL)


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="needs Linux /proc and pidfd_open")
def test_a_killed_client_leaves_no_worker_running():
    client = _start_client()
    try:
        workers = _workers_once_sampling(client)
        os.kill(client.pid, signal.SIGKILL)
        client.wait(timeout=60)
        assert all(_ended_within(pid, 60) for pid in workers)
    finally:
        if client.poll() is None:
            os.killpg(client.pid, signal.SIGKILL)


def test_a_warm_worker_keeps_its_process_and_compiled_model_and_gives_the_same_draws():
    local.BACKEND.close()
    with pm.Model():
        pm.Normal("x", 0, 1, shape=2)
        tiny = {"draws": 20, "tune": 20, "chains": 1, "backend": "local", "refit": True}
        first = pymc_modal.sample(random_seed=5, **tiny)
        (warm,) = local._warm
        second = pymc_modal.sample(random_seed=5, **tiny)
        other_seed = pymc_modal.sample(random_seed=6, **tiny)
    assert local._warm == [warm]
    np.testing.assert_array_equal(first.posterior["x"].values, second.posterior["x"].values)
    assert not np.array_equal(second.posterior["x"].values, other_seed.posterior["x"].values)
    compiled = [run.attrs["pymc_modal_seconds_compile"] for run in (first, second, other_seed)]
    assert compiled[1] < compiled[0] / 4 and compiled[2] < compiled[0] / 4, compiled


def test_a_warm_worker_ends_after_its_scaledown_window_or_with_the_session(model):
    tiny = {"model": model, "draws": 5, "tune": 5, "chains": 1, "backend": "local"}
    local.BACKEND.close()
    with pymc_modal.options(scaledown_window=2):
        pymc_modal.sample(**tiny)
    (warm,) = local._warm
    assert warm.retirement.interval == 2
    warm.retirement.join(timeout=30)
    assert warm.process.wait(timeout=30) == 0 and local._warm == []

    with pymc_modal.session():
        pymc_modal.sample(random_seed=1, **tiny)
        (warm,) = local._warm
    assert local._warm == [] and warm.process.wait(timeout=30) == 0


def test_chains_of_several_workers_are_each_workers_own_run(model, settings):
    merged = pymc_modal.sample(
        model=model,
        draws=15,
        tune=15,
        chains=3,
        random_seed=11,
        workers=2,
        backend="local",
        progressbar=False,
    )
    # The same split, each share sampled here by the worker function itself.
    run = dataclasses.replace(settings, chains=3, draws=15, tune=15, seed=client._jax_seed(11, 3))
    parts = [
        payload.decode_result(worker.run(payload.encode_job(model, share)), "here")
        for share in fanout.split(run, 2)
    ]
    assert [part.posterior["mu"].shape[0] for part in parts] == [2, 1]
    expected = np.concatenate([part.posterior["mu"] for part in parts])
    np.testing.assert_array_equal(merged.posterior["mu"].values, expected)
    assert list(merged.posterior.chain.values) == [0, 1, 2]


def test_data_already_stored_is_not_stored_again(tmp_path):
    from conftest import make_data_model

    runs = [
        pymc_modal.sample(
            model=make_data_model(),
            draws=10,
            tune=10,
            chains=1,
            random_seed=2,
            backend="local",
            refit=True,
        )
        for _ in range(2)
    ]
    first, second = (run.attrs for run in runs)
    assert first["pymc_modal_data_bytes"] > 4_000_000
    assert first["pymc_modal_uploaded_bytes"] == first["pymc_modal_data_bytes"]
    assert second["pymc_modal_uploaded_bytes"] == 0
    assert second["pymc_modal_payload_bytes"] < 100_000
    # Nor does the data come back: observed and constant data are the client's own.
    assert second["pymc_modal_returned_bytes"] < 100_000
    np.testing.assert_array_equal(
        runs[1].constant_data["x"].values, make_data_model()["x"].get_value()
    )
    assert runs[1].observed_data["y"].size == 300_000
    stored = list((tmp_path / "cache" / "pymc-modal" / "blobs").glob("*/*"))
    assert len(stored) == 2 and all(path.name.startswith(path.parent.name) for path in stored)
    assert sum(path.stat().st_size for path in stored) == first["pymc_modal_data_bytes"]
    np.testing.assert_array_equal(
        runs[0].posterior["slope"].values, runs[1].posterior["slope"].values
    )
