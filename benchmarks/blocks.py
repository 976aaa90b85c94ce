"""What a worker holds after many blocks and many calls: seconds and memory mappings.

The worker's own entry (``pymc_modal.worker.run``, JAX's persistent cache on
as in a worker process) runs in this process, which counts its own memory
mappings (``/proc/self/maps``; Linux stops a process at 65,530):

``blocks``
    One run to an unreachable ``target_ess``, stopped by ``max_draws`` after
    ``--blocks`` blocks of ``--block`` draws: each block's seconds (as the
    worker's block report lines arrive) and the mappings then.
``calls``
    ``--calls`` calls of the same job with new seeds, as a warm worker serves a
    session: each call's seconds and the mappings after it.

A tiny model by default; ``--flagship`` samples the flagship at the CPU size
instead. Run it on another tree by putting that tree first on ``PYTHONPATH``.

    python benchmarks/blocks.py [--blocks 300 --block 2 --calls 200]
    python benchmarks/blocks.py --flagship --blocks 20 --block 10 --tune 100 --calls 0
"""

import argparse
import contextlib
import dataclasses
import io
import statistics
import sys
import tempfile
import time
import warnings

import numpy as np
import pymc as pm
import pytensor
from _flagship import FIXED_EFFECTS, build_model, simulate

from pymc_modal import payload, worker
from pymc_modal.job import SampleSettings


def _mappings() -> int:
    with open("/proc/self/maps") as maps:
        return sum(1 for _ in maps)


class _Blocks(io.StringIO):
    """Standard error that notes the time and mappings as each block reports itself."""

    def __init__(self) -> None:
        super().__init__()
        self.marks: list[tuple[float, int]] = []

    def write(self, text: str) -> int:
        if text.startswith("draws "):
            self.marks.append((time.perf_counter(), _mappings()))
        return super().write(text)


def _tiny() -> pm.Model:
    with pm.Model() as model:
        mu = pm.Normal("mu", 0, 1)
        pm.Normal("y", mu, 1, observed=np.array([0.1, -0.3, 0.5]))
    return model


def _row(case: str, count: int, seconds: list[float], mappings: list[int]) -> str:
    later = statistics.median(seconds[10:]) if len(seconds) > 10 else float("nan")
    return (
        f"| {case} | {count} | {seconds[0]:.2f} | {later:.3f} | {mappings[min(9, count - 1)]:,} | "
        f"{mappings[-1]:,} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--flagship", action="store_true")
    parser.add_argument("--blocks", type=int, default=300)
    parser.add_argument("--block", type=int, default=2)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--tune", type=int, default=5)
    parser.add_argument("--chains", type=int, default=2)
    args = parser.parse_args()

    worker.use_compilation_cache(tempfile.mkdtemp(prefix="pymc-modal-bench-jax-"))
    if args.flagship:
        pytensor.config.floatX = "float32"
        size = {"observations": 20_000, "groups": 2_000, "covariates": 20}
        model, var_names = build_model(simulate(**size, seed=827)), FIXED_EFFECTS
    else:
        model, var_names = _tiny(), None
    settings = SampleSettings(
        draws=args.block,
        tune=args.tune,
        chains=args.chains,
        target_accept=0.8,
        seed=1,
        initvals=None,
        var_names=var_names,
        progressbar=False,
        log_likelihood=False,
        float_x=pytensor.config.floatX,
    )
    print(
        "| case | count | first (s) | median after the 10th (s) | mappings at the 10th | "
        "at the last |\n|---|---|---|---|---|---|"
    )
    if args.blocks:
        blocked = dataclasses.replace(
            settings, target_ess=10**9, max_draws=args.blocks * args.block
        )
        stderr = _Blocks()
        start = time.perf_counter()
        with contextlib.redirect_stderr(stderr), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            payload.decode_result(worker.run(payload.encode_job(model, blocked)), "here")
        times = [start] + [when for when, _ in stderr.marks]
        seconds = [after - before for before, after in zip(times, times[1:], strict=False)]
        print(_row("blocks", len(seconds), seconds, [count for _, count in stderr.marks]))
        sys.stdout.flush()
    seconds, mappings = [], []
    for seed in range(args.calls):
        job = payload.encode_job(model, dataclasses.replace(settings, seed=seed), fingerprint="m")
        start = time.perf_counter()
        payload.decode_result(worker.run(job), "here")
        seconds.append(time.perf_counter() - start)
        mappings.append(_mappings())
    if args.calls:
        print(_row("calls", args.calls, seconds, mappings))


if __name__ == "__main__":
    main()
