"""Payload size and (de)serialization speed of the full flagship model with its data.

Target: at most 5% more bytes than the raw arrays, (de)serialized at 500 MB/s
or better.

    python benchmarks/payload.py [--observations 1000000 --groups 100000]
"""

import argparse
import statistics
import time

import numpy as np
import pytensor
from _flagship import SHIPPED_SETTINGS, build_model, simulate
from pytensor.compile.sharedvalue import SharedVariable
from pytensor.graph.basic import Constant, graph_inputs

from pymc_modal import payload


def model_array_bytes(model) -> int:
    """Bytes of the data arrays as the model holds them (PyMC may change their dtype)."""
    total = 0
    for var in graph_inputs([*model.named_vars.values(), *model.rvs_to_values.values()]):
        if isinstance(var, Constant):
            total += np.asarray(var.data).nbytes
        elif isinstance(var, SharedVariable):
            total += np.asarray(var.get_value(borrow=True)).nbytes
    return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--observations", type=int, default=1_000_000)
    parser.add_argument("--groups", type=int, default=100_000)
    parser.add_argument("--covariates", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    data = simulate(args.observations, args.groups, args.covariates)
    raw = sum(data[name].nbytes for name in ("x", "group", "y"))
    settings = SHIPPED_SETTINGS
    encode, decode = [], []
    with pytensor.config.change_flags(floatX="float32"):
        model = build_model(data)
        for _ in range(args.repeats):
            start = time.perf_counter()
            job = payload.encode_job(model, settings)
            encode.append(time.perf_counter() - start)
            start = time.perf_counter()
            payload.decode_job(job)
            decode.append(time.perf_counter() - start)

    held = model_array_bytes(model)
    size = len(job)
    mb = size / 1e6
    print(f"\nflagship {args.observations:,} x {args.groups:,} x {args.covariates}")
    print("| quantity | value |")
    print("|---|---|")
    print(f"| simulated array bytes (x float32, group int32, y int8) | {raw:,} |")
    print(f"| array bytes as the PyMC model holds them | {held:,} |")
    print(f"| payload bytes | {size:,} |")
    print(f"| payload / simulated arrays | {size / raw:.4f} |")
    print(f"| payload / arrays the model holds | {size / held:.4f} (target <= 1.05) |")
    print(
        f"| serialize, median of {args.repeats} | {statistics.median(encode):.3f} s, "
        f"{mb / statistics.median(encode):.0f} MB/s |"
    )
    print(
        f"| deserialize, median of {args.repeats} | {statistics.median(decode):.3f} s, "
        f"{mb / statistics.median(decode):.0f} MB/s |"
    )


if __name__ == "__main__":
    main()
