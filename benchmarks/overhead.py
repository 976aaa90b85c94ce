"""Local-backend overhead: pymc_modal.sample(backend="local") vs in-process pm.sample.

Both sample the flagship at a CPU size with the same seed, draws and chains,
in alternating runs; the table gives each run's wall time and the ratio of the
medians. Target: at most 1.10x at a workload of about a minute.

    python benchmarks/overhead.py [--observations 10000 --groups 100 --repeats 2]
"""

import argparse
import statistics
import time

import pymc as pm
import pytensor
from _flagship import FIXED_EFFECTS, build_model, simulate

import pymc_modal


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--observations", type=int, default=10_000)
    parser.add_argument("--groups", type=int, default=100)
    parser.add_argument("--covariates", type=int, default=20)
    parser.add_argument("--draws", type=int, default=300)
    parser.add_argument("--tune", type=int, default=300)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    data = simulate(args.observations, args.groups, args.covariates)
    common = {
        "draws": args.draws,
        "tune": args.tune,
        "chains": args.chains,
        "random_seed": 1,
        "var_names": FIXED_EFFECTS,
        "progressbar": False,
        "compute_convergence_checks": False,
    }
    runs = {"pm.sample (in-process)": [], "pymc_modal local": []}
    with pytensor.config.change_flags(floatX="float32"):
        model = build_model(data)
        for _ in range(args.repeats):
            start = time.perf_counter()
            pm.sample(model=model, nuts_sampler="numpyro", **common)
            runs["pm.sample (in-process)"].append(time.perf_counter() - start)
            start = time.perf_counter()
            # A cold worker each time, as pm.sample compiles each time: warm.py measures reuse.
            with pymc_modal.session():
                idata = pymc_modal.sample(
                    model=model, backend="local", quiet=True, refit=True, **common
                )
            runs["pymc_modal local"].append(time.perf_counter() - start)

    print(
        f"\nflagship {args.observations:,} x {args.groups:,} x {args.covariates}, "
        f"{args.chains} chains x ({args.tune} tune + {args.draws} draws)"
    )
    print(f"| run | {' | '.join(f'wall {i + 1} (s)' for i in range(args.repeats))} | median |")
    print(f"|---|{'---|' * args.repeats}---|")
    for name, walls in runs.items():
        cells = " | ".join(f"{w:.1f}" for w in walls)
        print(f"| {name} | {cells} | {statistics.median(walls):.1f} |")
    ratio = statistics.median(runs["pymc_modal local"]) / statistics.median(
        runs["pm.sample (in-process)"]
    )
    print(f"\nratio local / in-process (medians): {ratio:.3f}x  (target <= 1.10x)")
    prefix = "pymc_modal_seconds_"
    phases = {k[len(prefix) :]: v for k, v in idata.attrs.items() if k.startswith(prefix)}
    print(
        "last local run, seconds by phase: " + ", ".join(f"{k} {v:.1f}" for k, v in phases.items())
    )


if __name__ == "__main__":
    main()
