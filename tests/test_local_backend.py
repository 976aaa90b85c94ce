"""The local backend: a fresh process, output relayed live, errors with their traceback, Ctrl-C."""

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
from pymc.exceptions import SamplingError

import pymc_modal

pytestmark = pytest.mark.slow


def test_worker_exception_arrives_with_its_remote_traceback(model):
    with pytest.raises(SamplingError) as info:
        pymc_modal.sample(
            model=model, initvals={"sigma": -1.0}, draws=5, tune=5, chains=1, backend="local"
        )
    notes = "".join(getattr(info.value, "__notes__", []))
    assert "Traceback from the worker (this machine)" in notes
    assert "pymc_modal/worker.py" in notes


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


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_ctrl_c_stops_the_worker_and_leaves_nothing_running():
    script = textwrap.dedent(
        """
        import pymc as pm, pymc_modal
        with pm.Model():
            pm.Normal("x", 0, 1)
            pymc_modal.sample(draws=10_000_000, tune=10, chains=1, backend="local")
        """
    )
    # NumPyro turns its progress bar off when CI (or PYTEST_XDIST_WORKER) is set.
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_XDIST_WORKER")}
    client = subprocess.Popen(
        [sys.executable, "-c", script],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
        env=env,
    )
    try:
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
        assert workers, "no worker process found"
        os.kill(client.pid, signal.SIGINT)
        client.stderr.read()
        assert client.wait(timeout=60) != 0
        assert not any(_alive(pid) for pid in workers)
    finally:
        if client.poll() is None:
            os.killpg(client.pid, signal.SIGKILL)


def test_local_result_is_deterministic_for_a_seed():
    with pm.Model():
        pm.Normal("x", 0, 1, shape=2)
        first = pymc_modal.sample(draws=20, tune=20, chains=1, random_seed=5, backend="local")
        second = pymc_modal.sample(draws=20, tune=20, chains=1, random_seed=5, backend="local")
    np.testing.assert_array_equal(first.posterior["x"].values, second.posterior["x"].values)
