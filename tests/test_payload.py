"""The payload: bytes, a version manifest the worker checks, the user's modules by value."""

import json
import struct
import subprocess
import sys
import textwrap
import threading
import types

import numpy as np
import pymc as pm
import pytest

from pymc_modal import paths, payload, worker
from pymc_modal.errors import PayloadError, VersionMismatchError, WorkerError


def _with_manifest(job: bytes, **changes) -> bytes:
    header, body = payload._unpack(job)
    header["manifest"].update(changes)
    return payload._pack(header, bytes(body))


def test_job_is_bytes_with_a_readable_manifest(model, settings):
    job = payload.encode_job(model, settings)
    assert isinstance(job, bytes)
    header, _ = payload._unpack(job)
    assert header["manifest"] == payload.manifest()
    assert set(header["manifest"]) == {"python", *payload.PACKAGES}


def test_worker_refuses_other_versions_naming_both_sides(model, settings):
    job = _with_manifest(payload.encode_job(model, settings), pymc="4.0.0", python="3.9")
    answer = worker.run(job)
    assert isinstance(answer, bytes)
    with pytest.raises(VersionMismatchError) as info:
        payload.decode_result(answer, "test worker")
    message = str(info.value)
    assert "pymc: payload 4.0.0, worker " + payload.manifest()["pymc"] in message
    assert "python: payload 3.9, worker " + payload.manifest()["python"] in message
    assert "Traceback from the worker (test worker)" in "".join(info.value.__notes__)


def test_refusal_happens_before_unpickling(model, settings):
    job = _with_manifest(payload.encode_job(model, settings), numpy="0.0")
    header, _ = payload._unpack(job)
    poisoned = payload._pack(header, b"not a pickle at all")
    with pytest.raises(VersionMismatchError):
        payload.decode_job(poisoned)


def test_non_bytes_and_foreign_bytes_are_refused():
    with pytest.raises(PayloadError, match="Expected bytes"):
        payload.decode_job("a string")
    with pytest.raises(PayloadError, match="magic"):
        payload.decode_job(b"\x80\x04 something else")


def test_unpicklable_model_is_refused_with_the_reason(model, settings):
    model.lock = threading.Lock()
    with pytest.raises(PayloadError, match="lock"):
        payload.encode_job(model, settings)


def test_unpicklable_exception_arrives_as_worker_error():
    class Local(Exception):
        def __reduce__(self):
            raise TypeError("no pickling")

    try:
        raise Local("boom")
    except Local as exc:
        answer = payload.encode_failure(exc)
    with pytest.raises(WorkerError, match="Local: boom") as info:
        payload.decode_result(answer, "test worker")
    assert "raise Local" in str(info.value)


CUSTOM_OP_MODULE = textwrap.dedent(
    """
    import pytensor.tensor as pt
    from pytensor.graph.basic import Apply
    from pytensor.graph.op import Op
    from pytensor.link.jax.dispatch import jax_funcify


    class Double(Op):
        itypes = [pt.dscalar]
        otypes = [pt.dscalar]

        def perform(self, node, inputs, outputs):
            outputs[0][0] = 2.0 * inputs[0]


    @jax_funcify.register(Double)
    def _double_in_jax(op, **kwargs):
        def double(x):
            return 2.0 * x

        return double
    """
)


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A module of the user's own, importable here but not by the worker."""
    (tmp_path / "my_private_ops.py").write_text(CUSTOM_OP_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import my_private_ops

    yield my_private_ops
    del sys.modules["my_private_ops"]


@pytest.mark.slow
def test_custom_op_from_a_user_module_travels_by_value(user_module, tmp_path, settings):
    import pymc as pm

    with pm.Model() as model:
        x = pm.Normal("x", 0, 1)
        pm.Deterministic("twice", user_module.Double()(x))
    job = tmp_path / "job"
    job.write_bytes(payload.encode_job(model, settings))
    assert b"my_private_ops" in job.read_bytes()

    # The worker, in a fresh interpreter that cannot import my_private_ops,
    # loads the model, registers the Op's JAX conversion and samples it.
    script = textwrap.dedent(
        f"""
        import importlib.util, pathlib
        import numpy as np
        from pymc_modal import payload, worker
        assert importlib.util.find_spec("my_private_ops") is None
        answer = worker.run(pathlib.Path({str(job)!r}).read_bytes())
        posterior = payload.decode_result(answer, "subprocess").posterior
        np.testing.assert_allclose(posterior["twice"], 2 * posterior["x"])
        print("sampled", posterior["x"].shape)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd="/", check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "sampled (1, 10)"


def _normal_logp(value, mu, sigma):
    return -0.5 * ((value - mu) / sigma) ** 2 - pm.math.log(sigma)


@pytest.mark.slow
def test_a_custom_dist_s_log_density_travels_with_it(tmp_path, settings):
    """PyMC registers each CustomDist's logp for a class it makes; the worker gets both."""
    with pm.Model() as model:
        mu = pm.CustomDist("mu", 0.0, 1.0, logp=_normal_logp)
        pm.CustomDist("y", mu, 0.5, logp=_normal_logp, observed=np.array([0.3, 0.9, 0.6]))
    job = tmp_path / "job"
    job.write_bytes(payload.encode_job(model, settings))

    script = textwrap.dedent(
        f"""
        import pathlib
        from pymc_modal import payload, worker
        answer = worker.run(pathlib.Path({str(job)!r}).read_bytes())
        print("sampled", payload.decode_result(answer, "subprocess").posterior["mu"].shape)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd="/", check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "sampled (1, 10)"


def test_installed_and_compiled_modules_are_not_shipped(tmp_path, monkeypatch):
    # As `pip install --target DIR` leaves a package, with DIR on PYTHONPATH.
    (tmp_path / "vendored_lib").mkdir()
    (tmp_path / "vendored_lib" / "__init__.py").write_text("")
    (tmp_path / "vendored_lib-1.0.dist-info").mkdir()
    monkeypatch.syspath_prepend(str(tmp_path))
    payload._installed_roots.cache_clear()
    try:
        import vendored_lib

        assert not payload._is_local(vendored_lib)
    finally:
        payload._installed_roots.cache_clear()
        sys.modules.pop("vendored_lib", None)

    compiled = types.ModuleType("lazylinker_ext")
    compiled.__file__ = str(tmp_path / "lazylinker_ext.cpython-312-x86_64-linux-gnu.so")
    assert not payload._is_local(compiled)


def test_large_arrays_travel_as_blobs_named_by_their_content(tmp_path, settings):
    from conftest import make_data_model

    model = make_data_model()
    inline = payload.encode_job(model, settings)
    blobs = {}
    job = payload.encode_job(model, settings, blobs)
    assert len(blobs) == 2  # x and the observed y
    assert len(job) < 0.1 * len(inline)
    again = {}
    payload.encode_job(make_data_model(), settings, again)  # the same data, built anew
    assert again.keys() == blobs.keys()

    with pytest.raises(PayloadError, match="no blob folder"):
        payload.decode_job(job)
    with pytest.raises(PayloadError, match="is not in"):
        payload.decode_job(job, tmp_path)
    for name, data in blobs.items():
        path = paths.blob_path(tmp_path, name)
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
    loaded = payload.decode_job(job, tmp_path).model
    np.testing.assert_array_equal(loaded["x"].get_value(), model["x"].get_value())


def test_header_is_json_readable_without_this_package():
    packed = payload._pack({"kind": "x"}, b"body")
    header, body = payload._unpack(packed)
    assert header == {"kind": "x"} and bytes(body) == b"body"
    (length,) = struct.unpack(">Q", packed[len(payload.MAGIC) : len(payload.MAGIC) + 8])
    start = len(payload.MAGIC) + 8
    assert json.loads(packed[start : start + length]) == {"kind": "x"}


def test_coordinate_values_stay_on_the_client(settings):
    import numpy as np
    import pymc as pm

    y = np.zeros(200_000, dtype="float64")
    with pm.Model(coords={"obs": np.arange(y.size), "k": ["a", "b"]}) as model:
        x = pm.Normal("x", 0, 1, dims="k")
        pm.Normal("y", x[0], 1, observed=y, dims="obs")
    job = payload.encode_job(model, settings)
    assert len(job) < 1.05 * y.nbytes
    shipped = payload.decode_job(job).model
    assert shipped.coords == {"obs": None, "k": None}
    assert int(shipped.dim_lengths["obs"].eval()) == y.size
    assert model.coords["k"] == ("a", "b")
