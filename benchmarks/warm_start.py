"""A refit on new data, cold against warm-started: the time to the same target.

The flagship at a CPU size, local backend, NumPyro's NUTS, float32. First an
earlier fit of one simulated dataset (PyMC's 1,000 tuning steps and a few
draws: what a warm start reads is its adapted step size and mass matrix).
Then a second dataset, simulated with another seed, fitted twice in turn with
the same seed to min bulk and tail ESS ``--target-ess`` and R-hat 1.01 over
alpha, beta, sigma_alpha and sigma_gamma: cold, with PyMC's 1,000 tuning
steps, and warm-started from the earlier fit with the warm start's default
warm-up. Wall is the whole call, compilation and warm-up included.

    python benchmarks/warm_start.py [--observations 20000 --groups 2000 --covariates 20]
"""

import argparse
import os
import tempfile
import time
import warnings

import arviz as az
import numpy as np
import pytensor
from _flagship import FIXED_EFFECTS, build_model, fit, simulate

from pymc_modal.client import WARM_TUNE
from pymc_modal.errors import NotConvergedWarning


def _row(name: str, tune: int, idata, wall: float, cold_wall: float | None) -> float:
    bulk = az.ess(idata, var_names=FIXED_EFFECTS, method="bulk")
    tail = az.ess(idata, var_names=FIXED_EFFECTS, method="tail")
    rhat = az.rhat(idata, var_names=FIXED_EFFECTS)
    smallest = {
        kind: min(float(np.min(found[v])) for v in FIXED_EFFECTS)
        for kind, found in (("bulk", bulk), ("tail", tail))
    }
    seconds = {p: idata.attrs.get(f"pymc_modal_seconds_{p}", 0.0) for p in ("compile", "sample")}
    print(
        f"| {name} | {tune} | {idata.posterior.sizes['draw']:,} | "
        f"{idata.attrs.get('pymc_modal_stop_reason', '')} | {wall:.0f} | "
        f"{seconds['compile']:.0f} | {seconds['sample']:.0f} | {smallest['bulk']:.0f} | "
        f"{smallest['tail']:.0f} | {max(float(np.max(rhat[v])) for v in FIXED_EFFECTS):.3f} | "
        f"{float(idata.sample_stats['n_steps'].mean()):.1f} | "
        f"{'' if cold_wall is None else f'{wall / cold_wall:.2f}'} |",
        flush=True,
    )
    return wall


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--observations", type=int, default=20_000)
    parser.add_argument("--groups", type=int, default=2_000)
    parser.add_argument("--covariates", type=int, default=20)
    parser.add_argument("--target-ess", type=int, default=400)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--block", type=int, default=250)
    parser.add_argument("--max-seconds", type=float, default=3600.0)
    args = parser.parse_args()

    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="pymc-modal-bench-")
    size = (args.observations, args.groups, args.covariates)
    print(
        f"flagship {args.observations:,} x {args.groups:,} x {args.covariates}, local backend, "
        f"{os.cpu_count()} cores, {args.chains} chains, blocks of {args.block}, to min bulk and "
        f"tail ESS {args.target_ess} and R-hat 1.01 (cap {args.max_seconds:.0f} s)"
    )
    with pytensor.config.change_flags(floatX="float32"):
        start = time.perf_counter()
        earlier = fit(build_model(simulate(*size)), chains=args.chains, draws=100, random_seed=1)
        print(
            f"earlier fit, other data, 1000 + 100 steps a chain: "
            f"{time.perf_counter() - start:.0f} s"
        )
        print(
            "| refit | tune | draws a chain | stopped by | wall (s) | compile (s) | "
            "warm-up and draws (s) | min bulk ESS | min tail ESS | max R-hat | "
            "gradients a draw | wall / cold's |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|---|", flush=True)
        model = build_model(simulate(*size, seed=828))
        target = {
            "chains": args.chains,
            "draws": args.block,
            "target_ess": args.target_ess,
            "max_seconds": args.max_seconds,
            "random_seed": 2,
        }
        walls = {}
        for name, extra in (("cold", {"tune": 1000}), ("warm", {"warm_start": earlier})):
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotConvergedWarning)
                idata = fit(model, **target, **extra)
            walls[name] = time.perf_counter() - start
            tune = extra.get("tune", WARM_TUNE)
            _row(name, tune, idata, walls[name], walls.get("cold") if name == "warm" else None)


if __name__ == "__main__":
    main()
