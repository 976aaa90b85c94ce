"""How long each refusal takes: mistakes refused on the client, before any worker starts.

Each call is made twice in one process on the local backend, with the
backend's ``store_blobs`` and ``submit`` replaced by a stub that fails if
reached; the table gives the second call's seconds (the first pays for
imports). ``--flagship`` adds the flagship at the given size, where the
initial point check evaluates the log density at every chain's start.

    python benchmarks/refusals.py [--flagship 20000 2000 20]
"""

import argparse
import time
import warnings

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
from _flagship import FIXED_EFFECTS, build_model, simulate

import pymc_modal
from pymc_modal.backends.local import LocalBackend


class Shipped(Exception):
    """A call reached the backend: it was not refused."""


def _ship(*args, **kwargs):
    raise Shipped


def _small() -> pm.Model:
    with pm.Model() as model:
        mu = pm.Normal("mu", 0, 1, shape=3)
        sigma = pm.HalfNormal("sigma", 1)
        pm.Normal("y", mu.sum(), sigma, observed=np.ones(5))
    return model


def _bad_start() -> pm.Model:
    with pm.Model() as model:
        x = pm.Normal("x", 0, 1)
        pm.Potential("wall", pt.switch(x > 100, 0.0, -np.inf))
    return model


ROWS = [
    ("draws=-1", {"draws": -1}),
    ("draws=0", {"draws": 0}),
    ("tune=-5", {"tune": -5}),
    ("chains=0", {"chains": 0}),
    ("initvals={'nope': 1.0}", {"initvals": {"nope": 1.0}}),
    ("initvals of the wrong shape", {"initvals": {"mu": np.ones(2)}}),
    ("nuts={'max_tree_depth': -1}", {"nuts": {"max_tree_depth": -1}}),
    ("log density -inf at the start", {"model": _bad_start}),
    ("gpu=123", {"gpu": 123}),
]


def _time(kwargs: dict) -> tuple[float, str]:
    for _ in range(2):
        start = time.perf_counter()
        try:
            pymc_modal.sample(**{"backend": "local", "random_seed": 1, **kwargs})
            outcome = "sampled?"
        except Shipped:
            outcome = "shipped"
        except pymc_modal.errors.PymcModalError as exc:
            outcome = type(exc).__name__
        seconds = time.perf_counter() - start
    return seconds, outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flagship", type=int, nargs=3, metavar=("OBS", "GROUPS", "COVS"))
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    LocalBackend.store_blobs = LocalBackend.submit = _ship
    rows = [(name, {**kwargs, "model": kwargs.get("model", _small)()}) for name, kwargs in ROWS]
    rows.append(("a good call (reaches the backend)", {"model": _small()}))
    print("| call | outcome | seconds |\n|---|---|---|")
    for name, kwargs in rows:
        _print_row(name, kwargs)
    if args.flagship:
        pytensor.config.floatX = "float32"  # as the example samples it
        flagship = build_model(simulate(*args.flagship))
        size = "x".join(map(str, args.flagship))
        fixed = {"model": flagship, "var_names": FIXED_EFFECTS}
        _print_row(f"flagship {size} (reaches the backend)", fixed)
        _print_row(f"flagship {size}, draws=0", {**fixed, "draws": 0})


def _print_row(name: str, kwargs: dict) -> None:
    seconds, outcome = _time({"chains": 4, **kwargs})
    print(f"| `{name}` | {outcome} | {seconds:.3f} |")


if __name__ == "__main__":
    main()
