"""Import the flagship example's simulation and model for the benchmarks."""

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "hier_logistic", Path(__file__).resolve().parent.parent / "examples" / "hier_logistic.py"
)
hier_logistic = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hier_logistic)

simulate = hier_logistic.simulate
build_model = hier_logistic.build_model
FIXED_EFFECTS = hier_logistic.FIXED_EFFECTS
