"""Data stored once: what the full flagship ships on a first run and on a repeat.

The job is encoded with its large arrays as content-addressed blobs and the
blobs stored with the local backend's store (in a fresh temporary cache), then
the same data, in a model built anew, is encoded and stored again. The inline
job (every array inside it, as without the cache) is the baseline.

    python benchmarks/data_cache.py [--observations 1000000 --groups 100000]
"""

import argparse
import os
import tempfile
import time

import pytensor
from _flagship import SHIPPED_SETTINGS, build_model, simulate

from pymc_modal import payload
from pymc_modal.backends import local


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--observations", type=int, default=1_000_000)
    parser.add_argument("--groups", type=int, default=100_000)
    parser.add_argument("--covariates", type=int, default=20)
    args = parser.parse_args()

    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="pymc-modal-bench-")
    data = simulate(args.observations, args.groups, args.covariates)
    settings = SHIPPED_SETTINGS
    rows = []
    with pytensor.config.change_flags(floatX="float32"):
        for name in ("first run", "repeat, same data"):
            model = build_model(data)
            blobs = {}
            start = time.perf_counter()
            job = payload.encode_job(model, settings, blobs)
            serialize = time.perf_counter() - start
            start = time.perf_counter()
            stored = local.BACKEND.store_blobs(blobs)
            rows.append((name, serialize, len(job), time.perf_counter() - start, stored))
        model = build_model(data)
        start = time.perf_counter()
        inline = payload.encode_job(model, settings)
        rows.append(("inline (no cache)", time.perf_counter() - start, len(inline), 0.0, 0))

    print(f"\nflagship {args.observations:,} x {args.groups:,} x {args.covariates}")
    print("| run | serialize (s) | job bytes | store (s) | data bytes stored | bytes shipped |")
    print("|---|---|---|---|---|---|")
    for name, serialize, job_bytes, store, stored in rows:
        print(
            f"| {name} | {serialize:.3f} | {job_bytes:,} | {store:.3f} | {stored:,} | "
            f"{job_bytes + stored:,} |"
        )


if __name__ == "__main__":
    main()
