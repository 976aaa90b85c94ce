"""Backend choice: keyword over context manager over environment over "auto"."""

import logging

import numpy as np
import pytest

import pymc_modal
from pymc_modal import backends
from pymc_modal.config import resolve
from pymc_modal.errors import InvalidOptionError


def test_default_is_auto():
    assert resolve().backend == "auto"


def test_environment_then_context_then_keyword(monkeypatch):
    monkeypatch.setenv("PYMC_MODAL_BACKEND", "modal")
    assert resolve().backend == "modal"
    with pymc_modal.options(backend="local") as current:
        assert current.backend == "local"
        assert resolve().backend == "local"
        assert resolve(backend="modal").backend == "modal"
    assert resolve().backend == "modal"


def test_nested_blocks_restore_outer_values():
    with pymc_modal.options(backend="local", max_result_bytes=10):
        with pymc_modal.options(max_result_bytes=20):
            assert resolve() == resolve(backend="local", max_result_bytes=20)
        assert resolve().max_result_bytes == 10


def test_invalid_values_and_names_are_refused(monkeypatch):
    with (
        pytest.raises(InvalidOptionError, match="backend='gpu'"),
        pymc_modal.options(backend="gpu"),
    ):
        pass
    with pytest.raises(InvalidOptionError, match="Unknown option"), pymc_modal.options(gpus=2):
        pass
    monkeypatch.setenv("PYMC_MODAL_BACKEND", "nowhere")
    with pytest.raises(InvalidOptionError, match="nowhere"):
        resolve()


def test_auto_is_local_without_credentials_and_says_why_once(caplog):
    backends._say_why_local.cache_clear()
    with caplog.at_level(logging.INFO, logger="pymc_modal"):
        assert backends.choose("auto").name == "local"
        assert backends.choose("auto").name == "local"
    messages = [r.getMessage() for r in caplog.records if "modal setup" in r.getMessage()]
    assert len(messages) == 1


@pytest.mark.parametrize(
    "environment",
    [
        {"MODAL_TOKEN_ID": "ak-test", "MODAL_TOKEN_SECRET": "as-test"},
        # OAuth, with a client secret or a JWT key, as Modal's client takes it
        {"REFRESH_TOKEN": "rt", "CLIENT_ID": "ci", "CLIENT_SECRET": "cs"},
        {"REFRESH_TOKEN": "rt", "CLIENT_ID": "ci", "JWT_KEY": "jk"},
        # inside a Modal container, which authenticates as the container
        {"MODAL_IS_REMOTE": "1"},
    ],
)
def test_auto_is_modal_wherever_modal_s_client_authenticates(monkeypatch, environment):
    for name, value in environment.items():
        monkeypatch.setenv(name if name.startswith("MODAL_") else f"MODAL_OAUTH_{name}", value)
    assert backends.choose("auto").name == "modal"


@pytest.mark.parametrize(
    "environment",
    [
        {"MODAL_TOKEN_ID": "ak-test"},
        {"REFRESH_TOKEN": "rt", "CLIENT_ID": "ci"},
        {"REFRESH_TOKEN": "rt", "CLIENT_ID": "ci", "CLIENT_SECRET": "cs", "JWT_KEY": "jk"},
    ],
)
def test_incomplete_credentials_are_none(monkeypatch, environment):
    for name, value in environment.items():
        monkeypatch.setenv(name if name.startswith("MODAL_") else f"MODAL_OAUTH_{name}", value)
    assert backends.choose("auto").name == "local"


@pytest.mark.parametrize("seconds", [1, 3601, 2.5])
def test_scaledown_window_outside_modal_limits_is_refused(seconds):
    with pytest.raises(InvalidOptionError, match=f"scaledown_window={seconds}"):
        resolve(scaledown_window=seconds)
    assert resolve(scaledown_window=2).scaledown_window == 2


def test_every_count_takes_numpy_integers_as_sample_does_and_refuses_the_rest():
    options = resolve(workers=np.int64(2), timeout=np.int32(600), retries=np.int64(1))
    assert (options.workers, options.timeout, options.retries) == (2, 600, 1)
    assert all(type(value) is int for value in (options.workers, options.timeout))
    with pytest.raises(InvalidOptionError, match=r"workers=2.0: pass a whole number of workers"):
        resolve(workers=2.0)
    with pytest.raises(InvalidOptionError, match=r"workers=True: pass a whole number"):
        resolve(workers=True)
    with pytest.raises(InvalidOptionError, match=r"retries=11: .* retries from 0 to 10"):
        resolve(retries=11)
    with pytest.raises(InvalidOptionError, match=r"timeout=0: pass a whole number of seconds"):
        resolve(timeout=0)


def test_no_gpu_is_asked_for_by_cpu_by_none_in_a_block_and_by_name(monkeypatch):
    with pymc_modal.options(cpu=16):
        with pymc_modal.cpu() as inner:
            assert (inner.gpu, inner.cpu) == (None, 16.0)  # the enclosing block's cores
        with pymc_modal.cpu(2, memory=4096) as inner:
            assert (inner.gpu, inner.cpu, inner.memory) == (None, 2.0, 4096)
    with pymc_modal.options(gpu=None):
        assert resolve().gpu is None
        assert resolve(gpu=None).gpu is None  # a keyword's None: as configured
        assert resolve(gpu="H100").gpu == "H100"
    assert resolve(gpu="none").gpu is None
    monkeypatch.setenv("PYMC_MODAL_GPU", "None")
    assert resolve().gpu is None
    with pytest.raises(InvalidOptionError, match="or gpu=None for a container with CPU cores"):
        resolve(gpu=[])
