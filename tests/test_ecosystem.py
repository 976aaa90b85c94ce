"""bambi, pymc-marketing and causalpy fit under ``pymc_modal.patch()``, unchanged.

Each library's own fit, called inside the patch, draws what its own NumPyro
fit (``pm.sample(nuts_sampler="numpyro")``) draws for the same seed, and its
follow-up calls (prior and posterior predictive, the library's summaries)
work on the result. The libraries come with the ``[ecosystem]`` extra, on the
Pythons where their releases support the installed PyMC; elsewhere the tests
are skipped.
"""

import numpy as np
import pandas as pd
import pytest

import pymc_modal

SAMPLE = {"draws": 30, "tune": 50, "chains": 2, "random_seed": 5, "progressbar": False}


def _same_posterior(routed, own) -> None:
    assert set(routed.data_vars) == set(own.data_vars)
    for name, values in own.items():
        np.testing.assert_allclose(routed[name], values, rtol=1e-6, err_msg=name)


@pytest.mark.slow
def test_bambi(in_process):
    bmb = pytest.importorskip("bambi")
    rng = np.random.default_rng(0)
    group = np.repeat(np.arange(8), 25)
    x = rng.normal(size=group.size)
    chance = 1 / (1 + np.exp(-(0.3 + 0.8 * x + rng.normal(size=8)[group])))
    data = pd.DataFrame({"y": rng.binomial(1, chance), "x": x, "g": pd.Categorical(group)})
    model = bmb.Model("y ~ x + (1|g)", data, family="bernoulli")

    with pymc_modal.patch(backend="local"):
        routed = model.fit(**SAMPLE)
        prior = model.prior_predictive(draws=20, random_seed=1)
    own = model.fit(inference_method="numpyro", **SAMPLE)

    assert in_process.submitted == [1, 1]
    _same_posterior(routed.posterior, own.posterior)
    assert prior["prior"]["x"].shape == (1, 20)
    assert model.predict(routed, kind="response", inplace=False) is not None


@pytest.mark.slow
def test_pymc_marketing_mmm(in_process):
    mmm_module = pytest.importorskip(
        "pymc_marketing.mmm", reason="pymc-marketing's releases for this PyMC are not installed"
    )
    rng = np.random.default_rng(1)
    weeks = 52
    X = pd.DataFrame(
        {
            "date": pd.date_range("2024-01-01", periods=weeks, freq="W-MON"),
            "tv": rng.gamma(2, 1, weeks),
            "radio": rng.gamma(2, 1, weeks),
        }
    )
    y = pd.Series(2 + 0.8 * X["tv"] + 0.5 * X["radio"] + rng.normal(0, 0.3, weeks), name="y")

    def mmm():
        return mmm_module.MMM(
            date_column="date",
            channel_columns=["tv", "radio"],
            adstock=mmm_module.GeometricAdstock(l_max=4),
            saturation=mmm_module.LogisticSaturation(),
        )

    routed = mmm()
    with pymc_modal.patch(backend="local"):
        routed.fit(X, y, **SAMPLE)
        routed.sample_posterior_predictive(X, extend_idata=True, random_seed=2, progressbar=False)
    own = mmm()
    own.fit(X, y, nuts_sampler="numpyro", **SAMPLE)

    assert in_process.submitted == [1, 1]
    _same_posterior(routed.idata.posterior, own.idata.posterior)
    assert routed.idata.posterior_predictive["y"].shape == (2, 30, weeks)
    contribution = routed.compute_channel_contribution_original_scale()
    assert contribution.shape == (2, 30, weeks, 2)


@pytest.mark.slow
def test_causalpy_interrupted_time_series(in_process):
    cp = pytest.importorskip(
        "causalpy", reason="causalpy's releases for this PyMC are not installed"
    )
    rng = np.random.default_rng(2)
    weeks = 60
    df = pd.DataFrame(
        {"t": np.arange(weeks, dtype=float)},
        index=pd.date_range("2020-01-01", periods=weeks, freq="W"),
    )
    df["y"] = 1 + 0.1 * df["t"] + rng.normal(0, 0.5, weeks) + 2.0 * (np.arange(weeks) >= 40)

    def fit(**sample_kwargs):
        model = cp.pymc_models.LinearRegression(sample_kwargs={**SAMPLE, **sample_kwargs})
        return cp.InterruptedTimeSeries(df, df.index[40], formula="y ~ 1 + t", model=model)

    with pymc_modal.patch(backend="local"):
        routed = fit()
    own = fit(nuts_sampler="numpyro")

    # The fit, its prior predictive, then the posterior predictive before and after.
    assert in_process.submitted[:2] == [1, 1] and len(in_process.submitted) >= 3
    _same_posterior(routed.model.idata.posterior, own.model.idata.posterior)
    impact = routed.post_impact.mean(("chain", "draw"))
    assert float(impact.mean()) == pytest.approx(2.0, abs=0.6)
