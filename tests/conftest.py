import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pymc as pm
import pytest

# PyMC's JAX module asks JAX for many CPU devices when it is imported, which must come
# before anything starts JAX: pm.sample, the reference the tests compare with, would
# otherwise find one device and run "parallel" chains one after another.
import pymc.sampling.jax  # noqa: F401  isort: skip

# Point Modal at an empty config before anything imports modal.config, so no
# test can find real credentials or reach Modal's servers.
_EMPTY_MODAL_CONFIG = Path(tempfile.mkdtemp(prefix="pymc-modal-tests-"), "modal.toml")
_EMPTY_MODAL_CONFIG.write_text("")
os.environ["MODAL_CONFIG_PATH"] = str(_EMPTY_MODAL_CONFIG)
# Nor the user's cache: module-scoped fixtures run before the per-test cache below.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="pymc-modal-tests-cache-")


# JAX's compiled programs, keyed by the program itself, are shared by the session's tests.
_JAX_CACHE = Path(tempfile.mkdtemp(prefix="pymc-modal-tests-jax-"))


@pytest.fixture(autouse=True)
def _own_cache(monkeypatch, tmp_path):
    """Each test stores data blobs and runs in a cache of its own, never the user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "cache" / "pymc-modal").mkdir(parents=True)
    (tmp_path / "cache" / "pymc-modal" / "jax").symlink_to(_JAX_CACHE)


def make_data_model(size: int = 300_000) -> pm.Model:
    """A model whose data (2.4 MB of x, 2.4 MB of y) is large enough to travel as blobs."""
    rng = np.random.default_rng(1)
    x_values = rng.normal(size=size)
    with pm.Model() as model:
        x = pm.Data("x", x_values)
        slope = pm.Normal("slope", 0, 1)
        pm.Normal("y", slope * x, 1.0, observed=2.0 * x_values + rng.normal(size=size))
    return model


@pytest.fixture(autouse=True)
def _modal_app_stopped():
    """No test finds the Modal app an earlier one left running (local warm workers may stay)."""
    yield
    modal_backend = sys.modules.get("pymc_modal.backends.modal")
    if modal_backend is not None:
        modal_backend.close()


@pytest.fixture
def nothing_shipped(monkeypatch):
    """Fail the test if a backend stores data or starts a worker."""
    from pymc_modal.backends.local import LocalBackend
    from pymc_modal.backends.modal import ModalBackend

    def refuse(*args, **kwargs):
        raise AssertionError("a job was shipped although it should have been refused first")

    for backend in (LocalBackend, ModalBackend):
        monkeypatch.setattr(backend, "store_blobs", refuse)
        monkeypatch.setattr(backend, "submit", refuse)


# Every environment variable by which Modal's client could authenticate.
MODAL_AUTH = (
    "MODAL_TOKEN_ID",
    "MODAL_TOKEN_SECRET",
    "MODAL_IS_REMOTE",
    "MODAL_OAUTH_REFRESH_TOKEN",
    "MODAL_OAUTH_CLIENT_ID",
    "MODAL_OAUTH_CLIENT_SECRET",
    "MODAL_OAUTH_JWT_KEY",
)


@pytest.fixture(autouse=True)
def _no_modal_credentials(monkeypatch):
    for name in (*MODAL_AUTH, "MODAL_PROFILE", "PYMC_MODAL_BACKEND"):
        monkeypatch.delenv(name, raising=False)


def make_model(n_groups: int = 4, seed: int = 0) -> pm.Model:
    """A small hierarchical model with coords, pm.Data, a Deterministic and a Potential.

    The model is built inside a function, so its pieces are closures over local
    variables, as in most users' code.
    """
    rng = np.random.default_rng(seed)
    group = np.repeat(np.arange(n_groups), 5)
    x_values = rng.normal(size=group.size)
    y_values = 0.5 + 1.5 * x_values + rng.normal(scale=0.5, size=group.size)
    coords = {"group": [f"g{i}" for i in range(n_groups)], "obs": np.arange(group.size)}
    with pm.Model(coords=coords) as model:
        x = pm.Data("x", x_values, dims="obs")
        mu = pm.Normal("mu", 0, 1)
        sigma = pm.HalfNormal("sigma", 1)
        offset = pm.Normal("offset", 0, 1, dims="group")
        effect = pm.Deterministic("effect", mu + sigma * offset, dims="group")
        slope = pm.Normal("slope", 0, 2)
        pm.Potential("slope_penalty", -0.5 * slope**2)
        pm.Normal("y", effect[group] + slope * x, 0.5, observed=y_values, dims="obs")
    return model


@pytest.fixture
def model() -> pm.Model:
    return make_model()


@pytest.fixture
def settings():
    """Settings of a short single-chain run."""
    from pymc_modal.job import SampleSettings

    return SampleSettings(
        draws=10,
        tune=10,
        chains=1,
        target_accept=0.8,
        seed=1,
        initvals=None,
        var_names=None,
        progressbar=False,
        log_likelihood=False,
        float_x="float64",
    )


@pytest.fixture
def modal_server(monkeypatch, tmp_path):
    """Modal's servers, doubled (see ``modal_double``), with credentials that look real."""
    from modal_double import Server

    from pymc_modal.backends import modal as modal_backend

    monkeypatch.setenv("MODAL_TOKEN_ID", "ak-double")
    monkeypatch.setenv("MODAL_TOKEN_SECRET", "as-double")
    server = Server(tmp_path / "modal", monkeypatch)
    yield server
    modal_backend.close()
    server.stop()


@pytest.fixture
def in_process(monkeypatch):
    """``backend="local"`` runs each job in this process (see ``fake_backend``); counts them."""
    from fake_backend import InProcess

    from pymc_modal import backends

    fake = InProcess()
    monkeypatch.setitem(backends._opened, "local", fake)
    return fake


@pytest.fixture(autouse=True)
def _worker_processes_are_slow(request, monkeypatch):
    """A test that starts a worker process (local, or a doubled Modal container) is ``slow``."""
    if request.node.get_closest_marker("slow") is not None:
        return

    def refuse(*args, **kwargs):
        raise AssertionError(
            f"{request.node.name} starts a worker process: mark it @pytest.mark.slow, or use "
            "the in_process fixture"
        )

    monkeypatch.setattr("pymc_modal.backends.local._worker_command", refuse)
    monkeypatch.setattr("modal_double.Container.__init__", refuse)
