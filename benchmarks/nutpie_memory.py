"""What ``sampler="nutpie"`` holds in memory per draw, against what it returns.

nutpie 0.16 stores every draw's unconstrained position and gradient in its
trace whatever it is asked to store (its ``store_*`` settings only hide them
when the trace is converted), so the worker's memory grows with the number of
parameters, not with ``var_names``. A model of ``--parameters`` independent
normals, of which the run keeps one scalar, sampled by the worker's nutpie
path in this process (4 chains, 100 tuning steps); each draw count in a fresh
process. The figure is the growth of peak resident memory over the model's
build, per draw per chain (warm-up's included), and per parameter.

    python benchmarks/nutpie_memory.py [--parameters 42000 --draws 400 1600]
"""

import argparse
import subprocess
import sys
import threading
import time

CHAINS, TUNE = 4, 100


def _resident_mib() -> float:
    with open("/proc/self/status") as status:
        return int(status.read().split("VmRSS:")[1].split()[0]) / 1024


def one(parameters: int, draws: int) -> None:
    """Sample in this process and print one row."""
    import pymc as pm
    import pytensor

    from pymc_modal.job import SampleSettings
    from pymc_modal.payload import Job
    from pymc_modal.worker import nutpie

    peak = [0.0]

    def watch():
        while True:
            peak[0] = max(peak[0], _resident_mib())
            time.sleep(0.1)

    threading.Thread(target=watch, daemon=True).start()
    with pytensor.config.change_flags(floatX="float32"):
        with pm.Model() as model:
            pm.Normal("x", shape=parameters)
            pm.Normal("mu")
        settings = SampleSettings(
            draws=draws,
            tune=TUNE,
            chains=CHAINS,
            target_accept=0.8,
            seed=1,
            initvals=None,
            var_names=["mu"],
            progressbar=False,
            log_likelihood=False,
            float_x="float32",
            sampler="nutpie",
        )
        base = _resident_mib()
        nutpie.sample(Job(model, settings, [], None))
    growth = (peak[0] - base) * 1024**2 / (CHAINS * (TUNE + draws))
    print(
        f"| {parameters + 1:,} | {CHAINS} x ({TUNE} + {draws}) | {base:,.0f} | {peak[0]:,.0f} | "
        f"{growth / 1024:,.0f} | {growth / (parameters + 1):.1f} |",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--parameters", type=int, default=42_000)
    parser.add_argument("--draws", type=int, nargs="+", default=[400, 1600])
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        one(args.parameters, args.one)
        return
    print("nutpie through the worker, keeping one scalar; peak resident memory")
    print(
        "| parameters | chains x (tune + draws) | before (MiB) | peak (MiB) | "
        "KiB per draw per chain | bytes per parameter per draw per chain |"
    )
    print("|---|---|---|---|---|---|", flush=True)
    for draws in args.draws:
        subprocess.run(
            [sys.executable, __file__, "--parameters", str(args.parameters), "--one", str(draws)],
            check=True,
        )


if __name__ == "__main__":
    main()
