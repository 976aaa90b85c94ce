"""A library that calls PyMC itself, as bambi, pymc-marketing and causalpy do.

``fit`` calls ``pm.sample`` with bambi's arguments (``cores``, ``init``,
``n_init``, ``nuts_sampler="pymc"``, positional draws) and then the
posterior predictive; ``fit_early`` calls a ``sample`` imported from PyMC
when this module was; ``prior`` draws from the prior predictive.
"""

import pymc as pm
from pymc import sample


def fit(model, draws: int, **kwargs):
    with model:
        idata = pm.sample(
            draws, cores=1, init="adapt_diag", n_init=1000, nuts_sampler="pymc", **kwargs
        )
        pm.sample_posterior_predictive(
            idata, extend_inferencedata=True, random_seed=7, progressbar=False
        )
    return idata


def fit_early(model, **kwargs):
    return sample(model=model, **kwargs)


def prior(model, draws: int, **kwargs):
    with model:
        return pm.sample_prior_predictive(draws, **kwargs)
