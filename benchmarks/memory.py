"""Peak memory of sampling the flagship: pymc_modal's lean trace vs PyMC's numpyro path.

pm.sample(nuts_sampler="numpyro", var_names=...) collects every unconstrained
value of every draw before it keeps the requested variables; pymc_modal keeps
only those as each draw is collected. Each run is a fresh process; the figure
is the peak resident memory of the process that sampled (the worker, for
pymc_modal). Target: lean at least 5x lower, growing with var_names, not with
the number of parameters.

    python benchmarks/memory.py [--groups 10000 --draws 1000]
"""

import argparse
import json
import resource
import subprocess
import sys
import time

import pytensor
from _flagship import FIXED_EFFECTS, build_model, simulate


def one(how: str, groups: int, draws: int, tune: int, chains: int) -> dict:
    import pymc as pm

    import pymc_modal

    data = simulate(10 * groups, groups, 20)
    common = {
        "draws": draws,
        "tune": tune,
        "chains": chains,
        "random_seed": 1,
        "var_names": FIXED_EFFECTS,
        "progressbar": False,
        "compute_convergence_checks": False,
    }
    sampler = {"chain_method": "vectorized", "nuts_kwargs": {"max_tree_depth": 4}}
    start = time.perf_counter()
    with pytensor.config.change_flags(floatX="float32"):
        model = build_model(data)
        if how == "pm":
            pm.sample(model=model, nuts_sampler="numpyro", nuts_sampler_kwargs=sampler, **common)
        else:
            # The session's end ends the worker, so that its peak memory is counted.
            with pymc_modal.session():
                pymc_modal.sample(
                    model=model,
                    backend="local",
                    quiet=True,
                    refit=True,
                    nuts_sampler_kwargs=sampler,
                    **common,
                )
    wall = time.perf_counter() - start
    who = resource.RUSAGE_SELF if how == "pm" else resource.RUSAGE_CHILDREN
    return {"how": how, "wall": wall, "peak_mib": resource.getrusage(who).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--groups", type=int, default=10_000)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=100)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--one", choices=["pm", "lean"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.groups, args.draws, args.tune, args.chains)))
        return
    rows = []
    for how in ("pm", "lean"):
        command = [sys.executable, __file__, "--one", how, "--groups", str(args.groups)]
        command += ["--draws", str(args.draws), "--tune", str(args.tune)]
        command += ["--chains", str(args.chains)]
        out = subprocess.run(command, capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    parameters = 42 + 21 * args.groups
    raw_mib = parameters * args.draws * args.chains * 4 / 1024**2
    print(
        f"\nflagship {10 * args.groups:,} x {args.groups:,} x 20 ({parameters:,} parameters), "
        f"{args.chains} chains x ({args.tune} tune + {args.draws} draws), "
        f"var_names={FIXED_EFFECTS}; every raw draw is {raw_mib:,.0f} MiB of float32"
    )
    print("| run | wall (s) | peak RSS of the sampling process (MiB) |")
    print("|---|---|---|")
    names = {"pm": "pm.sample(nuts_sampler='numpyro')", "lean": "pymc_modal local (lean)"}
    for row in rows:
        print(f"| {names[row['how']]} | {row['wall']:.1f} | {row['peak_mib']:,.0f} |")
    print(f"\nratio pm / lean: {rows[0]['peak_mib'] / rows[1]['peak_mib']:.1f}x (target >= 5x)")


if __name__ == "__main__":
    main()
