"""How local-backend wall time and peak memory grow with the number of groups.

The flagship with observations = 10 x groups and 20 covariates, 1 chain of
20 tune + 20 draws (tree depth capped at 6, so at most 63 gradients a draw),
each size in a fresh process so that the worker's peak RSS is its own.

    python benchmarks/scaling.py [--groups 1000 10000 100000]
"""

import argparse
import json
import resource
import subprocess
import sys
import time

import pytensor
from _flagship import FIXED_EFFECTS, build_model, simulate

import pymc_modal


def one(groups: int) -> dict:
    data = simulate(10 * groups, groups, 20)
    start = time.perf_counter()
    # The session's end ends the worker, so that its peak memory is counted.
    with pytensor.config.change_flags(floatX="float32"), pymc_modal.session():
        idata = pymc_modal.sample(
            draws=20,
            tune=20,
            chains=1,
            random_seed=1,
            var_names=FIXED_EFFECTS,
            model=build_model(data),
            backend="local",
            refit=True,
            progressbar=False,
            compute_convergence_checks=False,
            quiet=True,
            nuts_sampler_kwargs={"max_tree_depth": 6},
        )
    wall = time.perf_counter() - start
    gradients = int(idata["sample_stats"]["n_steps"].sum())
    return {
        "groups": groups,
        "parameters": 1 + 20 + 1 + 20 + groups * 21,
        "wall": wall,
        "sampling": idata.attrs["sampling_time"],
        "gradients_in_draws": gradients,
        "client_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "worker_peak_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--groups", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one)))
        return
    rows = []
    for groups in args.groups:
        out = subprocess.run(
            [sys.executable, __file__, "--one", str(groups)],
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(
        "| groups | parameters | wall (s) | sampling (s) | gradients (draws) "
        "| worker peak RSS (MiB) | client peak RSS (MiB) |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['groups']:,} | {r['parameters']:,} | {r['wall']:.1f} | {r['sampling']:.1f} "
            f"| {r['gradients_in_draws']:,} | {r['worker_peak_mib']:.0f} "
            f"| {r['client_peak_mib']:.0f} |"
        )


if __name__ == "__main__":
    main()
