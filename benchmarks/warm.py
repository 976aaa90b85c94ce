"""Repeat work: a first call, a second on the warm worker, an identical one from the store.

The flagship at a CPU size on the local backend (a long-lived worker process
plays Modal's warm container): a cold first call; a second call with another
seed, which finds the worker warm with the model compiled; then the second
call again, which the result store answers. Overhead is a call's wall time
less its tuning and drawing. Also the bytes a result brings back, against
what it would bring if the observed and constant data came back with it
(at this size, measured; at full size, from the client's estimate).

    python benchmarks/warm.py [--observations 10000 --groups 100]
"""

import argparse
import os
import tempfile
import time

import pytensor
from _flagship import FIXED_EFFECTS, SHIPPED_SETTINGS, build_model, simulate

import pymc_modal
from pymc_modal import preflight
from pymc_modal.backends import local


def _data_bytes(idata) -> int:
    return sum(idata[group].nbytes for group in ("observed_data", "constant_data"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--observations", type=int, default=10_000)
    parser.add_argument("--groups", type=int, default=100)
    parser.add_argument("--covariates", type=int, default=20)
    parser.add_argument("--draws", type=int, default=300)
    parser.add_argument("--tune", type=int, default=300)
    parser.add_argument("--chains", type=int, default=2)
    args = parser.parse_args()

    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="pymc-modal-bench-")
    common = {
        "draws": args.draws,
        "tune": args.tune,
        "chains": args.chains,
        "var_names": FIXED_EFFECTS,
        "backend": "local",
        "progressbar": False,
        "compute_convergence_checks": False,
        "quiet": True,
    }
    calls = [
        ("first (cold worker)", {"random_seed": 1}),
        ("second, other seed (warm worker)", {"random_seed": 2}),
        ("second again (stored result)", {"random_seed": 2}),
    ]
    rows = []
    local.BACKEND.close()
    with pytensor.config.change_flags(floatX="float32"):
        model = build_model(simulate(args.observations, args.groups, args.covariates))
        for name, kwargs in calls:
            start = time.perf_counter()
            idata = pymc_modal.sample(model=model, **common, **kwargs)
            wall = time.perf_counter() - start
            stored = "pymc_modal_stored_at" in idata.attrs
            sampling = 0.0
            if not stored:
                sampling = idata.attrs["pymc_modal_seconds_sample"]
            rows.append((name, wall, sampling, idata))
        full = simulate(1_000_000, 100_000, args.covariates)
        full_model = build_model(full)
        full_estimate = preflight.check(full_model, SHIPPED_SETTINGS, 2**40).result_bytes
    local.BACKEND.close()

    print(
        f"\nflagship {args.observations:,} x {args.groups:,} x {args.covariates}, "
        f"{args.chains} chains x ({args.tune} tune + {args.draws} draws), local backend"
    )
    print("| call | wall (s) | tuning + drawing (s) | overhead (s) | compile (s) |")
    print("|---|---|---|---|---|")
    for name, wall, sampling, idata in rows:
        compiled = "-" if sampling == 0 else f"{idata.attrs['pymc_modal_seconds_compile']:.2f}"
        print(f"| {name} | {wall:.2f} | {sampling:.2f} | {wall - sampling:.2f} | {compiled} |")
    first, second = (wall - sampling for _, wall, sampling, _ in rows[:2])
    print(f"\nsecond-call overhead: {first / second:.1f}x less than the first (target >= 5x)")

    idata = rows[0][3]
    returned = idata.attrs["pymc_modal_returned_bytes"]
    data = _data_bytes(idata)
    full_data = full["x"].nbytes + full["y"].nbytes
    print("\n| flagship | returned (bytes) | with observed + constant data (bytes) |")
    print("|---|---|---|")
    print(f"| this size, {args.chains} x {args.draws} draws | {returned:,} | {returned + data:,} |")
    print(
        f"| full size, {SHIPPED_SETTINGS.chains} x {SHIPPED_SETTINGS.draws} draws (estimate) "
        f"| {full_estimate:,} | {full_estimate + full_data:,} |"
    )


if __name__ == "__main__":
    main()
