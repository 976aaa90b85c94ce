"""pymc_modal.map: many fits at once, each as sample() would return it, failures kept apart."""

import logging

import jax
import numpy as np
import pymc as pm
import pytensor.tensor as pt
import pytest
from pytensor.graph.op import Op
from pytensor.link.jax.dispatch import jax_funcify

import pymc_modal
from pymc_modal import attrs, payload
from pymc_modal.errors import InvalidOptionError

TINY = {"draws": 10, "tune": 10, "chains": 1, "random_seed": 3, "backend": "local"}
X = np.linspace(-1, 1, 20)


class _Audited(Op):
    """The data as they are; in JAX, a callback that refuses data holding a 7 as it runs."""

    itypes = [pt.dvector]
    otypes = [pt.dvector]

    def perform(self, node, inputs, outputs):
        outputs[0][0] = np.array(inputs[0])

    def do_constant_folding(self, fgraph, node):
        return False  # The data are constants once compiled; the callback must stay.


def _refuse_sevens(x):
    if (x == 7).any():
        raise ValueError("a 7 in the data")
    return x


@jax_funcify.register(_Audited)
def _audited_in_jax(op, **kwargs):
    return lambda x: jax.pure_callback(_refuse_sevens, jax.ShapeDtypeStruct(x.shape, x.dtype), x)


def _regression(y=2.0 * X) -> pm.Model:
    with pm.Model() as model:
        x = pm.Data("x", X)
        y_data = pm.Data("y", y)
        slope = pm.Normal("slope", 0, 1)
        pm.Normal("obs", slope * _Audited()(x), 1.0, observed=y_data)
    return model


@pytest.mark.slow
def test_datasets_are_fitted_like_sample_and_a_failure_keeps_the_others(caplog):
    model = _regression()
    sevens = {"x": np.full(20, 7.0)}  # passes the checks, fails on the worker
    datasets = [{"y": 1.0 * X}, sevens, {"y": -1.0 * X}]
    with caplog.at_level(logging.INFO, logger="pymc_modal"):
        first, failed, third = pymc_modal.map(datasets, model=model, **TINY)

    assert isinstance(failed, Exception)
    assert "Traceback from the worker" in "".join(failed.__notes__)
    assert "Fit 2/3 failed" in caplog.text and "Fit 1/3 done" in caplog.text
    np.testing.assert_array_equal(model["x"].get_value(), X)  # the model's own data is back
    alone = pymc_modal.sample(model=_regression(-1.0 * X), refit=True, **TINY)
    np.testing.assert_array_equal(third.posterior["slope"].values, alone.posterior["slope"].values)
    np.testing.assert_array_equal(third.observed_data["obs"].values, -1.0 * X)
    assert first.posterior["slope"].mean() > 0 > third.posterior["slope"].mean()


def test_items_must_be_all_models_or_all_datasets():
    model = _regression()
    with pytest.raises(InvalidOptionError, match="list of pymc.Model"):
        pymc_modal.map([model, {"y": X}], model=model, **TINY)
    with pytest.raises(InvalidOptionError, match="either models"):
        pymc_modal.map([model], model=model, **TINY)
    with pytest.raises(InvalidOptionError, match="no pm.Data for; its pm.Data are x, y"):
        pymc_modal.map([{"z": X}], model=model, **TINY)
    with pytest.raises(InvalidOptionError, match="wait=False"):
        pymc_modal.map([model], wait=False, **TINY)


@pytest.mark.slow
def test_stored_fits_are_returned_before_anything_is_encoded(in_process, monkeypatch):
    def plain(prior_sigma: float) -> pm.Model:
        with pm.Model() as model:
            slope = pm.Normal("slope", 0, prior_sigma)
            pm.Normal("obs", slope * X, 1.0, observed=2.0 * X)
        return model

    first = pymc_modal.map([plain(1.0)], **TINY)
    encoded = []
    real = payload.encode_job
    monkeypatch.setattr(payload, "encode_job", lambda *a, **k: encoded.append(a) or real(*a, **k))

    stored, new = pymc_modal.map([plain(1.0), plain(2.0)], **TINY)

    assert len(encoded) == 1 and in_process.submitted == [1, 1]
    assert attrs.STORED_AT in stored.attrs and attrs.STORED_AT not in new.attrs
    np.testing.assert_array_equal(stored.posterior["slope"], first[0].posterior["slope"])
