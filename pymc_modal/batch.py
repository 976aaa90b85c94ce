"""Many fits in one call: ``pymc_modal.map`` over models or over datasets for one model.

``map(items, **kwargs)`` returns what ``[sample(model=m, **kwargs) for m in
items]`` would, but every fit is checked and encoded first and then all run
at once: on Modal through ``Function.map``, a container each; locally on warm
worker processes, as many at a time as this machine has cores. One fit's
failure is reported with its traceback and takes its place in the list; the
other fits' results are kept.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Mapping, Sequence
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


def _prepare(items: Sequence[Any], model, sample_kwargs: dict[str, Any]) -> list[pipeline.Call]:
    """Check and encode each fit: a model, or a dataset set into ``model`` for its turn."""

    def encoded(fit_model) -> pipeline.Call:
        call = prepare(model=fit_model, **sample_kwargs)
        pipeline.check(call)
        pipeline.encode(call)
        return call

    if all(isinstance(item, pm.Model) for item in items):
        if model is not None:
            raise InvalidOptionError(
                "map() got models and model=; pass either models, or datasets and model=."
            )
        return [encoded(item) for item in items]
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
    original = {v.name: v.get_value() for v in model.data_vars}
    calls = []
    try:
        for item in items:
            # Each dataset replaces the model's own data, not the last dataset's.
            pm.set_data({**original, **item}, model=model)
            calls.append(encoded(model))  # while this fit's data is set
    finally:
        pm.set_data(original, model=model)
    return calls


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
    calls = _prepare(list(models_or_datasets), model, sample_kwargs)
    results: list[Any] = [None if refit else pipeline.stored(call) for call in calls]
    fits = [i for i, found in enumerate(results) if found is None]
    to_run = [calls[i] for i in fits]
    if not to_run:
        return results
    jobs = sum(len(call.jobs) for call in to_run)
    # As many local processes at once as there are cores; Modal runs every job at once.
    options = dataclasses.replace(to_run[0].options, workers=min(jobs, os.cpu_count() or 1))

    def report(index: int, deliveries: list[Delivery]) -> None:
        call = to_run[index]
        if call.quiet:
            return
        failed = any(payload.answer_status(d.answer) != "ok" for d in deliveries)
        _log.info(
            "Fit %d/%d %s on %s (%s since the start).",
            fits[index] + 1,
            len(calls),
            "failed" if failed else "done",
            deliveries[0].where,
            format_seconds(time.perf_counter() - started),
        )

    delivered = pipeline.submit_and_wait(to_run, options, on_answer=report)
    for fit, call, deliveries in zip(fits, to_run, delivered, strict=True):
        try:
            results[fit] = pipeline.finish(call, deliveries)
        except Exception as exc:
            notes = "".join(getattr(exc, "__notes__", []))
            _log.error(
                "Fit %d/%d failed: %s: %s\n%s", fit + 1, len(calls), type(exc).__name__, exc, notes
            )
            results[fit] = exc
    return results
