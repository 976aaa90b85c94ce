"""Chains vectorized on one worker vs the same chains spread over several workers.

The flagship at a CPU size, 4 chains, local backend: one worker running the
chains vectorized, then workers=2 and workers=4 (one process each, chains
vectorized inside each). Per run: the wall time and the longest worker's
seconds in each phase. On the local backend the workers share this machine's
cores; on Modal each has a GPU of its own.

    python benchmarks/chains.py [--observations 10000 --groups 100 --workers 1 2 4]
"""

import argparse
import time

import pytensor
from _flagship import FIXED_EFFECTS, build_model, simulate

import pymc_modal


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--observations", type=int, default=10_000)
    parser.add_argument("--groups", type=int, default=100)
    parser.add_argument("--covariates", type=int, default=20)
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--tune", type=int, default=200)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()

    data = simulate(args.observations, args.groups, args.covariates)
    rows = []
    with pytensor.config.change_flags(floatX="float32"):
        model = build_model(data)
        for workers in args.workers:
            start = time.perf_counter()
            idata = pymc_modal.sample(
                model=model,
                draws=args.draws,
                tune=args.tune,
                chains=args.chains,
                random_seed=1,
                var_names=FIXED_EFFECTS,
                nuts_sampler_kwargs={"chain_method": "vectorized"},
                workers=workers,
                backend="local",
                refit=True,
                progressbar=False,
                compute_convergence_checks=False,
            )
            wall = time.perf_counter() - start
            seconds = {
                phase: idata.attrs[f"pymc_modal_seconds_{phase}"]
                for phase in ("start", "compile", "sample")
            }
            rows.append((workers, wall, seconds))

    print(
        f"\nflagship {args.observations:,} x {args.groups:,} x {args.covariates}, "
        f"{args.chains} chains x ({args.tune} tune + {args.draws} draws), local backend"
    )
    print("| workers | wall (s) | start (s) | compile (s) | sample (s) | wall vs 1 |")
    print("|---|---|---|---|---|---|")
    for workers, wall, seconds in rows:
        cells = " | ".join(f"{seconds[phase]:.1f}" for phase in ("start", "compile", "sample"))
        print(f"| {workers} | {wall:.1f} | {cells} | {wall / rows[0][1]:.2f}x |")


if __name__ == "__main__":
    main()
