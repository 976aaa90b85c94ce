"""pymc_modal: replace ``pm.sample`` with a NUTS run on a rented GPU.

.. code-block:: python

    import pymc_modal

    with model, pymc_modal.gpu("H100"):
        idata = pymc_modal.sample(draws=1000, tune=1000, chains=4, var_names=["beta"])
"""

import logging

from pymc_modal import errors
from pymc_modal.batch import map
from pymc_modal.client import sample
from pymc_modal.config import gpu, options
from pymc_modal.predictive import compute_log_likelihood, sample_posterior_predictive
from pymc_modal.runs import fetch
from pymc_modal.session import session

__all__ = [
    "compute_log_likelihood",
    "errors",
    "fetch",
    "gpu",
    "map",
    "options",
    "sample",
    "sample_posterior_predictive",
    "session",
]
__version__ = "0.1.0"

_log = logging.getLogger("pymc_modal")
if not logging.root.handlers:
    _log.setLevel(logging.INFO)
    if not _log.handlers:
        _log.addHandler(logging.StreamHandler())
