"""The Modal backend, with Modal mocked at its network boundary only.

The App, Image and Function objects are Modal's own, built offline. Only
``App.run``, ``Function.with_options`` (recorded, then passed to the real one),
``Function.spawn``, ``Function.map``, ``FunctionCall.from_id`` and the
volumes' ``listdir``, ``batch_upload``, ``read_file`` and ``commit`` are
replaced; the fake calls run the real worker on the very bytes the client
sent, with the volumes mounted as local folders.
"""

import contextlib
import importlib.metadata
import json
import platform
import subprocess
import sys
import types

import modal
import modal.exception
import numpy as np
import pymc as pm
import pytest

import pymc_modal
from pymc_modal import backends, payload, pricing
from pymc_modal.backends import modal as modal_backend
from pymc_modal.config import resolve
from pymc_modal.errors import (
    InvalidOptionError,
    MissingCredentialsError,
    PymcModalError,
    VersionMismatchError,
)


class FakeCall:
    def __init__(self, answer=None, error=None):
        self.answer, self.error, self.cancelled = answer, error, []
        self.object_id = f"fc-{id(self)}"

    def get(self, timeout=None):
        if self.error is not None:
            raise self.error
        return self.answer

    def cancel(self, terminate_containers=False):
        self.cancelled.append(terminate_containers)


class FakeModal:
    """Records what reaches Modal's network boundary; runs the worker in process."""

    def __init__(self, monkeypatch, mount):
        self.runs, self.options, self.sent, self.calls, self.mapped = [], [], [], [], []
        self.error, self.stopped, self.detached = None, [], []
        real_with_options = modal.Function.with_options

        @contextlib.contextmanager
        def run(app, *args, detach=False, **kwargs):
            self.runs.append(app)
            self.detached.append(detach)
            try:
                yield app
            except KeyboardInterrupt:
                # As modal.runner does: it stops the app and does not re-raise.
                pass
            finally:
                self.stopped.append(app)

        def with_options(function, **kwargs):
            self.options.append(kwargs)
            return real_with_options(function, **kwargs)

        def spawn(function, *args, **kwargs):
            assert not kwargs
            self.sent.append(args)
            call = FakeCall(error=self.error)
            if self.error is None:
                call.answer = modal_backend.run_job(*args)
            self.calls.append(call)
            return call

        def map(function, inputs, **kwargs):
            assert not kwargs
            self.mapped.append(list(inputs))
            for job in self.mapped[-1]:
                if self.error is not None:
                    raise self.error
                yield modal_backend.run_job(job)

        @contextlib.contextmanager
        def batch_upload(volume, *args, **kwargs):
            yield types.SimpleNamespace(
                put_file=lambda file, path: self.uploaded.append((path, file.read()))
            )
            for path, data in self.uploaded:
                (self.mount / path.lstrip("/")).write_bytes(data)

        def listdir(volume, path, *args, **kwargs):
            return [types.SimpleNamespace(path=entry.name) for entry in self.mount.iterdir()]

        def read_file(volume, path):
            try:
                return iter([(self.results / path.lstrip("/")).read_bytes()])
            except FileNotFoundError:
                raise FileNotFoundError(path) from None

        def from_id(call_id):
            (call,) = [call for call in self.calls if call.object_id == call_id]
            return call

        # The data and results volumes, as the containers see them mounted.
        self.mount, self.uploaded = mount, []
        self.results = mount.parent / "results"
        self.results.mkdir()
        monkeypatch.setattr(modal_backend, "BLOB_MOUNT", str(mount))
        monkeypatch.setattr(modal_backend, "RESULTS_MOUNT", str(self.results))
        monkeypatch.setattr(modal_backend, "JAX_CACHE_MOUNT", str(mount.parent / "jax-cache"))
        monkeypatch.setattr(modal.Volume, "read_file", read_file)
        monkeypatch.setattr(modal.Volume, "commit", lambda volume: None)
        monkeypatch.setattr(modal.FunctionCall, "from_id", from_id)
        monkeypatch.setattr(modal.Volume, "batch_upload", batch_upload)
        monkeypatch.setattr(modal.Volume, "listdir", listdir)
        monkeypatch.setattr(modal.App, "run", run)
        monkeypatch.setattr(modal.Function, "map", map)
        monkeypatch.setattr(modal.Function, "with_options", with_options)
        monkeypatch.setattr(modal.Function, "spawn", spawn)


@pytest.fixture
def fake_modal(monkeypatch, tmp_path):
    monkeypatch.setenv("MODAL_TOKEN_ID", "ak-fake")
    monkeypatch.setenv("MODAL_TOKEN_SECRET", "as-fake")
    mount = tmp_path / "volume"
    mount.mkdir()
    return FakeModal(monkeypatch, mount)


def _run(jobs, options):
    """A waited call's deliveries, through the backend's submit-then-wait."""
    return backends.get("modal").submit(jobs, options).wait()


def _tiny_model():
    with pm.Model(coords={"k": ["a", "b"]}) as model:
        pm.Normal("x", 0, 1, dims="k")
    return model


TINY = {"draws": 20, "tune": 20, "chains": 2, "random_seed": 3, "progressbar": False}


@pytest.mark.slow
def test_modal_run_returns_what_the_local_backend_returns(fake_modal, model):
    on_modal = pymc_modal.sample(model=model, backend="modal", **TINY)
    local = pymc_modal.sample(model=model, backend="local", **TINY)

    assert [type(arg) for arg in fake_modal.sent[0]] == [bytes]
    assert len(fake_modal.runs) == 1
    assert fake_modal.options == [
        {"gpu": "A100", "timeout": 7200, "retries": 0, "scaledown_window": 60}
    ]
    for name in local.posterior.data_vars:
        np.testing.assert_array_equal(on_modal.posterior[name].values, local.posterior[name].values)
    assert on_modal.attrs["pymc_modal_where"] == "Modal A100"
    expected = pricing.PRICE_PER_SECOND["A100-40GB"] * on_modal.attrs["pymc_modal_gpu_seconds"]
    assert on_modal.attrs["pymc_modal_cost_usd"] == pytest.approx(expected)
    for phase in ("image", "transfer", "start", "compile", "sample", "return"):
        assert on_modal.attrs[f"pymc_modal_seconds_{phase}"] >= 0


@pytest.mark.slow
def test_workers_fan_out_through_map_and_match_the_local_backend(fake_modal):
    model = _tiny_model()
    fanned = pymc_modal.sample(model=model, backend="modal", workers=2, **{**TINY, "chains": 3})
    local = pymc_modal.sample(model=model, backend="local", workers=2, **{**TINY, "chains": 3})

    assert len(fake_modal.runs) == 1 and fake_modal.sent == []
    assert [[type(job) for job in jobs] for jobs in fake_modal.mapped] == [[bytes, bytes]]
    np.testing.assert_array_equal(fanned.posterior["x"].values, local.posterior["x"].values)
    assert list(fanned.posterior.chain.values) == [0, 1, 2]
    assert fanned.attrs["pymc_modal_workers"] == 2
    # Each container is billed for the whole fan-out: two GPUs for its wall time.
    wall = fanned.attrs["pymc_modal_gpu_seconds"] / 2
    assert fanned.attrs["pymc_modal_cost_usd"] == pytest.approx(
        pricing.PRICE_PER_SECOND["A100-40GB"] * 2 * wall
    )


@pytest.mark.slow
def test_data_is_uploaded_to_the_volume_once(fake_modal):
    from conftest import make_data_model

    first = pymc_modal.sample(model=make_data_model(), backend="modal", **TINY)
    uploads = len(fake_modal.uploaded)
    second = pymc_modal.sample(model=make_data_model(), backend="modal", refit=True, **TINY)

    assert len(fake_modal.runs) == 1  # the second call found the app running
    assert uploads == 2 and len(fake_modal.uploaded) == 2  # x and y, the first time only
    assert first.attrs["pymc_modal_uploaded_bytes"] == first.attrs["pymc_modal_data_bytes"]
    assert second.attrs["pymc_modal_uploaded_bytes"] == 0
    assert all(len(job) < 100_000 for (job,) in fake_modal.sent)
    np.testing.assert_array_equal(first.posterior["slope"].values, second.posterior["slope"].values)


@pytest.mark.slow
def test_detached_run_on_modal_is_fetched_from_the_results_volume(fake_modal):
    run = pymc_modal.sample(model=_tiny_model(), backend="modal", wait=False, **TINY)
    assert fake_modal.detached == [True]
    assert [path.name for path in fake_modal.results.iterdir()] == [f"{run.id}-0"]
    assert run.status() == "running"  # Modal is not asked until a fetch

    fetched = pymc_modal.fetch(run.id)
    waited = pymc_modal.sample(model=_tiny_model(), backend="modal", **TINY)
    np.testing.assert_array_equal(fetched.posterior["x"].values, waited.posterior["x"].values)
    assert fetched.attrs["pymc_modal_where"] == "Modal A100"
    assert fetched.attrs["pymc_modal_cost_usd"] > 0
    assert run.record["cost_usd"] == fetched.attrs["pymc_modal_cost_usd"]


def test_detached_answer_falls_back_to_the_call(fake_modal, tmp_path):
    (tmp_path / "run").mkdir()
    submitted = modal_backend.BACKEND.submit([b"job"], resolve(), detached=tmp_path / "run")
    (fake_modal.results / "run-0").unlink()  # as if the volume had lost it
    again = modal_backend.BACKEND.reattach(submitted.record, tmp_path / "run")
    assert again.wait(block=False) is None
    (delivery,) = again.wait()
    assert delivery.answer == fake_modal.calls[0].answer
    assert (tmp_path / "run" / "answer-0").read_bytes() == delivery.answer


@pytest.mark.slow
def test_a_detached_runs_cost_uses_the_price_the_user_set(fake_modal):
    with pymc_modal.options(price_per_second=1.0):
        run = pymc_modal.sample(model=_tiny_model(), backend="modal", wait=False, **TINY)
    fetched = pymc_modal.fetch(run.id)
    seconds = fetched.attrs["pymc_modal_gpu_seconds"]
    assert fetched.attrs["pymc_modal_cost_usd"] == pytest.approx(seconds)


@pytest.mark.slow
def test_gpu_keyword_reaches_the_call(fake_modal):
    pymc_modal.sample(model=_tiny_model(), backend="modal", gpu="L4", **TINY)
    assert fake_modal.options[-1]["gpu"] == "L4"


def test_gpu_timeout_and_retries_from_the_context_manager(fake_modal):
    with pymc_modal.gpu("H100", timeout=600, retries=2) as options:
        (delivery,) = _run([b"job"], options)
    assert fake_modal.options == [
        {"gpu": "H100", "timeout": 600, "retries": 2, "scaledown_window": 60}
    ]
    assert delivery.where == "Modal H100"
    assert fake_modal.sent == [(b"job",)]


def test_gpu_from_the_environment(fake_modal, monkeypatch):
    monkeypatch.setenv("PYMC_MODAL_GPU", "H200:2")
    _run([b"job"], resolve())
    assert fake_modal.options[-1]["gpu"] == "H200:2"


def test_fallback_list_gets_its_own_app_around_the_same_function(fake_modal):
    options = resolve(gpu=["H100", "A100-80GB"])
    fallback_app, function = modal_backend._function_for(options)
    assert fallback_app is not modal_backend.app
    assert fallback_app.name == modal_backend.APP_NAME
    (delivery,) = _run([b"job"], options)
    assert fake_modal.runs[-1] is not modal_backend.app
    assert delivery.where == "Modal H100 or A100-80GB"


@pytest.mark.slow
def test_map_fans_the_fits_out_through_one_function_map(fake_modal):
    fits = pymc_modal.map([_tiny_model(), _tiny_model()], backend="modal", **TINY)
    assert len(fake_modal.runs) == 1 and fake_modal.sent == []
    assert [len(jobs) for jobs in fake_modal.mapped] == [2]
    assert [fit.attrs["pymc_modal_where"] for fit in fits] == ["Modal A100"] * 2


def test_calls_share_one_running_app_until_the_session_ends(fake_modal):
    with pymc_modal.session(scaledown_window=300) as options:
        _run([b"job"], options)
        _run([b"job"], options)
        assert len(fake_modal.runs) == 1 and fake_modal.stopped == []
    assert fake_modal.stopped == [modal_backend.app]
    assert [options["scaledown_window"] for options in fake_modal.options] == [300, 300]
    _run([b"job"], resolve())
    assert len(fake_modal.runs) == 2


def test_another_fallback_list_stops_the_running_app_and_starts_its_own(fake_modal):
    _run([b"job"], resolve())
    _run([b"job"], resolve(gpu=["H100", "A100"]))
    _run([b"job"], resolve(gpu=["H100", "A100"]))
    assert fake_modal.runs[0] is modal_backend.app and len(fake_modal.runs) == 2
    assert fake_modal.stopped == [modal_backend.app]


@pytest.mark.parametrize("spec", ["X100", "h100:0", "A100:9", "", "H100 please"])
def test_invalid_gpu_never_reaches_modal(fake_modal, spec):
    with pytest.raises(InvalidOptionError, match="gpu="):
        pymc_modal.sample(model=_tiny_model(), backend="modal", gpu=spec)
    assert fake_modal.runs == fake_modal.options == fake_modal.sent == []


@pytest.mark.parametrize("spec", ["T4", "l4", "A10G", "L40S", "A100-80GB", "H100!", "B200+:8"])
def test_gpus_modal_offers_are_accepted(spec):
    assert resolve(gpu=spec).gpu == spec


def test_missing_credentials_say_how_to_set_them(monkeypatch):
    calls = []
    monkeypatch.setattr(modal.App, "run", lambda *a, **k: calls.append(a))
    with pytest.raises(MissingCredentialsError) as info:
        pymc_modal.sample(model=_tiny_model(), backend="modal")
    message = str(info.value)
    assert "modal setup" in message
    assert "MODAL_TOKEN_ID" in message and "MODAL_TOKEN_SECRET" in message
    assert calls == []


def test_remote_exception_keeps_its_traceback(fake_modal, model, settings):
    job = payload.encode_job(model, settings)
    header, body = payload._unpack(job)
    header["manifest"]["pytensor"] = "0.0.1"
    (delivery,) = _run([payload._pack(header, bytes(body))], resolve())
    with pytest.raises(VersionMismatchError) as info:
        payload.decode_result(delivery.answer, delivery.where)
    notes = "".join(info.value.__notes__)
    assert "Traceback from the worker (Modal A100)" in notes
    assert "decode_job" in notes


def test_ctrl_c_cancels_the_remote_call(fake_modal):
    fake_modal.error = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):
        _run([b"job"], resolve())
    assert fake_modal.calls[0].cancelled == [True]
    assert fake_modal.stopped == [modal_backend.app]


def test_ctrl_c_during_a_fan_out_stops_the_app_and_reaches_the_caller(fake_modal):
    fake_modal.error = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):
        _run([b"job", b"job"], resolve())
    assert fake_modal.stopped == [modal_backend.app]


def test_timeout_says_how_to_raise_it(fake_modal):
    fake_modal.error = modal.exception.FunctionTimeoutError("timed out")
    with pytest.raises(PymcModalError, match=r"timeout=SECONDS"):
        _run([b"job"], resolve(timeout=30))
    with pytest.raises(PymcModalError, match=r"timeout=SECONDS"):
        _run([b"job", b"job"], resolve(timeout=30))


def test_oversized_payload_is_refused_before_starting(fake_modal, monkeypatch):
    monkeypatch.setattr(modal_backend, "MAX_PAYLOAD_BYTES", 10)
    with pytest.raises(InvalidOptionError, match="payload"):
        _run([b"short", b"more than ten bytes"], resolve())
    assert fake_modal.runs == []


def test_cost_for_a_gpu_and_duration():
    assert pricing.cost("H100", 100.0) == pytest.approx(0.1097)
    assert pricing.cost("a100", 272.0) == pytest.approx(272 * 0.000583)
    assert pricing.cost("A100-80GB:2", 10.0) == pytest.approx(2 * 10 * 0.000694)
    assert pricing.cost("H100", 100.0, price_per_second=0.001) == pytest.approx(0.1)


def test_image_pins_the_clients_versions(monkeypatch):
    recorded = {}
    real_slim, real_install = modal.Image.debian_slim, modal.Image.uv_pip_install

    def debian_slim(*args, **kwargs):
        recorded["python"] = kwargs.get("python_version")
        return real_slim(*args, **kwargs)

    def uv_pip_install(image, *packages, **kwargs):
        recorded["packages"] = packages
        return real_install(image, *packages, **kwargs)

    monkeypatch.setattr(modal.Image, "debian_slim", debian_slim)
    monkeypatch.setattr(modal.Image, "uv_pip_install", uv_pip_install)
    modal_backend._image()

    assert recorded["python"] == ".".join(platform.python_version_tuple()[:2])
    pins = dict(p.split("==") for p in recorded["packages"])
    for name in ("pymc", "pytensor", "numpy", "arviz", "numpyro", "cloudpickle"):
        assert pins[name] == importlib.metadata.version(name)
    assert pins["jax[cuda12]"] == importlib.metadata.version("jax")


MODAL_PLATFORMS = [
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
]


@pytest.mark.slow
def test_image_requirements_resolve_for_modals_platform(tmp_path):
    """Every pin and the CUDA extra exist as wheels for Linux x86_64 and this Python."""
    platforms = [arg for p in MODAL_PLATFORMS for arg in ("--platform", p)]
    report = tmp_path / "report.json"
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--dry-run",
        "--quiet",
        "--ignore-installed",
        "--only-binary=:all:",
        "--python-version",
        payload.python_version(),
        *platforms,
        "--target",
        str(tmp_path / "target"),
        "--report",
        str(report),
        *modal_backend.requirements(),
    ]
    out = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)
    if out.returncode != 0 and any(
        sign in out.stderr
        for sign in ("NewConnectionError", "Max retries exceeded", "Temporary failure in name")
    ):
        pytest.skip(f"the package index cannot be reached: {out.stderr.strip()[-200:]}")
    assert out.returncode == 0, out.stderr
    names = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
    assert {"pymc", "jax", "jaxlib", "numpyro"} <= names
    assert any(name.startswith("jax-cuda12-plugin") for name in names)


def test_default_gpu_is_a100(fake_modal):
    _run([b"job"], resolve())
    assert fake_modal.options == [
        {"gpu": "A100", "timeout": 7200, "retries": 0, "scaledown_window": 60}
    ]
