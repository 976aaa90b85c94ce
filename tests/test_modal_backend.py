"""The Modal backend against Modal's own client code, with only its servers doubled.

See ``modal_double``: apps run through Modal's real ``App.run``, jobs run in
container processes that import this package from the image's mount, and
volumes keep Modal's consistency model.
"""

import importlib.metadata
import json
import logging
import platform
import subprocess
import sys
import warnings

import modal
import modal.app
import modal.exception
import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
import pytest
from modal_double import _raw
from pytensor.graph.op import Op
from pytensor.link.jax.dispatch import jax_funcify

import pymc_modal
from pymc_modal import backends, console, payload, pipeline, pricing
from pymc_modal.backends import modal as modal_backend
from pymc_modal.client import prepare
from pymc_modal.config import resolve
from pymc_modal.errors import (
    GpuNotFoundError,
    InvalidOptionError,
    InvalidTypeError,
    MissingCredentialsError,
    PayloadError,
    RunTimeoutError,
    SlowFloat64Warning,
    VersionMismatchError,
    WorkerError,
)


def _run(jobs, options):
    """A waited call's deliveries, through the backend's submit-then-wait."""
    return backends.get("modal").submit(jobs, options).wait()


def _tiny_model():
    with pm.Model(coords={"k": ["a", "b"]}) as model:
        pm.Normal("x", 0, 1, dims="k")
    return model


# A job's header with no model behind it: the backend reads it, the worker refuses it.
JOB = payload._pack({"kind": "job", "imports": []}, b"")
DEFAULT_OPTIONS = {"gpu": "A100", "timeout": 7200, "retries": 0, "scaledown_window": 60}
# What a small job's container is given: the worker's own 4 GiB and its job, rounded up.
SMALL = {"cpu": 4.0, "memory": 5 * 1024}
RESULTS = "pymc-modal-results"
TINY = {"draws": 20, "tune": 20, "chains": 2, "random_seed": 3, "progressbar": False}


@pytest.mark.slow
def test_modal_run_returns_what_the_local_backend_returns(modal_server, model):
    on_modal = pymc_modal.sample(model=model, backend="modal", **TINY)
    local = pymc_modal.sample(model=model, backend="local", **TINY)

    job, answer_name, timeout, submitted, gpu, output = modal_server.spawned[0]
    assert (type(job), answer_name, timeout, type(submitted)) == (bytes, None, 7200, float)
    assert gpu is True and output is None  # not in a notebook: the output is Modal's log
    (app,) = modal_server.started_apps
    assert app["description"] == "pymc-modal" and not app["detached"]
    assert modal_server.options == [{**DEFAULT_OPTIONS, **SMALL}]
    # The container imported the package from the image's mount, not from this client.
    (container,) = modal_server.containers
    assert (container.cpu, container.memory) == (SMALL["cpu"], SMALL["memory"])
    status, started = container.started
    assert status == "ready" and started["is_local"] is False
    assert started["file"].startswith(str(container.folder))
    for name in local.posterior.data_vars:
        np.testing.assert_array_equal(on_modal.posterior[name].values, local.posterior[name].values)
    assert on_modal.attrs["pymc_modal_where"] == "Modal A100"
    # Billed: the GPU, the CPU and memory asked for, while it worked and kept warm after.
    found = on_modal.attrs
    assert (found["pymc_modal_gpu"], found["pymc_modal_idle_seconds"]) == ("A100", 60)
    assert (found["pymc_modal_cpu"], found["pymc_modal_memory_mib"]) == (4.0, 5 * 1024)
    rate = (
        pricing.PRICE_PER_SECOND["A100-40GB"]
        + 4 * pricing.CPU_PER_CORE_SECOND
        + 5 * pricing.MEMORY_PER_GIB_SECOND
    )
    expected = rate * (found["pymc_modal_gpu_seconds"] + 60)
    assert found["pymc_modal_cost_usd"] == pytest.approx(expected)
    for phase in ("image", "transfer", "start", "compile", "sample", "return"):
        assert on_modal.attrs[f"pymc_modal_seconds_{phase}"] >= 0


@pytest.mark.slow
def test_workers_and_map_fan_out_through_function_map(modal_server):
    fanned = pymc_modal.sample(
        model=_tiny_model(), backend="modal", workers=2, **{**TINY, "chains": 3}
    )
    fits = pymc_modal.map([_tiny_model(), _tiny_model()], backend="modal", **TINY)

    assert len(modal_server.started_apps) == 1 and modal_server.spawned == []
    assert [[type(job) for job in jobs] for jobs in modal_server.mapped] == [[bytes] * 2] * 2
    assert len(modal_server.containers) == 1  # each job found the first's container warm
    assert [fit.attrs["pymc_modal_where"] for fit in fits] == ["Modal A100"] * 2
    assert list(fanned.posterior.chain.values) == [0, 1, 2]
    assert fanned.attrs["pymc_modal_workers"] == 2
    # Each container is billed for the whole fan-out's wall time and its own idle window.
    rate = pricing.Tariff(("A100",), 4.0, 5 * 1024, 60).per_second("A100")
    seconds = fanned.attrs["pymc_modal_gpu_seconds"] + fanned.attrs["pymc_modal_idle_seconds"]
    assert fanned.attrs["pymc_modal_idle_seconds"] == 2 * 60
    assert fanned.attrs["pymc_modal_cost_usd"] == pytest.approx(rate * seconds)


@pytest.mark.slow
def test_the_bill_counts_the_gpu_that_ran_and_its_idle_window(
    modal_server, model, caplog, monkeypatch
):
    monkeypatch.setattr(pipeline, "_said_cpu_cheaper", False)
    caplog.set_level(logging.INFO, logger="pymc_modal")
    modal_server.gpu = "NVIDIA A100-SXM4-80GB"  # the H100s are taken: the fallback runs
    with pymc_modal.gpu(["H100", "A100-80GB"], scaledown_window=30):
        idata = pymc_modal.sample(model=model, backend="modal", **TINY)
        # A model this small: the last line says once that a CPU container may cost less.
        assert caplog.text.count("likely costs less on a CPU container") == 1
        pymc_modal.sample(model=model, backend="modal", refit=True, **TINY)
        assert caplog.text.count("likely costs less on a CPU container") == 1

    found = idata.attrs
    assert found["pymc_modal_device"] == "gpu: NVIDIA A100-SXM4-80GB"
    assert (found["pymc_modal_gpu"], found["pymc_modal_idle_seconds"]) == ("A100-80GB", 30)
    rate = pricing.Tariff(("H100", "A100-80GB"), 4.0, 5 * 1024, 30).per_second("A100-80GB")
    assert rate < pricing.PRICE_PER_SECOND["H100"]
    expected = rate * (found["pymc_modal_gpu_seconds"] + 30)
    assert found["pymc_modal_cost_usd"] == pytest.approx(expected)


def test_data_is_uploaded_once_and_looked_up_by_shard(modal_server, settings):
    from conftest import make_data_model

    blobs = {}
    payload.encode_job(make_data_model(), settings, blobs=blobs)
    backend = backends.get("modal")
    assert backend.store_blobs(blobs) == sum(map(len, blobs.values()))
    assert backend.store_blobs(blobs) == 0
    assert len(modal_server.uploaded) == 2  # x and y, the first time only
    # Only the shards that hold the blobs are listed, never the whole volume.
    assert sorted(modal_server.listed) == sorted(f"/{name[:2]}" for name in [*blobs, *blobs])


@pytest.mark.slow
def test_a_warm_container_sees_data_uploaded_after_it_started(modal_server, settings):
    from conftest import make_data_model

    blobs = {}
    job = payload.encode_job(make_data_model(), settings, blobs=blobs)
    with pymc_modal.session() as options:
        _run([JOB], options)  # the container starts, before the data is uploaded
        backends.get("modal").store_blobs(blobs)
        (delivery,) = _run([job], options)
    assert len(modal_server.containers) == 1
    answer = payload.decode_result(delivery.answer, delivery.where)  # found its data
    assert answer.posterior["slope"].shape == (settings.chains, settings.draws)


def test_two_clients_storing_the_same_blob_both_succeed(modal_server, monkeypatch):
    blobs = {"ab" + "0" * 62: b"data"}
    real_listdir, others = modal.Volume.listdir, []

    def listdir_then_another_client_stores(volume, path, **kwargs):
        try:
            listed = real_listdir(volume, path, **kwargs)
        except modal.exception.NotFoundError:
            listed = None
        if not others:  # another client stores the blob between our listing and our upload
            others.append("listing")
            others.append(modal_backend.BACKEND.store_blobs(blobs))
        if listed is None:
            raise modal.exception.NotFoundError(path)
        return listed

    monkeypatch.setattr(modal.Volume, "listdir", listdir_then_another_client_stores)
    assert modal_backend.BACKEND.store_blobs(blobs) == 4
    assert others == ["listing", 4]
    assert (
        modal_server.volume("pymc-modal-data") / "ab" / ("ab" + "0" * 62)
    ).read_bytes() == b"data"


@pytest.mark.slow
def test_a_failed_cache_commit_still_returns_the_answer(modal_server, caplog):
    modal_server.failing_commits = {"pymc-modal-jax-cache"}
    (delivery,) = _run([JOB], resolve())
    with pytest.raises(VersionMismatchError):  # the job's own answer, not the commit's failure
        payload.decode_result(delivery.answer, delivery.where)


@pytest.mark.slow
def test_no_gpu_in_the_container_is_refused_before_sampling(modal_server, settings):
    modal_server.gpu = False
    (delivery,) = _run([payload.encode_job(_tiny_model(), settings)], resolve())
    with pytest.raises(GpuNotFoundError, match=r"JAX found only \[Cpu"):
        payload.decode_result(delivery.answer, delivery.where)


@pytest.mark.slow
def test_detached_run_on_modal_is_fetched_from_the_results_volume(modal_server):
    capped = {"target_ess": 10**6, "max_cost": 1e-9}  # one block, then stopped by its cost
    with pymc_modal.options(price_per_second=1.0):
        run = pymc_modal.sample(model=_tiny_model(), backend="modal", wait=False, **TINY, **capped)
    (app,) = modal_server.started_apps
    assert app["detached"] and app["description"] == "pymc-modal-detached"
    published = modal_server.volume(RESULTS)
    # Its answer, its checkpoint (stopped by a cap, with its draws), and what it needs kept
    # until it is fetched, for `clean` on any machine.
    answer_and_checkpoint = [f"{run.id}-0", f"{run.id}-needs", "checkpoints"]
    assert sorted(path.name for path in published.iterdir()) == answer_and_checkpoint
    needs = json.loads((published / f"{run.id}-needs").read_text())
    assert needs == {"blobs": [], "checkpoints": run.record["checkpoints"]}
    kept = sorted(path.name for path in run.folder.iterdir())
    # Asking, printing and listing read the answer where it is, and leave it there.
    assert run.status() == "done" and run.id in repr(run)
    assert [found["status"] for found in pymc_modal.runs.list_runs()] == ["done"]
    assert sorted(path.name for path in published.iterdir()) == answer_and_checkpoint
    assert sorted(path.name for path in run.folder.iterdir()) == kept

    with pytest.warns(pymc_modal.errors.NotConvergedWarning, match="stopped at max_cost"):
        fetched = pymc_modal.fetch(run.id)
    # Fetched: the answer is kept in the run's folder and removed there.
    assert [path.name for path in published.iterdir()] == ["checkpoints"]
    assert "fetched" in repr(run)
    assert fetched.posterior["x"].shape == (2, 20, 2)
    assert fetched.attrs["pymc_modal_where"] == "Modal A100"
    # The cost uses the GPU price the user set, over the worker's own seconds and the
    # idle window, with the CPU and memory at Modal's rates.
    attrs = fetched.attrs
    rate = 1.0 + 4 * pricing.CPU_PER_CORE_SECOND + 5 * pricing.MEMORY_PER_GIB_SECOND
    seconds = attrs["pymc_modal_gpu_seconds"]
    assert seconds > 0
    assert attrs["pymc_modal_cost_usd"] == pytest.approx(rate * (seconds + 60))
    assert run.record["cost_usd"] == attrs["pymc_modal_cost_usd"]
    # So does the forecast the worker made of the cost to the target.
    assert (attrs["pymc_modal_stop_reason"], attrs["pymc_modal_blocks"]) == ("max_cost", 1)
    forecast = attrs["pymc_modal_forecast_seconds"] * rate
    assert attrs["pymc_modal_forecast_cost_usd"] == pytest.approx(forecast)


def _detached(folder, jobs=(JOB,), options=None):
    folder.mkdir()
    return modal_backend.BACKEND.submit(list(jobs), options or resolve(), detached=folder)


@pytest.mark.slow
def test_a_detached_run_after_a_waited_one_in_the_same_session(modal_server, tmp_path):
    with pymc_modal.session() as options:
        _run([JOB], options)
        submitted = _detached(tmp_path / "run", options=options)
        assert submitted.wait(block=False) is not None
    assert [app["detached"] for app in modal_server.started_apps] == [False, True]


@pytest.mark.slow
def test_detached_answer_falls_back_to_the_call(modal_server, tmp_path):
    submitted = _detached(tmp_path / "run")
    (modal_server.volume(RESULTS) / "run-0").unlink()  # as if the volume had lost it
    modal_server.calls[submitted.record["calls"][0]].outcome = ("ok", b"from the call")
    again = modal_backend.BACKEND.reattach(submitted.record, tmp_path / "run")
    (delivery,) = again.wait()
    assert delivery.answer == b"from the call"
    assert (tmp_path / "run" / "answer-0").read_bytes() == b"from the call"


@pytest.mark.slow
def test_a_failed_results_commit_still_returns_a_detached_answer(modal_server, tmp_path):
    modal_server.failing_commits = {RESULTS}
    (delivery,) = _detached(tmp_path / "run").wait()
    assert not (modal_server.volume(RESULTS) / "run-0").exists()
    with pytest.raises(VersionMismatchError):  # the job's own answer, from the call
        payload.decode_result(delivery.answer, delivery.where)


@pytest.mark.slow
def test_a_pending_detached_run_is_running_until_it_answers(modal_server, tmp_path):
    modal_server.hold = True
    submitted = _detached(tmp_path / "run")
    again = modal_backend.BACKEND.reattach(submitted.record, tmp_path / "run")
    assert again.wait(block=False) is None
    (delivery,) = again.wait()
    assert delivery.answer == (tmp_path / "run" / "answer-0").read_bytes()


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (modal.exception.RemoteError("container exited"), "without an answer"),
        (modal.exception.FunctionTimeoutError("timed out"), "timeout"),
        (modal.exception.OutputExpiredError(), "7 days"),
    ],
)
def test_a_detached_run_whose_container_died_is_failed_not_running(
    modal_server, tmp_path, error, says
):
    modal_server.call_error = error
    submitted = _detached(tmp_path / "run")
    again = modal_backend.BACKEND.reattach(submitted.record, tmp_path / "run")
    for block in (False, True):
        with pytest.raises(WorkerError, match=says):
            again.wait(block=block)


@pytest.mark.slow
def test_a_dead_detached_run_shows_failed(modal_server):
    modal_server.call_error = modal.exception.RemoteError("container exited")
    run = pymc_modal.sample(model=_tiny_model(), backend="modal", wait=False, **TINY)
    assert run.status() == "failed"
    with pytest.raises(WorkerError, match=run.id):
        pymc_modal.fetch(run.id)


@pytest.mark.slow
def test_ctrl_c_while_starting_a_detached_run_reaches_the_caller(modal_server, tmp_path):
    modal_server.interrupt_spawn = 1
    with pytest.raises(KeyboardInterrupt):
        _detached(tmp_path / "run", jobs=[JOB, JOB])
    (first,) = modal_server.calls.values()
    assert first.cancelled == [True]


@pytest.mark.slow
def test_gpu_timeout_and_retries_from_the_context_manager(modal_server):
    with pymc_modal.gpu("H100", timeout=600, retries=2) as options:
        (delivery,) = _run([JOB], options)
    assert modal_server.options == [
        {
            "gpu": "H100",
            "cpu": None,
            "memory": None,
            "timeout": 600,
            "retries": 2,
            "scaledown_window": 60,
        }
    ]
    assert delivery.where == "Modal H100"
    assert [args[:3] for args in modal_server.spawned] == [(JOB, None, 600)]
    # In a terminal the worker's output is the app's log, which Modal's output shows.
    assert modal_server.started_apps[0]["log_shown"] and not modal_server.builds


def test_an_app_that_fails_to_start_leaves_modal_s_output_off(modal_server, monkeypatch):
    from modal._output.manager import OutputManager

    async def refused(*args, **kwargs):
        raise modal.exception.AuthError("Token ID is malformed")

    monkeypatch.setattr(modal.runner, "_init_local_app_new", refused)
    try:
        _run([JOB], resolve())
    except modal.exception.AuthError as exc:
        kept = exc  # as a notebook keeps the last exception, its traceback and its frames
    assert kept.__traceback__ is not None
    assert not OutputManager.get().is_enabled  # left on, it would print into later cells
    assert modal_backend._running is None


def test_gpu_keyword_and_environment_reach_the_call(modal_server, monkeypatch):
    modal_server.call_error = modal.exception.RemoteError("stop here")
    with pytest.raises(modal.exception.RemoteError):
        pymc_modal.sample(model=_tiny_model(), backend="modal", gpu="L4", **TINY)
    assert modal_server.options[-1]["gpu"] == "L4"
    monkeypatch.setenv("PYMC_MODAL_GPU", "H200:2")
    with pytest.raises(modal.exception.RemoteError):
        _run([JOB], resolve())
    assert modal_server.options[-1]["gpu"] == "H200:2"


@pytest.mark.slow
def test_a_fallback_list_gets_one_app_of_its_own_however_often_it_is_used(modal_server):
    options = resolve(gpu=["H100", "A100-80GB"])
    fallback_app, function = modal_backend._function_for(options)
    assert fallback_app is not modal_backend.app and fallback_app.name == modal_backend.APP_NAME
    apps = len(modal.app._App._all_apps.get(modal_backend.APP_NAME, []))
    for _ in range(3):
        assert modal_backend._function_for(resolve(gpu=["H100", "A100-80GB"]))[0] is fallback_app
    assert len(modal.app._App._all_apps.get(modal_backend.APP_NAME, [])) == apps
    (delivery,) = _run([JOB], options)
    assert delivery.where == "Modal H100 or A100-80GB"


@pytest.mark.slow
def test_a_cpu_container_runs_the_chains_on_its_cores_and_bills_them(modal_server, model):
    with pymc_modal.cpu(6):
        idata = pymc_modal.sample(model=model, backend="modal", **{**TINY, "chains": 6})

    (container,) = modal_server.containers
    assert (container.gpus, container.cpu) == ([], 6.0)
    assert modal_server.spawned[0][4] is False  # no GPU: the worker samples on the CPU
    found = idata.attrs
    assert found["pymc_modal_where"] == "Modal CPU"
    assert found["pymc_modal_device"] == "cpu: cpu"
    assert found["pymc_modal_gpu"] == "none"
    rate = 6 * pricing.CPU_PER_CORE_SECOND + 5 * pricing.MEMORY_PER_GIB_SECOND
    expected = rate * (found["pymc_modal_gpu_seconds"] + 60)
    assert found["pymc_modal_cost_usd"] == pytest.approx(expected)


class _Shown(console.Screen):
    """A notebook's panel, kept here: what it would show."""

    made: list = []

    def __init__(self):
        super().__init__()
        self.made.append(self)

    def write(self, text):
        self.feed(text)


@pytest.mark.slow
def test_in_a_notebook_the_worker_s_output_comes_back_for_one_panel(
    modal_server, model, monkeypatch
):
    monkeypatch.setattr(console, "in_notebook", lambda: True)
    monkeypatch.setattr(console, "Panel", _Shown)
    _Shown.made.clear()
    modal_server.hold = True  # the call runs while it is waited for, as the output is relayed
    pymc_modal.sample(
        model=model,
        backend="modal",
        **{**TINY, "progressbar": True, "target_ess": 10, "max_draws": 40},
    )

    (queue,) = modal_server.queues
    assert modal_server.spawned[0][5] is queue
    # Modal's output covers the image's build, in this cell, not the app's log after it.
    (app,) = modal_server.started_apps
    assert modal_server.builds == [True] and not app["log_shown"]
    (panel,) = _Shown.made
    # The bar's last state, under the block line, as a terminal would show them.
    assert "numpyro warm-up + draws" in panel.text and "100%" in panel.text
    assert "draws 20: min bulk ESS" in panel.text
    assert panel.text.count("warm-up + draws") == 1 and "\x1b" not in panel.text


def test_a_failing_output_queue_sends_the_rest_to_the_container_s_stderr(capfd):
    class Gone:
        def put(self, value):
            raise modal.exception.ConnectionError("Deadline exceeded")

    writer = modal_backend._QueueWriter(Gone())
    for line in ("draws 100\n", "draws 200\n"):
        writer.write(line)
        writer.flush()
    assert capfd.readouterr().err == "draws 100\ndraws 200\n"


@pytest.mark.slow
def test_an_app_modal_stopped_meanwhile_is_started_again(modal_server, caplog):
    _run([JOB], resolve())
    modal_server.lose_heartbeats()  # this machine slept past Modal's heartbeat window
    (delivery,) = _run([JOB], resolve())

    first, second = modal_server.started_apps
    assert first["stopped"] and not second["stopped"]
    assert len(modal_server.containers) == 2 and len(modal_server.spawned) == 2
    assert payload.answer_status(delivery.answer) == "error"  # the worker refused JOB
    assert "starting it again" in caplog.text


@pytest.mark.slow
def test_calls_share_one_running_app_and_container_until_the_session_ends(modal_server):
    with pymc_modal.session(scaledown_window=300) as options:
        _run([JOB], options)
        _run([JOB], options)
        (app,) = modal_server.started_apps
        assert not app["stopped"] and len(modal_server.containers) == 1
    assert app["stopped"]
    assert [options["scaledown_window"] for options in modal_server.options] == [300, 300]
    _run([JOB], resolve())
    assert len(modal_server.started_apps) == 2


@pytest.mark.slow
def test_a_container_idle_past_its_window_is_gone_and_the_next_call_starts_another(
    modal_server, model
):
    # The server's clock runs with this machine's too: the window leaves room for a slow call.
    with pymc_modal.session(scaledown_window=600):
        first = pymc_modal.sample(model=model, backend="modal", **TINY)
        modal_server.pass_time(300)  # within the window: the same warm container
        pymc_modal.sample(model=model, backend="modal", refit=True, **TINY)
        assert len(modal_server.containers) == 1
        modal_server.pass_time(601)  # past it: Modal has scaled the container down
        again = pymc_modal.sample(model=model, backend="modal", refit=True, **TINY)

    first_container, second_container = modal_server.containers
    assert first_container.process.poll() is not None  # stopped
    for name in first.posterior.data_vars:
        np.testing.assert_array_equal(first.posterior[name].values, again.posterior[name].values)


@pytest.mark.slow
@pytest.mark.parametrize("gpu", [["H100", "A100-80GB"], None])
def test_a_variant_app_s_container_gets_the_call_s_resources_and_limits(modal_server, gpu):
    limits = {"timeout": 600, "retries": 2, "scaledown_window": 30}
    with pymc_modal.options(gpu=gpu, cpu=2, memory=2048, **limits):
        _run([JOB], resolve())

    (container,) = modal_server.containers
    assert container.gpus == (gpu or [])
    assert (container.cpu, container.memory) == (2.0, 2048)
    assert (container.timeout, container.retries, container.window) == (600, 2, 30)
    volumes = {"pymc-modal-data", "pymc-modal-results", "pymc-modal-jax-cache"}
    assert set(container.volumes) == volumes


@pytest.mark.slow
def test_another_fallback_list_stops_the_running_app_and_starts_its_own(modal_server):
    _run([JOB], resolve())
    _run([JOB], resolve(gpu=["H100", "A100"]))
    _run([JOB], resolve(gpu=["H100", "A100"]))
    assert [app["stopped"] for app in modal_server.started_apps] == [True, False]


@pytest.mark.parametrize("spec", ["X100", "h100:0", "A100:9", "", "H100 please"])
def test_invalid_gpu_never_reaches_modal(modal_server, spec):
    with pytest.raises(InvalidOptionError, match="gpu="):
        pymc_modal.sample(model=_tiny_model(), backend="modal", gpu=spec)
    assert modal_server.started_apps == modal_server.options == modal_server.spawned == []


@pytest.mark.parametrize("spec", ["T4", "l4", "A10G", "L40S", "A100-80GB", "H100!", "B200+:8"])
def test_gpus_modal_offers_are_accepted(spec):
    assert resolve(gpu=spec).gpu == spec


def test_a_float64_model_bound_for_a_gpu_slow_at_float64_is_warned_of(modal_server):
    def planned(**kwargs):
        return pipeline.plan(prepare(model=_tiny_model(), backend="modal", **{**TINY, **kwargs}))

    with pytest.warns(SlowFloat64Warning, match="L4 at 1/64 of float32's speed"):
        planned(gpu=["A100", "L4"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", SlowFloat64Warning)
        planned(gpu="H100")
        with pytensor.config.change_flags(floatX="float32"):
            planned(gpu="L4")
    assert modal_server.started_apps == []


def test_missing_credentials_say_how_to_set_them(monkeypatch):
    calls = []
    monkeypatch.setattr(modal.App, "run", lambda *a, **k: calls.append(a))
    with pytest.raises(MissingCredentialsError) as info:
        pymc_modal.sample(model=_tiny_model(), backend="modal")
    message = str(info.value)
    assert "modal setup" in message
    assert "MODAL_TOKEN_ID" in message and "MODAL_TOKEN_SECRET" in message
    assert calls == []


@pytest.mark.slow
def test_remote_exception_keeps_its_traceback(modal_server, model, settings):
    job = payload.encode_job(model, settings)
    header, body = payload._unpack(job)
    header["manifest"]["pytensor"] = "0.0.1"
    (delivery,) = _run([payload._pack(header, bytes(body))], resolve())
    with pytest.raises(VersionMismatchError) as info:
        payload.decode_result(delivery.answer, delivery.where)
    notes = "".join(info.value.__notes__)
    assert "Traceback from the worker (Modal A100)" in notes
    assert "decode_job" in notes


def test_a_first_ctrl_c_asks_the_run_to_stop_a_second_cancels_it(modal_server, settings):
    job = payload.encode_job(_tiny_model(), settings, checkpoint="abc")
    modal_server.call_error = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):
        _run([job], resolve())
    # The first asked the worker, through the results volume, to end after its block.
    assert modal_server.uploaded == ["checkpoints/abc/stop"]
    (call,) = modal_server.calls.values()
    assert call.cancelled == [True]
    assert modal_server.started_apps[0]["stopped"]


def test_ctrl_c_during_a_fan_out_stops_the_app_and_reaches_the_caller(modal_server):
    modal_server.call_error = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):
        _run([JOB, JOB], resolve())
    assert modal_server.started_apps[0]["stopped"]


def test_timeout_names_its_attempts_and_says_how_to_raise_it(modal_server):
    modal_server.call_error = modal.exception.FunctionTimeoutError("timed out")
    with pytest.raises(RunTimeoutError, match=r"1 attempt\(s\) \(1 x 30 s .*timeout=SECONDS"):
        _run([JOB], resolve(timeout=30))
    with pytest.raises(RunTimeoutError, match=r"3 attempt\(s\) \(3 x 30 s .*checkpoint is kept"):
        _run([JOB, JOB], resolve(timeout=30, retries=2))


def test_oversized_payload_is_refused_before_starting(modal_server, monkeypatch):
    monkeypatch.setattr(modal_backend, "MAX_PAYLOAD_BYTES", 10)
    with pytest.raises(InvalidOptionError, match="payload"):
        _run([b"short", b"more than ten bytes"], resolve())
    assert modal_server.started_apps == []


def test_the_image_is_built_inside_a_modal_container_too():
    """A user's own Modal function that calls `sample` needs the real image."""
    code = (
        "from modal._runtime.task_lifecycle_manager import _TaskLifecycleManager\n"
        "_TaskLifecycleManager._singleton = object()\n"
        "import modal\n"
        "assert not modal.is_local()\n"
        "from modal._utils.async_utils import synchronizer\n"
        "from modal_double import _mounts\n"
        "from pymc_modal.backends import modal as backend\n"
        "image = synchronizer._translate_in(backend.image)\n"
        "print(sorted({e.module_name for m in _mounts(image, set()) for e in m.entries}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=__file__.rsplit("/", 1)[0],
    )
    assert out.stdout.strip() == "['pymc_modal']"


def test_a_container_is_billed_for_its_gpu_cpu_and_memory_and_its_idle_window():
    bare = pricing.Tariff(("H100",), cpu=0.0, memory=0, idle_seconds=0)
    assert bare.cost("gpu: NVIDIA H100 80GB HBM3", 100.0) == pytest.approx(0.1097)
    assert bare.per_second("a100") == pytest.approx(0.000583)
    assert bare.per_second("A100-80GB:2") == pytest.approx(2 * 0.000694)
    sized = pricing.Tariff(("H100",), cpu=4.0, memory=8192, idle_seconds=60)
    rate = 0.001097 + 4 * 0.0000131 + 8 * 0.00000222
    assert sized.cost("gpu: NVIDIA H100 80GB HBM3", 100.0) == pytest.approx(rate * 160)
    own = pricing.Tariff(("H100:2",), cpu=4.0, memory=8192, idle_seconds=0, gpu_price=0.001)
    assert own.per_second("H100:2") == pytest.approx(rate - 0.001097 + 2 * 0.001)


@pytest.mark.parametrize(
    ("device", "billed"),
    [
        ("gpu: NVIDIA A100-SXM4-80GB", "A100-80GB"),
        ("gpu: NVIDIA A100-SXM4-40GB", "A100"),
        ("gpu: NVIDIA A10G", "A10"),
        ("gpu: NVIDIA L40S", "L4:2"),  # not asked for: the first of the list
        ("gpu: NVIDIA H200", "L4:2"),  # an upgrade Modal made is billed as asked
        ("cpu: cpu", "L4:2"),
    ],
)
def test_a_worker_is_billed_as_the_gpu_it_ran_on(device, billed):
    tariff = pricing.Tariff(("L4:2", "A10", "A100", "A100-80GB"), 4.0, 8192, 60)
    assert tariff.billed(device) == billed
    # A cap and a forecast count the dearest of the list.
    assert tariff.cap_rate == tariff.per_second("A100-80GB")


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
    modal_backend._image.__wrapped__()

    assert recorded["python"] == ".".join(platform.python_version_tuple()[:2])
    pins = dict(p.split("==") for p in recorded["packages"])
    for name in ("pymc", "pytensor", "numpy", "arviz", "numpyro", "cloudpickle"):
        assert pins[name] == importlib.metadata.version(name)
    jax = importlib.metadata.version("jax")
    assert pins[f"jax[{modal_backend.cuda_extra(jax)}]"] == jax


def test_jax_s_cuda_extra_is_cuda13_where_jax_has_no_cuda12_plugin():
    assert [modal_backend.cuda_extra(v) for v in ("0.10.2", "0.12.0.1", "0.12.1", "0.13.0")] == [
        "cuda12",
        "cuda12",
        "cuda13",
        "cuda13",
    ]


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
    if out.returncode != 0 and "No matching distribution found for nvidia-" in out.stderr:
        # A mirror without NVIDIA's CUDA 13 runtime wheels, as this project's own has.
        pytest.skip(f"the package index lacks NVIDIA's wheels: {out.stderr.strip()[-200:]}")
    assert out.returncode == 0, out.stderr
    names = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
    assert {"pymc", "jax", "jaxlib", "numpyro", "nutpie"} <= names
    extra = modal_backend.cuda_extra(importlib.metadata.version("jax"))
    assert any(name.startswith(f"jax-{extra}-plugin") for name in names)


class _Logistic(Op):
    """A custom Op computing with ``function`` here, with JAX's sigmoid in the worker's model."""

    itypes = [pt.dscalar]
    otypes = [pt.dscalar]

    def __init__(self, function) -> None:
        self.function = function

    def perform(self, node, inputs, outputs):
        outputs[0][0] = np.asarray(self.function(inputs[0]))


@jax_funcify.register(_Logistic)
def _logistic_in_jax(op, **kwargs):
    import jax

    return jax.nn.sigmoid


def _model_using(function) -> pm.Model:
    """A model whose pickle refers to ``function``'s module."""
    with pm.Model() as model:
        pm.Deterministic("p", _Logistic(function)(pm.Normal("x", 0, 1)))
    return model


@pytest.mark.slow
def test_the_image_gains_the_installed_packages_a_model_refers_to(modal_server, monkeypatch):
    import scipy.special

    made = []
    real_install = modal.Image.uv_pip_install

    def uv_pip_install(image, *packages, **kwargs):
        made.append((packages, real_install(image, *packages, **kwargs)))
        return made[-1][1]

    monkeypatch.setattr(modal.Image, "uv_pip_install", uv_pip_install)
    modal_backend._variant.cache_clear()
    modal_backend._image.cache_clear()
    idata = pymc_modal.sample(model=_model_using(scipy.special.expit), backend="modal", **TINY)

    # A layer of their own over the image's packages, under the package's source (the
    # double refuses a build step over local files, as Modal does).
    _, (packages, layer) = made
    assert packages == (f"scipy=={importlib.metadata.version('scipy')}",)
    (container,) = modal_server.containers
    assert _raw(layer) in _raw(container.image)._deps_()
    np.testing.assert_allclose(idata.posterior["p"], 1 / (1 + np.exp(-idata.posterior["x"])))
    # A model that needs nothing more runs on the image itself.
    pymc_modal.sample(model=_tiny_model(), backend="modal", **TINY)
    assert modal_server.containers[-1].image is _raw(modal_backend.image)


def test_a_module_no_image_can_install_is_refused_before_anything_starts(modal_server, monkeypatch):
    import types

    vendored = types.ModuleType("vendored_sampler_tools")  # e.g. a compiled module on the path
    vendored.draw = lambda *args, **kwargs: None
    vendored.draw.__module__ = vendored.__name__
    vendored.draw.__qualname__ = "draw"
    monkeypatch.setitem(sys.modules, vendored.__name__, vendored)
    with pytest.raises(PayloadError, match=r"module 'vendored_sampler_tools', which no installed"):
        pymc_modal.sample(model=_model_using(vendored.draw), backend="modal", **TINY)

    class FromGit:
        version = "0.1.dev3"

        def read_text(self, name):
            return json.dumps({"url": "git+https://example.org/tools.git", "vcs_info": {}})

    installed = importlib.metadata.packages_distributions()
    real = importlib.metadata.distribution
    monkeypatch.setattr(
        importlib.metadata,
        "packages_distributions",
        lambda: {**installed, "vendored_sampler_tools": ["sampler-tools"]},
    )
    monkeypatch.setattr(
        importlib.metadata,
        "distribution",
        lambda name: FromGit() if name == "sampler-tools" else real(name),
    )
    with pytest.raises(PayloadError, match=r"of sampler-tools 0.1.dev3, installed from git\+"):
        pymc_modal.sample(model=_model_using(vendored.draw), backend="modal", **TINY)
    assert modal_server.started_apps == [] and modal_server.uploaded == []


def test_each_container_gets_the_cpu_and_memory_its_job_needs(modal_server, model):
    modal_server.call_error = modal.exception.RemoteError("stop here")

    def asked(**kwargs):
        with pytest.raises(modal.exception.RemoteError):
            pymc_modal.sample(backend="modal", **{**TINY, **kwargs})
        return modal_server.options[-1]["cpu"], modal_server.options[-1]["memory"]

    assert asked(model=model) == (4.0, 5 * 1024)
    assert asked(model=model, sampler="nutpie", chains=8) == (8.0, 5 * 1024)  # a thread a chain
    with pm.Model() as wide:
        pm.Normal("x", shape=5000)
    # 1.6 GB of draws, held three times as the answer is packed, over the worker's 4 GiB.
    assert asked(model=wide, draws=20_000) == (4.0, 9 * 1024)
    with pymc_modal.options(cpu=2, memory=2048):
        assert asked(model=model) == (2.0, 2048)


def test_cpu_and_memory_that_modal_cannot_give_are_refused():
    with pytest.raises(InvalidOptionError, match=r"cpu=0\.1: pass a number of physical cores"):
        resolve(cpu=0.1)
    with pytest.raises(InvalidTypeError, match=r"cpu='8': pass a number"):
        resolve(cpu="8")
    with pytest.raises(InvalidOptionError, match=r"memory=64: pass a whole number of MiB, such as"):
        resolve(memory=64)
