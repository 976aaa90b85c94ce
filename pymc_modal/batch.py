"""Many fits in one call: ``pymc_modal.map`` over models or over datasets for one model.

``map(items, **kwargs)`` returns what ``[sample(model=m, **kwargs) for m in
items]`` would, but every fit is checked and planned first, the store is
asked for each, and only then are the fits still to run encoded and run all
at once: on Modal through ``Function.map``, a container each; locally on
warm worker processes, as many at a time as this machine has cores. One fit's
failure is reported with its traceback and takes its place in the list; the
other fits' results are kept.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pymc as pm
from pymc.model import modelcontext

from pymc_modal import payload, pipeline
from pymc_modal.backends import Delivery
from pymc_modal.client import prepare
from pymc_modal.convergence import format_seconds
from pymc_modal.errors import InvalidOptionError

__all__ = ["map"]

_log = logging.getLogger("pymc_modal")


def _fits(items: Sequence[Any], model) -> list[tuple[pm.Model, Mapping[str, Any] | None]]:
    """Each fit's model and the dataset to set into it (None for a model of its own)."""
    if all(isinstance(item, pm.Model) for item in items):
        if model is not None:
            raise InvalidOptionError(
                "map() got models and model=; pass either models, or datasets and model=."
            )
        return [(item, None) for item in items]
    if not all(isinstance(item, Mapping) for item in items):
        raise InvalidOptionError(
            "map() takes a list of pymc.Model, or a list of datasets (dicts of pm.Data "
            "names to arrays, as pm.set_data takes them) with model=."
        )
    model = modelcontext(model)
    unknown = sorted({name for item in items for name in item} - {v.name for v in model.data_vars})
    if unknown:
        raise InvalidOptionError(
            f"The datasets set {', '.join(unknown)}, which the model has no pm.Data for; "
            f"its pm.Data are {', '.join(v.name for v in model.data_vars) or 'none'}."
        )
    return [(model, item) for item in items]


@contextlib.contextmanager
def _set(model: pm.Model, dataset: Mapping[str, Any] | None) -> Iterator[None]:
    """``dataset`` set into ``model`` for the block, over the model's own data, then undone."""
    if dataset is None:
        yield
        return
    original = {v.name: v.get_value() for v in model.data_vars}
    pm.set_data({**original, **dataset}, model=model)
    try:
        yield
    finally:
        pm.set_data(original, model=model)


def map(  # noqa: A001 -- named for Modal's Function.map and the builtin it fans out
    models_or_datasets: Sequence[pm.Model] | Sequence[Mapping[str, Any]],
    *,
    model: pm.Model | None = None,
    **sample_kwargs: Any,
) -> list:
    """Fit many models, or one model to many datasets, at once.

    Parameters
    ----------
    models_or_datasets : list of pymc.Model, or list of dict
        The models to fit; or datasets, each a dict of the model's ``pm.Data``
        names to new values (as :func:`pymc.set_data` takes them), each fitted
        with ``model``.
    model : pymc.Model, optional
        The model the datasets are set into; by default the one in the
        enclosing ``with`` block. Its own data is restored afterwards.
    **sample_kwargs
        Arguments of :func:`pymc_modal.sample`, the same for every fit
        (``random_seed`` included), but ``progressbar`` is False unless
        given: a line per fit reports its end instead. ``wait=False`` is not
        available here.

    Returns
    -------
    list
        One entry per model or dataset, in order: what
        :func:`pymc_modal.sample` returns, or, for a fit that failed, its
        exception (the worker's traceback in its notes). A stored result of an
        identical fit is returned without running it again, unless
        ``refit=True``.

    Raises
    ------
    pymc_modal.errors.PymcModalError
        If any fit fails its checks (before anything is shipped), or the
        items are neither all models nor all datasets.

    Examples
    --------
    .. code-block:: python

        datasets = [{"y": simulate(seed)} for seed in range(20)]
        fits = pymc_modal.map(datasets, model=model, draws=500, random_seed=1)
    """
    if "wait" in sample_kwargs:
        raise InvalidOptionError("map() always waits for its fits; call sample(wait=False).")
    refit = sample_kwargs.pop("refit", False)
    # The per-fit lines are the progress; many interleaved bars would not be.
    sample_kwargs.setdefault("progressbar", False)
    started = time.perf_counter()
    fits = _fits(list(models_or_datasets), model)
    plans = []
    for fit_model, dataset in fits:
        with _set(fit_model, dataset):
            plans.append(pipeline.plan(prepare(model=fit_model, **sample_kwargs)))
    results: list[Any] = [None if refit else pipeline.stored(planned) for planned in plans]
    to_run = [i for i, found in enumerate(results) if found is None]
    if not to_run:
        return results
    encoded = []
    for i in to_run:
        with _set(*fits[i]):
            encoded.append(pipeline.encode(plans[i]))
    jobs = sum(len(call.jobs) for call in encoded)
    # As many local processes at once as there are cores; Modal runs every job at once.
    options = dataclasses.replace(
        plans[to_run[0]].request.options, workers=min(jobs, os.cpu_count() or 1)
    )

    def report(index: int, deliveries: list[Delivery]) -> None:
        if plans[to_run[index]].request.quiet:
            return
        failed = any(payload.answer_status(d.answer) != "ok" for d in deliveries)
        _log.info(
            "Fit %d/%d %s on %s (%s since the start).",
            to_run[index] + 1,
            len(plans),
            "failed" if failed else "done",
            deliveries[0].where,
            format_seconds(time.perf_counter() - started),
        )

    delivered = pipeline.submit_and_wait(encoded, options, on_answer=report)
    for fit, call, deliveries in zip(to_run, encoded, delivered, strict=True):
        try:
            results[fit] = pipeline.finish(call, deliveries)
        except Exception as exc:
            notes = "".join(getattr(exc, "__notes__", []))
            _log.error(
                "Fit %d/%d failed: %s: %s\n%s", fit + 1, len(plans), type(exc).__name__, exc, notes
            )
            results[fit] = exc
    return results
