"""pymc_modal: replace ``pm.sample`` with a NUTS run on a rented GPU.

.. code-block:: python

    import pymc_modal

    with model, pymc_modal.gpu("H100"):
        idata = pymc_modal.sample(draws=1000, tune=1000, chains=4, var_names=["beta"])
"""

import importlib
import logging

# The public calls, by the module that defines them. They are imported when first
# used, so that a worker importing one of this package's modules does not pay for
# the client's imports (a Modal container imports the backend's module to find its
# function).
_PUBLIC = {
    "compute_log_likelihood": "pymc_modal.predictive",
    "cpu": "pymc_modal.config",
    "extend": "pymc_modal.client",
    "fetch": "pymc_modal.runs",
    "gpu": "pymc_modal.config",
    "map": "pymc_modal.batch",
    "options": "pymc_modal.config",
    "patch": "pymc_modal.plugin",
    "sample": "pymc_modal.client",
    "sample_posterior_predictive": "pymc_modal.predictive",
    "sample_prior_predictive": "pymc_modal.predictive",
    "session": "pymc_modal.session",
}

__all__ = ["errors", *_PUBLIC]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "errors":
        return importlib.import_module("pymc_modal.errors")
    if name not in _PUBLIC:
        raise AttributeError(f"module 'pymc_modal' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


_log = logging.getLogger("pymc_modal")
if not logging.root.handlers:
    _log.setLevel(logging.INFO)
    if not _log.handlers:
        _log.addHandler(logging.StreamHandler())
