"""What saving a checkpoint after every block costs, beside the same run without them.

The flagship at the CPU size (20,000 observations x 2,000 groups x 20
covariates), sampled by the worker's own entry in this process to an
unreachable ``target_ess`` in ``--blocks`` blocks of ``--block`` draws, once
saving a checkpoint after warm-up and each block into a temporary folder and
once without, alternating, the same seed: the draws are the same. Prints
each run's sampling and checkpoint seconds (as the answer reports them) and
the checkpoint's size on disk.

    python benchmarks/checkpoints.py [--blocks 4 --block 50 --tune 100 --chains 2 --runs 2]
"""

import argparse
import contextlib
import io
import statistics
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytensor
from _flagship import FIXED_EFFECTS, build_model, simulate

from pymc_modal import payload, worker
from pymc_modal.job import SampleSettings


def _sample(job: bytes, folder: Path | None):
    storage = None if folder is None else worker.Storage(folder)
    with contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return payload.decode_result(worker.run(job, storage=storage), "here")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--block", type=int, default=50)
    parser.add_argument("--tune", type=int, default=100)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()

    worker.use_compilation_cache(tempfile.mkdtemp(prefix="pymc-modal-bench-jax-"))
    pytensor.config.floatX = "float32"
    size = {"observations": 20_000, "groups": 2_000, "covariates": 20}
    model = build_model(simulate(**size, seed=827))
    settings = SampleSettings(
        draws=args.block,
        tune=args.tune,
        chains=args.chains,
        target_accept=0.8,
        seed=1,
        initvals=None,
        var_names=FIXED_EFFECTS,
        progressbar=False,
        log_likelihood=False,
        float_x="float32",
        target_ess=10**9,
        max_draws=args.blocks * args.block,
    )
    # The same fingerprint each time: the programs are compiled by the first run only, and
    # its compile seconds are apart from its sampling seconds.
    job = payload.encode_job(model, settings, fingerprint="flagship", checkpoint="flagship")
    print(
        "| run | checkpoints | sample (s) | checkpoint (s) | checkpoint / sample | "
        "state on disk (bytes) | a block's draws on disk (bytes) |\n|---|---|---|---|---|---|---|"
    )
    ratios, samples = [], {True: [], False: []}
    first = {}
    for run in range(args.runs):
        for saving in (False, True):
            folder = Path(tempfile.mkdtemp(prefix="pymc-modal-bench-checkpoints-"))
            answer = _sample(job, folder if saving else None)
            first.setdefault(saving, answer)
            sample, saved = answer.seconds["sample"], answer.seconds["checkpoint"]
            samples[saving].append(sample + saved)
            state = draws = ""
            if saving:
                ratios.append(saved / sample)
                files = sorted((folder / "flagship").iterdir())
                state = f"{(folder / 'flagship' / 'state').stat().st_size:,}"
                draws = f"{max(f.stat().st_size for f in files if f.name != 'state'):,}"
            print(
                f"| {run + 1} | {'yes' if saving else 'no'} | {sample:.1f} | {saved:.3f} | "
                f"{saved / sample:.2%} | {state} | {draws} |"
            )
    same = all(
        np.array_equal(first[True].posterior[name], first[False].posterior[name])
        for name in first[False].posterior
    )
    with_, without = statistics.median(samples[True]), statistics.median(samples[False])
    print(
        f"\ncheckpoint / sample, median: {statistics.median(ratios):.3%}; sample + checkpoint, "
        f"with / without (medians): {with_ / without:.3f}x; the same draws: {same}"
    )


if __name__ == "__main__":
    main()
