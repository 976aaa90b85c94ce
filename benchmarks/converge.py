"""Sampling to a target: what blocks cost, how good the first forecast is, a converged flagship.

Each on the local backend, one run at a time, NumPyro's NUTS (the default):

``overhead``
    The flagship sampled in blocks (an unreachable target, stopped by
    ``max_draws`` after ``--blocks`` blocks) against one run of the same total
    draws with the same seed, which draws the same chains: sampling seconds
    (warm-up and draws, compilation excluded) side by side.
``forecast``
    Small models sampled to ``target_ess``: the first forecast of the seconds
    to the target against the seconds it then took (the result's
    ``pymc_modal_first_forecast_seconds`` and ``_actual_seconds``).
``converged``
    The flagship sampled to min bulk and tail ESS 400 and R-hat 1.01 over
    alpha, beta, sigma_alpha and sigma_gamma: the seconds and draws it took,
    the first forecast's accuracy, and the largest distance of a posterior
    mean from the long reference's (``reference.py``), in reference sds.

    python benchmarks/converge.py overhead [--blocks 4 --block 150 --chains 2 --tune 300]
    python benchmarks/converge.py forecast
    python benchmarks/converge.py converged [--block 250 --chains 4 --tune 500]
"""

import argparse
import json
import os
import tempfile
import warnings

import numpy as np
import pymc as pm
import pytensor
from _flagship import FIXED_EFFECTS, build_model, fit, mean_shift, simulate
from reference import path_for

SIZE = {"observations": 20_000, "groups": 2_000, "covariates": 20}


def eight_schools() -> pm.Model:
    """Rubin's eight schools, non-centred."""
    y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
    sigma = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])
    with pm.Model() as model:
        mu = pm.Normal("mu", 0, 5)
        tau = pm.HalfCauchy("tau", 5)
        theta_z = pm.Normal("theta_z", 0, 1, shape=8)
        pm.Deterministic("theta", mu + tau * theta_z)
        pm.Normal("y", mu + tau * theta_z, sigma, observed=y)
    return model


def gaussian_process(n: int = 40) -> pm.Model:
    """A latent GP (exponentiated quadratic, whitened) observed with noise."""
    rng = np.random.default_rng(3)
    x = np.linspace(0, 10, n)[:, None]
    y = np.sin(x[:, 0]) + rng.normal(0, 0.3, n)
    with pm.Model() as model:
        ls = pm.Gamma("ls", 2, 1)
        eta = pm.HalfNormal("eta", 1)
        gp = pm.gp.Latent(cov_func=eta**2 * pm.gp.cov.ExpQuad(1, ls))
        f = gp.prior("f", X=x)
        sigma = pm.HalfNormal("sigma", 1)
        pm.Normal("y", f, sigma, observed=y)
    return model


def _flagship():
    return build_model(simulate(**SIZE))


def _row(name: str, idata) -> str:
    attrs = idata.attrs
    forecast = attrs.get("pymc_modal_first_forecast_seconds")
    actual = attrs.get("pymc_modal_first_forecast_actual_seconds")
    accuracy = (
        f"{forecast:.1f} | {actual:.1f} | {100 * (forecast - actual) / actual:+.0f}%"
        if forecast is not None and actual is not None
        else "- | - | (met at the first check)"
    )
    return (
        f"| {name} | {attrs['pymc_modal_stop_reason']} | {attrs['pymc_modal_blocks']} | "
        f"{attrs['pymc_modal_draws']:,} | {attrs['pymc_modal_min_ess_bulk']:.0f} | "
        f"{attrs['pymc_modal_min_ess_tail']:.0f} | {attrs['pymc_modal_max_rhat']:.3f} | "
        f"{attrs['pymc_modal_seconds_sample']:.1f} | {accuracy} |"
    )


HEADER = (
    "| model | stop | blocks | draws a chain | min bulk ESS | min tail ESS | max R-hat | "
    "sampling (s) | first forecast (s) | actual (s) | error |\n" + "|---" * 11 + "|"
)


def overhead(args) -> None:
    total = args.blocks * args.block
    common = {"chains": args.chains, "tune": args.tune, "random_seed": 1}
    with pytensor.config.change_flags(floatX="float32"):
        model = _flagship()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            blocks = fit(model, draws=args.block, target_ess=10**9, max_draws=total, **common)
        whole = fit(model, draws=total, **common)
    same = all(
        np.array_equal(blocks.posterior[var].values, whole.posterior[var].values)
        for var in FIXED_EFFECTS
    )
    print(
        f"\nflagship {SIZE['observations']:,} x {SIZE['groups']:,} x {SIZE['covariates']}, "
        f"{args.chains} chains, tune {args.tune}, {total} draws a chain, {os.cpu_count()} cores"
    )
    print("| run | blocks | sampling (s) | compile (s) |\n|---|---|---|---|")
    for name, idata in (("one run", whole), (f"blocks of {args.block}", blocks)):
        sample, compile_ = (idata.attrs[f"pymc_modal_seconds_{p}"] for p in ("sample", "compile"))
        blocks_drawn = idata.attrs.get("pymc_modal_blocks", 1)
        print(f"| {name} | {blocks_drawn} | {sample:.1f} | {compile_:.1f} |")
    ratio = blocks.attrs["pymc_modal_seconds_sample"] / whole.attrs["pymc_modal_seconds_sample"]
    print(f"blocks / one run: {ratio:.3f}; the same draws: {same}")


def forecast(args) -> None:
    models = {
        "eight schools": (eight_schools, {"draws": 100, "target_ess": 2000}),
        "latent GP (40 points)": (gaussian_process, {"draws": 100, "target_ess": 1000}),
    }
    print(f"\nsampled to a target, 4 chains, tune 500, {os.cpu_count()} cores")
    print(HEADER)
    for name, (build, target) in models.items():
        idata = fit(build(), chains=4, tune=500, random_seed=1, **target, var_names=None)
        print(_row(f"{name}, blocks of {target['draws']}, target {target['target_ess']}", idata))


def converged(args) -> None:
    with pytensor.config.change_flags(floatX="float32"):
        idata = fit(
            _flagship(),
            draws=args.block,
            chains=args.chains,
            tune=args.tune,
            random_seed=1,
            target_ess=400,
        )
    reference = json.loads(path_for(**SIZE).read_text())["variables"]
    sds, _ = mean_shift(idata, reference, FIXED_EFFECTS)
    attrs = idata.attrs
    print(
        f"\nflagship {SIZE['observations']:,} x {SIZE['groups']:,} x {SIZE['covariates']} to "
        f"ESS 400 and R-hat 1.01, {args.chains} chains, tune {args.tune}, {os.cpu_count()} cores"
    )
    print(HEADER)
    print(_row(f"flagship, blocks of {args.block}", idata))
    compile_seconds = attrs["pymc_modal_seconds_compile"]
    print(f"compile {compile_seconds:.1f} s; largest mean shift from the reference: {sds:.3f} sd")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("measure", choices=["overhead", "forecast", "converged"])
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--block", type=int)
    parser.add_argument("--chains", type=int)
    parser.add_argument("--tune", type=int)
    args = parser.parse_args()
    defaults = {
        "overhead": {"block": 150, "chains": 2, "tune": 300},
        "converged": {"block": 250, "chains": 4, "tune": 500},
    }.get(args.measure, {})
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)

    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="pymc-modal-bench-")
    {"overhead": overhead, "forecast": forecast, "converged": converged}[args.measure](args)


if __name__ == "__main__":
    main()
