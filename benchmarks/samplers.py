"""Samplers side by side on the flagship at a CPU size, each sampled to a target ESS.

Each sampler fits the same model and data (local backend, one run each, in
turn), drawing blocks until the smallest bulk and tail ESS over alpha, beta,
sigma_alpha and sigma_gamma reach ``--target-ess`` with R-hat at most 1.01,
or until ``--max-seconds``: NumPyro's NUTS (the default, with PyMC's 1,000
tuning steps), nutpie's NUTS (its own 400; with its low-rank mass matrix,
its own 800), and the ensemble ChEES.
For each: the wall time of the call, warm-up and compilation included (what
a user waits for); the draws and tuning steps each chain took; gradient
evaluations while drawing, counted per chain and, for the ensembles, per
batched step (one step serves every chain: a GPU's unit of wall time); ESS
per 1,000 of each and per second of the call; the largest R-hat; and how far
the posterior means of alpha and beta lie from a long reference run's
(``reference.py``) in the reference's sds and in Monte Carlo standard errors.
Last, each sampler's wall time against the default's.

    python benchmarks/samplers.py [--samplers numpyro nutpie nutpie-low-rank chees]
        [--target-ess 400] [--observations 20000 --groups 2000 --covariates 20]
"""

import argparse
import json
import os
import tempfile
import time
import warnings

import arviz as az
import numpy as np
import pytensor
from _flagship import FIXED_EFFECTS, build_model, fit, mean_shift, simulate
from reference import path_for

from pymc_modal.errors import NotConvergedWarning

# Chains, tuning steps and draws a block for each sampler: the default's and nutpie's own
# tuning, and for the ensemble as README's table advises.
RUNS = {
    "numpyro": {"chains": 4, "tune": 1000, "draws": 250},
    # nutpie holds every draw's position and gradient: a cap that 24 GiB hold at 20,000 x 2,000.
    "nutpie": {"chains": 4, "tune": 400, "draws": 250, "max_draws": 3000},
    # Its low-rank adaptation, with nutpie's own tuning for it.
    "nutpie-low-rank": {
        "sampler": "nutpie",
        "nuts": {"low_rank_modified_mass_matrix": True},
        "chains": 4,
        "tune": 800,
        "draws": 250,
        "max_draws": 3000,
    },
    # On a CPU its ESS grows too slowly to reach the target (BENCHMARKS.md): a shorter cap.
    "chees": {"chains": 16, "tune": 1500, "draws": 250, "max_seconds": 900},
}


def _smallest(values) -> float:
    return float(min(np.min(np.asarray(values[name])) for name in FIXED_EFFECTS))


def _largest(values) -> float:
    return float(max(np.max(np.asarray(values[name])) for name in FIXED_EFFECTS))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--observations", type=int, default=20_000)
    parser.add_argument("--groups", type=int, default=2_000)
    parser.add_argument("--covariates", type=int, default=20)
    parser.add_argument("--samplers", nargs="+", default=list(RUNS))
    parser.add_argument("--target-ess", type=int, default=400)
    parser.add_argument("--max-seconds", type=float, default=2400.0)
    args = parser.parse_args()

    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="pymc-modal-bench-")
    reference_path = path_for(args.observations, args.groups, args.covariates)
    reference = json.loads(reference_path.read_text())["variables"]
    print(
        f"flagship {args.observations:,} x {args.groups:,} x {args.covariates}, local backend, "
        f"{os.cpu_count()} cores; each sampled to min bulk and tail ESS {args.target_ess} and "
        f"R-hat 1.01 in blocks, or for {args.max_seconds:.0f} s (ChEES 900 s); mean shifts against "
        f"{reference_path.name}"
    )
    print(
        "| sampler | chains x (tune + draws) | stopped by | wall (s) | gradients, all chains | "
        "batched steps | min bulk ESS | min tail ESS | max R-hat | ESS / 1k gradients | "
        "ESS / 1k batched steps | ESS / s | max mean shift (sd) | max mean shift (MCSE) | "
        "wall / default's |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|", flush=True)
    default_wall = None
    with pytensor.config.change_flags(floatX="float32"):
        model = build_model(simulate(args.observations, args.groups, args.covariates))
        for name in args.samplers:
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotConvergedWarning)
                idata = fit(
                    model,
                    random_seed=1,
                    target_ess=args.target_ess,
                    **{"sampler": name, "max_seconds": args.max_seconds, **RUNS[name]},
                )
            wall = time.perf_counter() - start
            default_wall = default_wall or wall
            _row(name, idata, wall, default_wall, reference)


def _row(name: str, idata, wall: float, default_wall: float, reference: dict) -> None:
    bulk = _smallest(az.ess(idata, var_names=FIXED_EFFECTS, method="bulk"))
    tail = _smallest(az.ess(idata, var_names=FIXED_EFFECTS, method="tail"))
    rhat = _largest(az.rhat(idata, var_names=FIXED_EFFECTS))
    steps = np.asarray(idata.sample_stats["n_steps"])
    gradients, batched = int(steps.sum()), int(steps.max(axis=0).sum())
    sds, errors = mean_shift(idata, reference, ["alpha", "beta"])
    print(
        f"| {name} | {RUNS[name]['chains']} x ({RUNS[name]['tune']} + "
        f"{idata.posterior.sizes['draw']}) | {idata.attrs['pymc_modal_stop_reason']} | "
        f"{wall:.0f} | {gradients:,} | {batched:,} | {bulk:.0f} | {tail:.0f} | {rhat:.3f} | "
        f"{1000 * bulk / gradients:.2f} | {1000 * bulk / batched:.2f} | {bulk / wall:.3f} | "
        f"{sds:.2f} | {errors:.1f} | {wall / default_wall:.2f} |",
        flush=True,
    )


if __name__ == "__main__":
    main()
