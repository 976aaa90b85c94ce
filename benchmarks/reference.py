"""A long NUTS run of the CPU-size flagship: the posterior the samplers are checked against.

NumPyro's NUTS (the default sampler), four chains of 1,000 tuning steps and
2,000 draws at target acceptance 0.9, on the local backend. Writes each fixed
effect's posterior mean, sd, Monte Carlo standard error of the mean, bulk ESS
and R-hat to ``reference-OBSxGROUPSxCOV.json`` beside this script, which
``samplers.py`` reads. Takes about half an hour on two CPU cores.

    python benchmarks/reference.py [--observations 20000 --groups 2000 --covariates 20]
"""

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import arviz as az
import numpy as np
import pytensor
from _flagship import FIXED_EFFECTS, build_model, fit, simulate

SETTINGS = {"chains": 4, "tune": 1000, "draws": 2000, "target_accept": 0.9}


def path_for(observations: int, groups: int, covariates: int) -> Path:
    """Where the reference for this size is kept."""
    return Path(__file__).resolve().parent / f"reference-{observations}x{groups}x{covariates}.json"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--observations", type=int, default=20_000)
    parser.add_argument("--groups", type=int, default=2_000)
    parser.add_argument("--covariates", type=int, default=20)
    args = parser.parse_args()

    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="pymc-modal-bench-")
    start = time.perf_counter()
    with pytensor.config.change_flags(floatX="float32"):
        model = build_model(simulate(args.observations, args.groups, args.covariates))
        idata = fit(model, random_seed=2, **SETTINGS)
    seconds = time.perf_counter() - start

    posterior = idata.posterior[FIXED_EFFECTS]
    columns = {
        "mean": posterior.mean(("chain", "draw")),
        "sd": posterior.std(("chain", "draw")),
        "mcse_mean": az.mcse(idata, var_names=FIXED_EFFECTS),
        "ess_bulk": az.ess(idata, var_names=FIXED_EFFECTS, method="bulk"),
        "r_hat": az.rhat(idata, var_names=FIXED_EFFECTS),
    }
    reference = {
        "settings": SETTINGS,
        "seconds": round(seconds),
        "variables": {
            var: {
                name: np.atleast_1d(np.asarray(values[var], dtype=float)).tolist()
                for name, values in columns.items()
            }
            for var in FIXED_EFFECTS
        },
    }
    path = path_for(args.observations, args.groups, args.covariates)
    path.write_text(json.dumps(reference, indent=1) + "\n")
    variables = reference["variables"]
    print(
        f"wrote {path.name} in {seconds:.0f} s: min bulk ESS "
        f"{min(min(v['ess_bulk']) for v in variables.values()):.0f}, max R-hat "
        f"{max(max(v['r_hat']) for v in variables.values()):.3f}"
    )


if __name__ == "__main__":
    main()
