"""The flagship example's simulation and model, and the settings the payload benchmarks ship."""

import importlib.util
from pathlib import Path

from pymc_modal.nuts import NutsSettings

_spec = importlib.util.spec_from_file_location(
    "hier_logistic", Path(__file__).resolve().parent.parent / "examples" / "hier_logistic.py"
)
hier_logistic = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hier_logistic)

simulate = hier_logistic.simulate
build_model = hier_logistic.build_model
FIXED_EFFECTS = hier_logistic.FIXED_EFFECTS

# The settings the payload benchmarks ship with the model: a typical full run.
SHIPPED_SETTINGS = NutsSettings(
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
