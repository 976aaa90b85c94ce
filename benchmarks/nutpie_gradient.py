"""nutpie's gradient on a CPU: numba, as nutpie compiles PyMC models, against the worker's JAX.

nutpie's Rust sampler calls the model's log density and gradient once per
leapfrog step. Its own PyMC compilation (``nutpie.compile_pymc_model``)
compiles them with numba; ``sampler="nutpie"`` hands it PyMC's JAX log
density instead (:func:`pymc_modal.worker.nutpie.sample`). Both are timed
here, one thread, at PyMC's initial point, median of ``--evaluations``: the
numba one as PyMC compiles it (``Model.logp_dlogp_function(mode="NUMBA")``,
the graph nutpie compiles), the JAX one as the worker calls it.

    python benchmarks/nutpie_gradient.py [--observations 20000 --groups 2000 --covariates 20]
"""

import argparse
import time

import jax
import numpy as np
import pytensor
from _flagship import build_model, simulate
from jax.flatten_util import ravel_pytree
from pymc.sampling.jax import get_jaxified_logp


def _jax_logp(model):
    """The log density and gradient as the worker hands them to nutpie."""
    logp_fn = get_jaxified_logp(model)
    point = model.initial_point()
    flat, unravel = ravel_pytree([point[v.name] for v in model.value_vars])
    value_and_grad = jax.jit(jax.value_and_grad(lambda x: logp_fn(unravel(x.astype(flat.dtype)))))

    def logp(x):
        value, grad = value_and_grad(x)
        return float(value), np.asarray(grad, dtype=np.float64)

    return logp


def _median_seconds(function, point, evaluations: int) -> float:
    function(point)  # compiles
    times = []
    for _ in range(evaluations):
        start = time.perf_counter()
        function(point)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--observations", type=int, default=20_000)
    parser.add_argument("--groups", type=int, default=2_000)
    parser.add_argument("--covariates", type=int, default=20)
    parser.add_argument("--evaluations", type=int, default=500)
    args = parser.parse_args()

    with pytensor.config.change_flags(floatX="float32"):
        model = build_model(simulate(args.observations, args.groups, args.covariates))
        numba = model.logp_dlogp_function(ravel_inputs=True, mode="NUMBA")
        numba.set_extra_values({})
        jax_logp = _jax_logp(model)
    point = np.concatenate([np.ravel(v) for v in model.initial_point().values()])
    print(
        f"flagship {args.observations:,} x {args.groups:,} x {args.covariates} "
        f"({point.size:,} parameters), float32, one thread, median of {args.evaluations:,}"
    )
    print("| log density and gradient | ms per evaluation |")
    print("|---|---|")
    for name, function in (
        ("numba, as nutpie compiles it", numba),
        ("JAX, as the worker hands it to nutpie", jax_logp),
    ):
        print(f"| {name} | {1000 * _median_seconds(function, point, args.evaluations):.2f} |")


if __name__ == "__main__":
    main()
