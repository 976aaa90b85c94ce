"""A calibration over many datasets: pymc_modal.map against the same fits one call at a time.

Datasets simulated from the flagship at a small size, each with its own true
values, are fitted once by ``pymc_modal.map`` (every fit sent at once; on
the local backend, as many worker processes at a time as there are cores)
and once by a loop of ``pymc_modal.sample`` calls (one warm worker reused).
Both give the same draws; the table gives each way's wall time, and the
coverage of the true betas by the fits' 90% intervals (about 0.9 when the
fits are calibrated).

    python benchmarks/calibration.py [--datasets 20 --observations 2000 --groups 20]
"""

import argparse
import os
import tempfile
import time

import numpy as np
import pytensor
from _flagship import build_model, simulate

import pymc_modal
from pymc_modal.backends import local


def _coverage(fits, truths) -> float:
    covered = []
    for fit, truth in zip(fits, truths, strict=True):
        beta = fit.posterior["beta"].values.reshape(-1, truth["beta"].size)
        low, high = np.quantile(beta, [0.05, 0.95], axis=0)
        covered += list((low <= truth["beta"]) & (truth["beta"] <= high))
    return float(np.mean(covered))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", type=int, default=20)
    parser.add_argument("--observations", type=int, default=2_000)
    parser.add_argument("--groups", type=int, default=20)
    parser.add_argument("--covariates", type=int, default=5)
    parser.add_argument("--draws", type=int, default=300)
    parser.add_argument("--tune", type=int, default=300)
    args = parser.parse_args()

    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="pymc-modal-bench-")
    common = {
        "draws": args.draws,
        "tune": args.tune,
        "chains": 2,
        "random_seed": 1,
        "var_names": ["alpha", "beta"],
        "backend": "local",
        "progressbar": False,
        "compute_convergence_checks": False,
        "quiet": True,
        "refit": True,
    }
    simulated = [
        simulate(args.observations, args.groups, args.covariates, seed=seed)
        for seed in range(args.datasets)
    ]
    truths = [data["truth"] for data in simulated]
    rows = {}
    with pytensor.config.change_flags(floatX="float32"):
        models = [build_model(data) for data in simulated]
        local.BACKEND.close()
        start = time.perf_counter()
        looped = [pymc_modal.sample(model=model, **common) for model in models]
        rows["sample() in a loop"] = (time.perf_counter() - start, looped)
        local.BACKEND.close()
        start = time.perf_counter()
        mapped = pymc_modal.map(models, **common)
        rows["map()"] = (time.perf_counter() - start, mapped)
        local.BACKEND.close()

    same = all(
        np.array_equal(a.posterior["beta"].values, b.posterior["beta"].values)
        for a, b in zip(looped, mapped, strict=True)
    )
    print(
        f"\n{args.datasets} datasets, flagship {args.observations:,} x {args.groups} x "
        f"{args.covariates}, 2 chains x ({args.tune} tune + {args.draws} draws), "
        f"local backend, {os.cpu_count()} cores"
    )
    print("| how | wall (s) | per fit (s) | coverage of true betas by 90% intervals |")
    print("|---|---|---|---|")
    for name, (wall, fits) in rows.items():
        per_fit = wall / args.datasets
        print(f"| {name} | {wall:.1f} | {per_fit:.1f} | {_coverage(fits, truths):.2f} |")
    ratio = rows["sample() in a loop"][0] / rows["map()"][0]
    print(f"\nmap() is {ratio:.2f}x faster; same draws as the loop: {same}")


if __name__ == "__main__":
    main()
