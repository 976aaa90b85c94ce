"""The flagship: a hierarchical logistic regression, simulated, fitted, checked.

    Y_i ~ Bernoulli(p_i)
    logit(p_i) = alpha + alpha_g[i] + sum_k x_ik (beta_k + gamma_g[i],k)

with non-centred group effects. At full size (1,000,000 observations,
100,000 groups, 20 covariates) it has 2.1 million parameters; that is the
default on the Modal backend. On the local backend the default is a size that
runs in a few minutes on two CPU cores and still recovers the betas.

It samples until the fixed effects have converged: bulk and tail ESS of at
least --target-ess (400, 100 a chain) and R-hat at most 1.01, in blocks of
--draws; on Modal it spends at most --max-cost dollars.

    python examples/hier_logistic.py                       # local, small
    python examples/hier_logistic.py --backend modal       # Modal A100, full size
    python examples/hier_logistic.py --backend modal --gpu H100
    python examples/hier_logistic.py --groups 2000 --observations 20000
    python examples/hier_logistic.py --target-ess 0 --draws 1000   # exactly 1,000 draws
"""

from __future__ import annotations

import argparse
import os
import time

import arviz as az
import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt

import pymc_modal
from pymc_modal.backends.modal import credentials_configured

FULL = {"observations": 1_000_000, "groups": 100_000, "covariates": 20}
LOCAL = {"observations": 10_000, "groups": 100, "covariates": 20}
FIXED_EFFECTS = ["alpha", "beta", "sigma_alpha", "sigma_gamma"]


def simulate(observations: int, groups: int, covariates: int, seed: int = 827) -> dict:
    """Simulate the flagship data and the true values behind it (float32)."""
    rng = np.random.default_rng(seed)
    truth = {
        "alpha": np.float32(-1.0),
        "beta": rng.normal(0.0, 0.45, covariates).astype(np.float32),
        "sigma_alpha": np.float32(0.80),
        "sigma_gamma": rng.uniform(0.15, 0.35, covariates).astype(np.float32),
    }
    alpha_g = truth["sigma_alpha"] * rng.normal(size=groups).astype(np.float32)
    gamma = truth["sigma_gamma"] * rng.normal(size=(groups, covariates)).astype(np.float32)
    x = rng.normal(size=(observations, covariates)).astype(np.float32)
    group = rng.integers(groups, size=observations).astype(np.int32)
    logit = truth["alpha"] + alpha_g[group] + np.sum(x * (truth["beta"] + gamma[group]), axis=1)
    y = (rng.random(observations) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int8)
    return {"x": x, "group": group, "y": y, "truth": truth}


def build_model(data: dict) -> pm.Model:
    """The flagship model in PyMC, with non-centred group effects."""
    n_obs, n_cov = data["x"].shape
    n_groups = int(data["group"].max()) + 1
    coords = {
        "obs": np.arange(n_obs),
        "group": np.arange(n_groups),
        "covariate": [f"x{k}" for k in range(n_cov)],
    }
    with pm.Model(coords=coords) as model:
        x = pm.Data("x", data["x"], dims=("obs", "covariate"))
        # Not pm.Data: with floatX=float32 PyMC stores integer data as int16,
        # which cannot index 100,000 groups.
        group = pt.as_tensor_variable(data["group"])
        alpha = pm.Normal("alpha", 0.0, 1.5)
        beta = pm.Normal("beta", 0.0, 1.0, dims="covariate")
        sigma_alpha = pm.HalfNormal("sigma_alpha", 1.0)
        sigma_gamma = pm.HalfNormal("sigma_gamma", 0.5, dims="covariate")
        z_alpha = pm.Normal("z_alpha", 0.0, 1.0, dims="group")
        z_gamma = pm.Normal("z_gamma", 0.0, 1.0, dims=("group", "covariate"))
        alpha_g = sigma_alpha * z_alpha
        gamma = sigma_gamma * z_gamma
        logit_p = alpha + alpha_g[group] + (x * (beta + gamma[group])).sum(axis=-1)
        pm.Bernoulli("y", logit_p=logit_p, observed=data["y"], dims="obs")
    return model


def recovery(idata, truth: dict) -> dict:
    """Largest |posterior mean - true beta| and how many true betas lie in their 90% intervals."""
    beta = np.asarray(idata["posterior"]["beta"]).reshape(-1, truth["beta"].size)
    mean = beta.mean(axis=0)
    low, high = np.quantile(beta, [0.05, 0.95], axis=0)
    inside = (low <= truth["beta"]) & (truth["beta"] <= high)
    return {
        "mean": mean,
        "low": low,
        "high": high,
        "max_abs_error": float(np.max(np.abs(mean - truth["beta"]))),
        "inside_90": int(inside.sum()),
    }


def sampler_diagnostics(idata) -> str:
    """One line on how NUTS moved: tree depth, step size, divergences, E-BFMI per chain."""
    stats = idata["sample_stats"]
    depth = np.asarray(stats["tree_depth"])
    bfmi = az.bfmi(idata)
    if hasattr(bfmi, "to_dataset"):  # ArviZ 1.x: a DataTree with an "energy" variable
        bfmi = bfmi.to_dataset()["energy"]
    bfmi = ", ".join(f"{value:.2f}" for value in np.ravel(np.asarray(bfmi)))
    return (
        f"sampler: tree depth mean {depth.mean():.1f} (max {depth.max()}), "
        f"step size {float(np.asarray(stats['step_size']).mean()):.2g}, "
        f"{int(np.asarray(stats['diverging']).sum())} divergences, E-BFMI by chain {bfmi}"
    )


def plot_recovery(found: dict, truth: dict, path: str) -> None:
    """Save true vs posterior-mean betas with 90% interval bars as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    errors = [found["mean"] - found["low"], found["high"] - found["mean"]]
    ax.errorbar(truth["beta"], found["mean"], yerr=errors, fmt="o", capsize=3)
    edge = float(np.max(np.abs(np.concatenate([truth["beta"], found["low"], found["high"]]))))
    ax.plot([-edge, edge], [-edge, edge], color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("true beta")
    ax.set_ylabel("posterior mean (90% interval)")
    ax.set_title(f"{found['inside_90']}/{truth['beta'].size} true betas inside their intervals")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default=os.environ.get("PYMC_MODAL_BACKEND", "auto"))
    parser.add_argument("--gpu", help="Modal GPU type, e.g. H100 (default: A100)")
    parser.add_argument("--observations", type=int)
    parser.add_argument("--groups", type=int)
    parser.add_argument("--covariates", type=int)
    parser.add_argument("--draws", type=int, default=250, help="draws per block (default 250)")
    parser.add_argument("--tune", type=int, default=500)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument(
        "--target-ess", type=int, default=400, help="0 draws exactly --draws, unchecked"
    )
    parser.add_argument("--max-draws", type=int, help="at most this many draws per chain")
    parser.add_argument("--max-cost", type=float, help="US dollars on Modal (default 2.00)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--plot", default="hier_logistic_recovery.png")
    args = parser.parse_args(argv)

    backend = args.backend
    if backend == "auto":
        backend = "modal" if credentials_configured() else "local"
    defaults = FULL if backend == "modal" else LOCAL
    size = {name: getattr(args, name) or defaults[name] for name in FULL}
    print(
        f"Flagship at {size['observations']:,} observations x {size['groups']:,} groups x "
        f"{size['covariates']} covariates on the {backend} backend"
    )
    data = simulate(**size)
    print(f"mean of y: {data['y'].mean():.3f}")
    target = {}
    if args.target_ess:
        target = {"target_ess": args.target_ess, "max_draws": args.max_draws}
        if backend == "modal":
            target["max_cost"] = 2.00 if args.max_cost is None else args.max_cost

    start = time.perf_counter()
    with pytensor.config.change_flags(floatX="float32"):
        idata = pymc_modal.sample(
            draws=args.draws,
            tune=args.tune,
            chains=args.chains,
            random_seed=args.seed,
            var_names=FIXED_EFFECTS,
            model=build_model(data),
            backend=backend,
            gpu=args.gpu,
            **target,
        )
    wall = time.perf_counter() - start

    print(az.summary(idata, var_names=FIXED_EFFECTS, kind="all").to_string())
    print(sampler_diagnostics(idata))
    attrs = idata.attrs
    if args.target_ess:
        print(
            f"convergence ({attrs['pymc_modal_stop_reason']}): min bulk ESS "
            f"{attrs['pymc_modal_min_ess_bulk']:.0f}, min tail ESS "
            f"{attrs['pymc_modal_min_ess_tail']:.0f}, max R-hat {attrs['pymc_modal_max_rhat']:.3f} "
            f"after {attrs['pymc_modal_draws']:,} draws per chain in {attrs['pymc_modal_blocks']} "
            f"blocks (target: ESS {args.target_ess}, R-hat 1.01)"
        )
    found = recovery(idata, data["truth"])
    print(
        f"beta recovery: largest |posterior mean - true| = {found['max_abs_error']:.3f}; "
        f"{found['inside_90']}/{size['covariates']} true betas inside their 90% intervals"
    )
    print(
        f"wall time {wall:.1f} s on {attrs['pymc_modal_where']} "
        f"({attrs['pymc_modal_device']}), estimated cost ${attrs['pymc_modal_cost_usd']:.2f}"
    )
    plot_recovery(found, data["truth"], args.plot)
    print(f"recovery plot saved to {args.plot}")
    return {"idata": idata, "recovery": found, "wall": wall}


if __name__ == "__main__":
    main()
