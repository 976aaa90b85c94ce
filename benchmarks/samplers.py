"""Samplers side by side on the flagship at a CPU size: effective samples per gradient and second.

Each sampler fits the same model and data (local backend, one run each, in
turn): NumPyro's NUTS (the default), BlackJAX's NUTS with a low-rank mass
matrix, and ChEES-HMC with many chains. For each: the smallest bulk and tail
ESS over alpha, beta, sigma_alpha and sigma_gamma; gradient evaluations while
drawing, counted per chain and, for the ensemble, per batched step (one step
serves every chain: a GPU's unit of wall time); ESS per 1,000 of each and per
second of sampling; and how far each sampler's posterior means of alpha and
beta lie from a long reference run's (``reference.py``, read from the JSON
file it writes; the default run's when there is none), in the reference's
posterior sds and in Monte Carlo standard errors. Then the default run's
diagnosis: ESS by variable, tree depth, step size, E-BFMI.

    python benchmarks/samplers.py [--observations 20000 --groups 2000 --covariates 20]
"""

import argparse
import json
import os
import tempfile

import arviz as az
import numpy as np
import pytensor
from _flagship import FIXED_EFFECTS, build_model, fit, mean_shift, simulate
from reference import path_for


def _smallest(values) -> float:
    return float(min(np.min(np.asarray(values[name])) for name in FIXED_EFFECTS))


def _gradients(idata) -> tuple[int, int]:
    """Gradient evaluations while drawing: every chain's, and batched steps (max over chains)."""
    steps = np.asarray(idata.sample_stats["n_steps"])
    return int(steps.sum()), int(steps.max(axis=0).sum())


def _diagnose(idata) -> None:
    """What limits the default: ESS by variable, tree depth, step size, E-BFMI."""
    print("\nDiagnosis of the default run, smallest ESS within each variable:")
    print("| variable | bulk ESS | tail ESS |")
    print("|---|---|---|")
    bulk = az.ess(idata, var_names=FIXED_EFFECTS, method="bulk")
    tail = az.ess(idata, var_names=FIXED_EFFECTS, method="tail")
    for var in FIXED_EFFECTS:
        print(f"| {var} | {float(np.min(bulk[var])):.1f} | {float(np.min(tail[var])):.1f} |")
    stats = idata.sample_stats
    depth = np.asarray(stats["tree_depth"])
    print(
        f"tree depth mean {depth.mean():.1f} (max {depth.max()}), step size "
        f"{', '.join(f'{s:.2g}' for s in np.asarray(stats['step_size'])[:, -1])}, "
        f"E-BFMI {', '.join(f'{b:.2f}' for b in az.bfmi(idata))}, "
        f"divergences {int(np.asarray(stats['diverging']).sum())}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--observations", type=int, default=20_000)
    parser.add_argument("--groups", type=int, default=2_000)
    parser.add_argument("--covariates", type=int, default=20)
    parser.add_argument("--tune", type=int, default=400)
    parser.add_argument("--draws", type=int, default=400)
    parser.add_argument("--chees-chains", type=int, default=16)
    parser.add_argument("--chees-tune", type=int, default=1500)
    parser.add_argument("--chees-draws", type=int, default=2000)
    parser.add_argument("--samplers", nargs="+", default=["numpyro", "blackjax", "chees"])
    args = parser.parse_args()

    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="pymc-modal-bench-")
    runs = {
        "numpyro": {"chains": 2, "tune": args.tune, "draws": args.draws},
        "blackjax": {"chains": 2, "tune": args.tune, "draws": args.draws},
        "chees": {"chains": args.chees_chains, "tune": args.chees_tune, "draws": args.chees_draws},
    }
    fits = {}
    with pytensor.config.change_flags(floatX="float32"):
        model = build_model(simulate(args.observations, args.groups, args.covariates))
        for name in args.samplers:
            size = runs[name]
            fits[name] = fit(model, sampler=name, random_seed=1, **size)

    reference_path = path_for(args.observations, args.groups, args.covariates)
    if reference_path.exists():
        reference = json.loads(reference_path.read_text())["variables"]
        against = f"{reference_path.name} (reference.py)"
    else:
        default = fits[args.samplers[0]]
        mcse = az.mcse(default, var_names=["alpha", "beta"])
        reference = {
            var: {
                "mean": default.posterior[var].mean(("chain", "draw")).values,
                "sd": default.posterior[var].std(("chain", "draw")).values,
                "mcse_mean": mcse[var].values,
            }
            for var in ("alpha", "beta")
        }
        against = f"the {args.samplers[0]} run (no reference.py run at this size)"
    print(
        f"\nflagship {args.observations:,} x {args.groups:,} x {args.covariates}, local backend, "
        f"{os.cpu_count()} cores; draws after tuning; mean shifts against {against}"
    )
    print(
        "| sampler | chains x (tune + draws) | sampling (s) | gradients, all chains | "
        "batched steps | min bulk ESS | min tail ESS | ESS / 1k gradients | "
        "ESS / 1k batched steps | ESS / s | max mean shift (sd) | max mean shift (MCSE) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, idata in fits.items():
        size = runs[name]
        bulk = _smallest(az.ess(idata, var_names=FIXED_EFFECTS, method="bulk"))
        tail = _smallest(az.ess(idata, var_names=FIXED_EFFECTS, method="tail"))
        gradients, batched = _gradients(idata)
        seconds = idata.attrs["pymc_modal_seconds_sample"]
        sds, errors = mean_shift(idata, reference, ["alpha", "beta"])
        print(
            f"| {name} | {size['chains']} x ({size['tune']} + {size['draws']}) | {seconds:.0f} | "
            f"{gradients:,} | {batched:,} | {bulk:.1f} | {tail:.1f} | "
            f"{1000 * bulk / gradients:.2f} | {1000 * bulk / batched:.2f} | "
            f"{bulk / seconds:.3f} | {sds:.2f} | {errors:.1f} |"
        )

    if "numpyro" in fits:
        _diagnose(fits["numpyro"])


if __name__ == "__main__":
    main()
