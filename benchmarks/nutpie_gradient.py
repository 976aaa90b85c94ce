"""nutpie on a CPU: numba, as nutpie compiles PyMC models, against the worker's JAX.

nutpie's Rust sampler calls the model's log density and gradient once per
leapfrog step. Its own PyMC compilation (``nutpie.compile_pymc_model``)
compiles them with numba; ``sampler="nutpie"`` hands it PyMC's JAX log
density instead (:func:`pymc_modal.worker.nutpie.sample`). First both
gradients alone, one thread, at PyMC's initial point, median of
``--evaluations``: the numba one as PyMC compiles it
(``Model.logp_dlogp_function(mode="NUMBA")``, the graph nutpie compiles), the
JAX one as the worker calls it. Then whole runs, 4 chains x (400 tune +
``--draws``), each chain a thread: nutpie's own numba compilation (keeping
the fixed effects only) in this process, and ``sampler="nutpie"`` on the
local backend, with wall time (compilation included), gradients while
drawing and the smallest bulk and tail ESS over the fixed effects.

    python benchmarks/nutpie_gradient.py [--observations 20000 --groups 2000 --covariates 20]
"""

import argparse
import os
import tempfile
import time

import arviz as az
import jax
import numpy as np
import nutpie
import pytensor
from _flagship import FIXED_EFFECTS, build_model, fit, simulate
from jax.flatten_util import ravel_pytree
from pymc.sampling.jax import get_jaxified_logp

TUNE = 400  # nutpie's default


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
    parser.add_argument("--draws", type=int, default=500)
    args = parser.parse_args()
    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="pymc-modal-bench-")

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

    print(f"\n4 chains x ({TUNE} + {args.draws}), each chain a thread, seed 1")
    print(
        "| nutpie with | wall (s) | of it compiling (s) | gradients while drawing | "
        "min bulk ESS | min tail ESS |"
    )
    print("|---|---|---|---|---|---|", flush=True)
    with pytensor.config.change_flags(floatX="float32"):
        for name, run in (
            ("numba, nutpie's own PyMC compilation", _numba_run),
            ("JAX, sampler='nutpie' (local backend)", _worker_run),
        ):
            start = time.perf_counter()
            idata, compiling = run(model, args.draws)
            wall = time.perf_counter() - start
            bulk, tail = (
                min(
                    float(np.min(az.ess(idata, var_names=[var], method=method)[var]))
                    for var in FIXED_EFFECTS
                )
                for method in ("bulk", "tail")
            )
            gradients = int(np.asarray(idata.sample_stats["n_steps"]).sum())
            print(
                f"| {name} | {wall:.1f} | {compiling} | {gradients:,} | {bulk:.0f} | {tail:.0f} |",
                flush=True,
            )


def _numba_run(model, draws: int):
    """nutpie's own compilation and sampler, keeping the fixed effects; and its compile seconds."""
    start = time.perf_counter()
    compiled = nutpie.compile_pymc_model(model, var_names=FIXED_EFFECTS)
    compiling = f"{time.perf_counter() - start:.1f}"
    idata = nutpie.sample(
        compiled, draws=draws, tune=TUNE, chains=4, cores=4, seed=1, progress_bar=False
    )
    return idata, compiling


def _worker_run(model, draws: int):
    """``sampler="nutpie"`` as a user calls it; its compilation is inside the call."""
    return fit(model, sampler="nutpie", chains=4, tune=TUNE, draws=draws, random_seed=1), "(in it)"


if __name__ == "__main__":
    main()
