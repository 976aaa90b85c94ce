"""The one pipeline every call goes through.

preflight -> split across workers -> encode -> backend submit -> collect ->
assemble -> store. The public calls (:mod:`pymc_modal.client`,
:mod:`pymc_modal.batch`, :mod:`pymc_modal.predictive`, :mod:`pymc_modal.runs`)
only translate their arguments into a :class:`Call` and hand it here. A waited
call is a submission waited on at once; a detached one is the same submission
recorded, and waited on by :func:`finish_run` later, from any process. This is
the only place a result's attrs, seconds and cost are computed.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pymc_modal import backends, fanout, payload, preflight, pricing, result, samplers, store
from pymc_modal.backends import Backend, Delivery
from pymc_modal.config import Options
from pymc_modal.convergence import format_seconds
from pymc_modal.errors import InvalidOptionError, NotConvergedWarning, WorkerError
from pymc_modal.job import ForwardSettings, SampleSettings

__all__ = [
    "Call",
    "detach",
    "encode",
    "finish",
    "check",
    "finish_run",
    "forward",
    "run",
    "stored",
    "submit_and_wait",
    "warn_if_capped",
]

_log = logging.getLogger("pymc_modal")


@dataclasses.dataclass(eq=False)
class Call:
    """One call on its way through the pipeline.

    Attributes
    ----------
    model : pymc.Model
    settings : SampleSettings or ForwardSettings
        The whole call's settings.
    options : Options
    quiet : bool
        Say nothing.
    idata_kwargs : dict, optional
        As ``pm.sample`` takes them, for a sampling call.
    convergence_checks : bool
        Warn about R-hat, ESS and divergences as ``pm.sample`` does.

    The stages fill in the rest:

    backend : Backend
    shares : list
        Each worker's settings.
    checked : preflight.Checked
        What preflight learnt of a sampling call.
    key : str
        The key of a sampling call's stored result.
    context : dict
        What wrapping a sampling call's result takes from the model.
    jobs : list of bytes
        Each worker's encoded job, once encoded.
    attrs : dict
        The result's attrs known so far.
    seconds : dict
        The client's own phases so far.
    """

    model: Any
    settings: SampleSettings | ForwardSettings
    options: Options
    quiet: bool = False
    idata_kwargs: dict[str, Any] | None = None
    convergence_checks: bool = False
    backend: Backend | None = None
    shares: list = dataclasses.field(default_factory=list)
    checked: preflight.Checked | None = None
    key: str | None = None
    context: dict[str, Any] | None = None
    jobs: list[bytes] = dataclasses.field(default_factory=list)
    attrs: dict[str, Any] = dataclasses.field(default_factory=dict)
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    started: float = dataclasses.field(default_factory=time.perf_counter)


def check(call: Call) -> None:
    """Preflight a sampling call and split it across workers: all before its bytes exist.

    Raises
    ------
    pymc_modal.errors.PymcModalError
        Whatever can be seen to fail before anything is shipped.
    """
    start = time.perf_counter()
    call.backend = backends.choose(call.options.backend)
    call.checked = preflight.check(call.model, call.settings, call.options.max_result_bytes)
    if call.settings.target_ess is not None:
        call.settings = _bounded(call)
    call.shares = fanout.split(call.settings, call.options.workers)
    preflight.check_start(call.model, call.shares)
    where = call.backend.where(call.options)
    call.key = store.key(call.checked.fingerprint, call.shares, where)
    call.context = result.context(call.model, call.idata_kwargs)
    call.seconds["preflight"] = time.perf_counter() - start


def _bounded(call: Call) -> SampleSettings:
    """A target run's settings with its price, and its draws bounded by the result's size.

    Raises
    ------
    InvalidOptionError
        For ``max_cost`` where nothing is billed.
    """
    settings, options = call.settings, call.options
    gpu = call.backend.billed_gpu(options)
    price = None if gpu is None else pricing.cost(gpu, 1.0, options.price_per_second)
    if settings.max_cost is not None and price is None:
        raise InvalidOptionError(
            f"max_cost={settings.max_cost:g}: the {call.backend.name} backend bills nothing, so "
            "there is no cost to cap; bound the run with max_seconds= instead."
        )
    max_draws = settings.max_draws
    if max_draws is None:
        fits = options.max_result_bytes // (call.checked.draw_bytes * settings.chains)
        max_draws = samplers.get(settings.sampler).max_draws(settings.draws, fits)
    return dataclasses.replace(settings, max_draws=max_draws, price_per_second=price)


def forward(call: Call) -> Any:
    """Run a forward computation on a worker; return the worker's values."""
    call.backend = backends.choose(call.options.backend)
    call.shares = [call.settings]
    encode(call)
    ((delivery,),) = submit_and_wait([call], call.options)
    answer = payload.decode_result(delivery.answer, delivery.where)
    if not call.quiet:
        _log.info(
            "Computed the %s on %s in %s.",
            call.settings.kind.replace("_", " "),
            delivery.where,
            format_seconds(time.perf_counter() - call.started),
        )
    return answer["values"]


def run(call: Call, *, wait: bool, refit: bool):
    """A sampling call's result: stored, sampled now, or (``wait=False``) a detached run's id."""
    check(call)
    found = None if refit or not wait else stored(call)
    if found is not None:
        return found
    encode(call)
    if not wait:
        return detach(call)
    (deliveries,) = submit_and_wait([call], call.options)
    return finish(call, deliveries)


def stored(call: Call):
    """The stored result of an identical earlier sampling call, or None."""
    found = store.load(call.key)
    if found is None:
        return None
    answers, attrs = found
    if not call.quiet:
        _log.info(
            "Returned the stored result of an identical run made %s on %s; "
            "nothing was sampled. Pass refit=True to sample again.",
            attrs[store.STORED_AT],
            attrs["pymc_modal_where"],
        )
    raw = fanout.merge(answers)
    return _checked(call, result.wrap(raw, call.context, attrs))


def encode(call: Call) -> None:
    """Serialize the jobs, one per worker, and store their data where the workers read it."""
    start = time.perf_counter()
    blobs: dict[str, bytes] = {}
    fingerprint = call.checked.fingerprint if call.checked else None
    # Forward work labels its output on the worker, with the coords' values.
    with_coords = isinstance(call.settings, ForwardSettings)
    call.jobs = [
        payload.encode_job(call.model, share, blobs, fingerprint, with_coords=with_coords)
        for share in call.shares
    ]
    call.seconds["serialize"] = time.perf_counter() - start

    start = time.perf_counter()
    uploaded = call.backend.store_blobs(blobs)
    call.seconds["upload"] = time.perf_counter() - start
    call.attrs.update(
        {
            "pymc_modal_backend": call.backend.name,
            "pymc_modal_where": call.backend.where(call.options),
            "pymc_modal_payload_bytes": sum(map(len, call.jobs)),
            "pymc_modal_data_bytes": sum(map(len, blobs.values())),
            "pymc_modal_uploaded_bytes": uploaded,
        }
    )
    if call.checked is not None:
        call.attrs["pymc_modal_result_bytes_estimated"] = call.checked.result_bytes


def submit_and_wait(
    calls: list[Call],
    options: Options,
    on_answer: Callable[[int, list[Delivery]], None] | None = None,
) -> list[list[Delivery]]:
    """Submit every encoded job of ``calls`` at once, on the first call's backend, and wait.

    Parameters
    ----------
    calls : list of Call
        Encoded calls.
    options : Options
        The submission's options (``workers``: how many jobs run at once locally).
    on_answer : callable, optional
        Called with a call's index and its deliveries once all its jobs have answered.

    Returns
    -------
    list of list of Delivery
        Each call's deliveries, in job order.
    """
    owners = [i for i, call in enumerate(calls) for _ in call.jobs]
    jobs = [job for call in calls for job in call.jobs]
    delivered: list[list[Delivery]] = [[] for _ in calls]

    def answered(index: int, delivery: Delivery) -> None:
        owner = owners[index]
        delivered[owner].append(delivery)
        if on_answer is not None and len(delivered[owner]) == len(calls[owner].jobs):
            on_answer(owner, delivered[owner])

    deliveries = calls[0].backend.submit(jobs, options).wait(answered)
    return [
        [d for d, owner in zip(deliveries, owners, strict=True) if owner == i]
        for i in range(len(calls))
    ]


def _cost(backend: Backend, options: Options, gpu_seconds: float) -> dict[str, Any]:
    """The estimated charge: the billed GPU's seconds times its price (or the user's)."""
    gpu = backend.billed_gpu(options)
    if gpu is None:
        return {"pymc_modal_cost_usd": 0.0}
    return {
        "pymc_modal_gpu": gpu,
        "pymc_modal_gpu_seconds": gpu_seconds,
        "pymc_modal_cost_usd": pricing.cost(gpu, gpu_seconds, options.price_per_second),
    }


def _assemble(
    deliveries: list[Delivery], attrs: dict[str, Any], backend: Backend, options: Options
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The merged answer and the result's attrs, from the workers' deliveries.

    Re-raises a worker's exception. A detached run's deliveries have no wall
    time seen from here: its workers' own seconds are what is billed.
    """
    answers = [payload.decode_result(d.answer, attrs["pymc_modal_where"]) for d in deliveries]
    raw = fanout.merge(answers)
    seconds = {
        name: max(d.seconds[name] for d in deliveries)
        for name in deliveries[0].seconds.keys() - {"wall"}
    }
    worked = [sum(answer["seconds"].values()) for answer in answers]
    walls = [d.seconds.get("wall", own) for d, own in zip(deliveries, worked, strict=True)]
    if "wall" in deliveries[0].seconds:
        pairs = zip(walls, worked, strict=True)
        seconds["start"] = max(max(0.0, wall - own) for wall, own in pairs)
    seconds.update(raw["seconds"])
    attrs = {
        **attrs,
        "pymc_modal_device": raw["device"],
        "pymc_modal_workers": len(deliveries),
        "pymc_modal_returned_bytes": sum(len(d.answer) for d in deliveries),
        **_cost(backend, options, sum(walls)),
        **_seconds_attrs(seconds),
        **{f"pymc_modal_{name}": value for name, value in (raw["convergence"] or {}).items()},
    }
    return raw, attrs


def finish(call: Call, deliveries: list[Delivery]):
    """Wrap a waited call's answers, store them, and say what it took and cost."""
    start = time.perf_counter()
    attrs = {**call.attrs, **_seconds_attrs(call.seconds)}
    raw, attrs = _assemble(deliveries, attrs, call.backend, call.options)
    idata = result.wrap(raw, call.context, attrs)
    attrs["pymc_modal_seconds_return"] = time.perf_counter() - start
    attrs["pymc_modal_seconds_total"] = time.perf_counter() - call.started
    idata.attrs.update(attrs)
    store.save(call.key, [d.answer for d in deliveries], attrs)
    if not call.quiet:
        where = attrs["pymc_modal_where"]
        sampling = raw["seconds"]["compile"] + raw["seconds"]["sample"]
        cost = attrs["pymc_modal_cost_usd"]
        _log.info(
            "Sampled %d chains x %d draws on %s in %s (sampling %s), %s%s.",
            call.settings.chains,
            idata["posterior"].sizes["draw"],
            where if len(deliveries) == 1 else f"{len(deliveries)} workers on {where}",
            format_seconds(attrs["pymc_modal_seconds_total"]),
            format_seconds(sampling),
            "no charge" if "pymc_modal_gpu" not in attrs else f"about ${cost:.2f}",
            _reached(attrs),
        )
    return _checked(call, idata)


def _reached(attrs: dict[str, Any]) -> str:
    """``"; min bulk ESS 412, min tail ESS 530, max R-hat 1.004"`` for a target run, or nothing."""
    if "pymc_modal_stop_reason" not in attrs:
        return ""
    return (
        f"; min bulk ESS {attrs['pymc_modal_min_ess_bulk']:.0f}, "
        f"min tail ESS {attrs['pymc_modal_min_ess_tail']:.0f}, "
        f"max R-hat {attrs['pymc_modal_max_rhat']:.3f}"
    )


def warn_if_capped(attrs: dict[str, Any], stacklevel: int) -> None:
    """Warn, naming the cap, if a run sampled to a target stopped short of it.

    ``stacklevel`` is ``warnings.warn``'s, counted from the caller.
    """
    reason = attrs.get("pymc_modal_stop_reason")
    if reason in (None, "target"):
        return
    forecast = f"~{attrs['pymc_modal_forecast_draws']:,} more draws per chain, " + format_seconds(
        attrs["pymc_modal_forecast_seconds"]
    )
    if "pymc_modal_forecast_cost_usd" in attrs:
        forecast += f", about ${attrs['pymc_modal_forecast_cost_usd']:.2f}"
    warnings.warn(
        f"Sampling stopped at {reason} after {attrs['pymc_modal_draws']:,} draws per chain "
        f"({attrs['pymc_modal_blocks']} blocks), short of target_ess="
        f"{attrs['pymc_modal_target_ess']} with max_rhat={attrs['pymc_modal_max_rhat_target']}"
        f"{_reached(attrs)}. Reaching it was forecast to take {forecast}. The draws are "
        "returned; to go on, sample again with a larger cap (max_draws is bounded by "
        "pymc_modal.options(max_result_bytes=...) unless given).",
        NotConvergedWarning,
        stacklevel=stacklevel + 1,
    )


def _checked(call: Call, idata):
    """Warn about R-hat, ESS and divergences as ``pm.sample`` does; return ``idata``."""
    warn_if_capped(idata.attrs, stacklevel=5)  # sample -> run -> finish or stored -> here
    if call.convergence_checks:
        from pymc.stats.convergence import log_warnings, run_convergence_checks

        found = run_convergence_checks(idata, call.model)
        if not call.quiet:
            log_warnings(found)
    return idata


def _seconds_attrs(seconds: dict[str, float]) -> dict[str, float]:
    return {f"pymc_modal_seconds_{name}": value for name, value in seconds.items()}


def detach(call: Call) -> str:
    """Submit an encoded sampling call detached, record it, and return the run's id."""
    folder = store.new_run_folder()
    try:
        submission = call.backend.submit(call.jobs, call.options, detached=folder)
        record = {
            "id": folder.name,
            "created": datetime.datetime.now().isoformat(timespec="seconds"),
            "backend": call.backend.name,
            "workers": len(call.jobs),
            "options": dataclasses.asdict(call.options),
            # What `python -m pymc_modal clean` must keep until the run is fetched.
            "blobs": sorted({name for job in call.jobs for name in payload.blob_names(job)}),
            "attrs": {**call.attrs, **_seconds_attrs(call.seconds)},
            **submission.record,
        }
        store.write_run(folder, record, call.context)
    except BaseException:
        store.remove_run(folder)
        raise
    run_id = folder.name
    if not call.quiet:
        _log.info("Started run %s; pymc_modal.fetch(%r) returns its result.", run_id, run_id)
    return run_id


def finish_run(folder: Path, wait: bool) -> None:
    """Collect a detached run's answers and write its result in the run's folder.

    Raises
    ------
    WorkerError
        If the run is still running and ``wait`` is False, or a worker ended
        without an answer.
    Exception
        A worker's own exception, with its traceback attached as a note.
    """
    record = store.read_record(folder)
    backend = backends.get(record["backend"])
    options = Options(**record.get("options", {}))
    submission = backend.reattach(record, folder)
    deliveries = submission.wait(block=wait)
    if deliveries is None:
        raise WorkerError(f"Run {folder.name} is still running; fetch it with wait=True.")
    raw, attrs = _assemble(deliveries, record["attrs"], backend, options)
    attrs["pymc_modal_run_id"] = folder.name
    sampling = raw["seconds"]["compile"] + raw["seconds"]["sample"]
    record.update(cost_usd=attrs["pymc_modal_cost_usd"], sampling_seconds=sampling)
    store.write_result(folder, record, result.wrap(raw, store.read_context(folder), attrs))
