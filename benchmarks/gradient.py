"""Gradient of the flagship's log density: PyTensor (compiled C) vs JAX (jitted), this device.

Medians over repeated evaluations after warm-up; JAX results are synchronised
with block_until_ready. float32 throughout, as the flagship is run. With
--chains, also the JAX value-and-gradient batched (vmap) over that many chains,
as vectorized chains evaluate it: the data is read once for all of them.

    python benchmarks/gradient.py [--sizes 10000:1000 100000:10000 1000000:100000]
                                  [--chains 4 16]
"""

import argparse
import statistics
import time

import jax
import numpy as np
import pytensor
from _flagship import build_model, simulate
from pymc.sampling.jax import get_jaxified_logp


def _median_seconds(repeats: int, fn, *args) -> float:
    jax.block_until_ready(fn(*args))  # warm-up (and compilation)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--sizes",
        nargs="+",
        default=["10000:1000", "100000:10000", "1000000:100000"],
        help="observations:groups pairs",
    )
    parser.add_argument("--covariates", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--chains", type=int, nargs="*", default=[], help="batch sizes")
    args = parser.parse_args()

    jax.config.update("jax_enable_x64", False)  # as the worker runs a float32 model
    device = jax.devices()[0]
    rows = []
    for size in args.sizes:
        observations, groups = map(int, size.split(":"))
        data = simulate(observations, groups, args.covariates)
        with pytensor.config.change_flags(floatX="float32"):
            model = build_model(data)
            point = model.initial_point()
            dlogp = model.compile_dlogp()
            logp = get_jaxified_logp(model, negative_logp=False)
        values = [jax.device_put(point[v.name]) for v in model.value_vars]
        value_and_grad = jax.jit(jax.value_and_grad(logp))
        pytensor_s = _median_seconds(max(3, args.repeats // 4), dlogp, point)
        jax_s = _median_seconds(args.repeats, value_and_grad, values)
        batched = jax.jit(jax.vmap(jax.value_and_grad(logp)))
        batched_s = [
            _median_seconds(args.repeats, batched, [jax.numpy.stack([v] * n) for v in values])
            for n in args.chains
        ]
        parameters = sum(int(np.size(value)) for value in point.values())
        rows.append((observations, groups, parameters, pytensor_s, jax_s, batched_s))

    print(f"\ndevice: {device.platform} ({device.device_kind})")
    batch_heads = "".join(f" JAX x{n} chains (ms, vs 1) |" for n in args.chains)
    print(
        "| observations | groups | parameters | PyTensor dlogp (ms) | JAX value+grad (ms) "
        f"| ratio |{batch_heads}"
    )
    print("|---|---|---|---|---|---|" + "---|" * len(args.chains))
    for observations, groups, parameters, pytensor_s, jax_s, batched_s in rows:
        batch_cells = "".join(f" {b * 1e3:.2f} ({b / jax_s:.1f}x) |" for b in batched_s)
        print(
            f"| {observations:,} | {groups:,} | {parameters:,} | {pytensor_s * 1e3:.2f} | "
            f"{jax_s * 1e3:.2f} | {pytensor_s / jax_s:.1f}x |{batch_cells}"
        )


if __name__ == "__main__":
    main()
