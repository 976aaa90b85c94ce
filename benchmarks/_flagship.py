"""The flagship example's simulation and model, as the benchmarks ship and fit it."""

import importlib.util
from pathlib import Path

import arviz as az
import numpy as np

import pymc_modal
from pymc_modal.job import SampleSettings

_spec = importlib.util.spec_from_file_location(
    "hier_logistic", Path(__file__).resolve().parent.parent / "examples" / "hier_logistic.py"
)
hier_logistic = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hier_logistic)

simulate = hier_logistic.simulate
build_model = hier_logistic.build_model
FIXED_EFFECTS = hier_logistic.FIXED_EFFECTS

# The settings the payload benchmarks ship with the model: a typical full run.
SHIPPED_SETTINGS = SampleSettings(
    draws=1000,
    tune=1000,
    chains=4,
    target_accept=0.8,
    seed=1,
    initvals=None,
    var_names=["alpha", "beta"],
    progressbar=True,
    log_likelihood=False,
    float_x="float32",
)


def fit(model, **kwargs):
    """A local fit of the fixed effects (or ``var_names``) as the benchmarks run it.

    No progress bar, convergence checks or log lines, and never a stored result.
    """
    settings = {
        "var_names": FIXED_EFFECTS,
        "backend": "local",
        "progressbar": False,
        "compute_convergence_checks": False,
        "quiet": True,
        "refit": True,
    }
    return pymc_modal.sample(model=model, **{**settings, **kwargs})


def mean_shift(idata, reference: dict, variables: list[str]) -> tuple[float, float]:
    """The largest distance of a posterior mean of ``variables`` from the reference's.

    In the reference's posterior sds, and in Monte Carlo standard errors of the
    difference (both runs' MCSEs combined): beyond 3 or so, more than chance.
    """
    mcse = az.mcse(idata, var_names=variables)
    sds, errors = [], []
    for var in variables:
        distance = np.abs(
            idata.posterior[var].mean(("chain", "draw")).values - reference[var]["mean"]
        )
        sds.append(np.max(distance / reference[var]["sd"]))
        errors.append(np.max(distance / np.hypot(mcse[var].values, reference[var]["mcse_mean"])))
    return float(max(sds)), float(max(errors))
