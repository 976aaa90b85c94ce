"""The one pipeline every call goes through, in typed stages.

request -> plan -> (stored result, or) encoded -> submitted -> collected ->
result. The public calls (:mod:`pymc_modal.client`, :mod:`pymc_modal.batch`,
:mod:`pymc_modal.predictive`, :mod:`pymc_modal.runs`) only translate their
arguments into a :class:`Request` and hand it here. Each stage is a frozen
value made by one function from the one before: :func:`plan` works out every
derived value once (the backend and where it runs, the GPU billed and its
price, ``max_draws``, each worker's share); :func:`encode` makes the jobs'
bytes and uploads their data. A waited call is a submission waited on at
once; a detached one is the same submission recorded, and waited on by
:func:`finish_run` later, from any process. This is the only place a
result's attrs, seconds and cost are computed.
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

from pymc_modal import (
    attrs,
    backends,
    fanout,
    payload,
    preflight,
    pricing,
    resources,
    result,
    samplers,
    store,
)
from pymc_modal.backends import Backend, Delivery
from pymc_modal.config import Options
from pymc_modal.convergence import format_seconds
from pymc_modal.errors import (
    InvalidOptionError,
    NotConvergedWarning,
    SlowFloat64Warning,
    WorkerError,
)
from pymc_modal.job import ENDED_EARLY, Answer, Convergence, ForwardSettings, SampleSettings

__all__ = [
    "Encoded",
    "Plan",
    "Previous",
    "Request",
    "detach",
    "encode",
    "finish",
    "finish_run",
    "forward",
    "plan",
    "run",
    "stored",
    "submit_and_wait",
    "warn_if_short",
]

_log = logging.getLogger("pymc_modal")


@dataclasses.dataclass(frozen=True)
class Previous:
    """An earlier sampling call that a call goes on from or starts from.

    Attributes
    ----------
    fit : store.Fit
        Its record.
    drawn : int
        The draws per chain its result holds.
    """

    fit: store.Fit
    drawn: int = 0


@dataclasses.dataclass(frozen=True)
class Request:
    """A call as its public function translated it: nothing derived yet.

    Attributes
    ----------
    model : pymc.Model
    settings : SampleSettings or ForwardSettings
        The whole call's settings, as the arguments gave them.
    options : Options
    quiet : bool
        Say nothing.
    idata_kwargs : dict, optional
        As ``pm.sample`` takes them, for a sampling call.
    convergence_checks : bool
        Warn about R-hat, ESS and divergences as ``pm.sample`` does.
    previous : Previous, optional
        The earlier fit an extension goes on from (``settings.extend``), or
        a warm start starts from (``settings.warm_start``).
    started : float
        When the call began, by :func:`time.perf_counter`.
    """

    model: Any
    settings: SampleSettings | ForwardSettings
    options: Options
    quiet: bool = False
    idata_kwargs: dict[str, Any] | None = None
    convergence_checks: bool = False
    previous: Previous | None = None
    started: float = dataclasses.field(default_factory=time.perf_counter)


@dataclasses.dataclass(frozen=True)
class Plan:
    """Every value derived from a request, worked out once before anything is encoded.

    Attributes
    ----------
    request : Request
    backend : Backend
        Where the workers run (credentials checked).
    where : str
        The same, in words.
    resources : Resources
        The CPU and memory each worker's container asks for.
    tariff : Tariff, optional
        What the containers are billed at; None where nothing is billed.
    settings : SampleSettings or ForwardSettings
        The whole call's settings; a target run's with ``max_draws`` (the
        sampler's policy, within the result's size) and its rate.
    shares : tuple
        Each worker's settings.
    checked : preflight.Checked, optional
        What preflight learnt of a sampling call.
    key : str, optional
        The key of a sampling call's stored result.
    checkpoints : tuple of str
        The name of each worker's checkpoint, for a sampling call.
    context : dict, optional
        What wrapping a sampling call's result takes from the model.
    seconds : dict
        The planning's own seconds (``preflight``).
    """

    request: Request
    backend: Backend
    where: str
    resources: resources.Resources
    tariff: pricing.Tariff | None
    settings: SampleSettings | ForwardSettings
    shares: tuple[SampleSettings | ForwardSettings, ...]
    checked: preflight.Checked | None = None
    key: str | None = None
    checkpoints: tuple[str, ...] = ()
    context: dict[str, Any] | None = None
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Encoded:
    """A plan's jobs as bytes, their data stored where the workers read it.

    Attributes
    ----------
    plan : Plan
    jobs : tuple of bytes
        Each worker's job.
    blobs : tuple of str
        The names of the data blobs the jobs refer to.
    attrs : dict
        The result's attrs known so far.
    seconds : dict
        The client's own phases so far.
    """

    plan: Plan
    jobs: tuple[bytes, ...]
    blobs: tuple[str, ...]
    attrs: dict[str, Any]
    seconds: dict[str, float]


def plan(request: Request) -> Plan:
    """Choose the backend and work out everything the call needs, checking it first.

    A sampling call is preflighted and split across workers here, before any
    of its bytes exist.

    Raises
    ------
    pymc_modal.errors.PymcModalError
        Whatever can be seen to fail before anything is shipped.
    """
    start = time.perf_counter()
    options = request.options
    backend = backends.choose(options.backend)
    where = backend.where(options)
    settings = request.settings
    data_bytes = preflight.data_bytes(request.model)
    if isinstance(settings, ForwardSettings):
        sized = resources.chosen(options, [resources.size(data_bytes, options.max_result_bytes)])
        tariff = backend.tariff(options, sized)
        _warn_if_slow_float64(settings.float_x, tariff)
        return Plan(request, backend, where, sized, tariff, settings, (settings,))
    checked = preflight.check(request.model, settings, options.max_result_bytes)
    if settings.target_ess is not None:
        settings = _bounded(settings, checked, options)
    sized = resources.chosen(
        options,
        [
            resources.size(
                data_bytes,
                checked.result_bytes * share.chains // settings.chains,
                share,
                checked.parameters,
                cpu_only=options.gpu is None,
            )
            for share in fanout.split(settings, options.workers)
        ],
    )
    tariff = backend.tariff(options, sized)
    _warn_if_slow_float64(settings.float_x, tariff)
    if settings.target_ess is not None:
        settings = _priced(settings, tariff, backend.name)
    shares = tuple(fanout.split(settings, options.workers))
    preflight.check_start(request.model, shares)
    checkpoints = store.checkpoint_names(checked.fingerprint, shares)
    if request.previous is not None:
        _check_previous(request.previous, settings, checked, checkpoints, backend.name)
    return Plan(
        request,
        backend,
        where,
        sized,
        tariff,
        settings,
        shares,
        checked=checked,
        key=store.key(checked.fingerprint, shares, where),
        checkpoints=checkpoints,
        context=result.context(request.model, request.idata_kwargs),
        seconds={"preflight": time.perf_counter() - start},
    )


def _warn_if_slow_float64(float_x: str, tariff: pricing.Tariff | None) -> None:
    """Warn, before anything is billed, of a float64 model bound for a GPU slow at float64."""
    if tariff is None or float_x != "float64":
        return
    slow = {pricing.gpu_type(spec) for spec in tariff.gpus} & set(pricing.SLOW_FLOAT64)
    if slow:
        fractions = ", ".join(f"{gpu} at 1/{pricing.SLOW_FLOAT64[gpu]}" for gpu in sorted(slow))
        warnings.warn(
            "The model computes in float64 (pytensor.config.floatX is 'float64'), which "
            f"{fractions} of float32's speed run, so its gradients may take many times longer "
            "there than on an A100, H100 or H200 (float64 at half speed). Choose one of those "
            "with gpu=, or build the model after setting pytensor.config.floatX = 'float32'.",
            SlowFloat64Warning,
            stacklevel=5,
        )


def _check_previous(
    previous: Previous,
    settings: SampleSettings,
    checked: preflight.Checked,
    checkpoints: tuple[str, ...],
    backend_name: str,
) -> None:
    """Refuse an extension or warm start that its earlier fit cannot serve.

    Raises
    ------
    InvalidOptionError
        If an extension's model or data differ from the earlier fit's, or it
        may draw no more than the earlier fit has; if a warm start's model
        has other parameters or runs on another backend.
    """
    if settings.extend:
        if settings.target_ess is not None and settings.max_draws <= previous.drawn:
            raise InvalidOptionError(
                f"extend: max_draws={settings.max_draws:,} leaves no draws to add to the "
                f"earlier run's {previous.drawn:,} a chain; pass a larger max_draws= (it is "
                "bounded by pymc_modal.options(max_result_bytes=...) unless given)."
            )
        if checkpoints != previous.fit.checkpoints:
            raise InvalidOptionError(
                "extend: this model or its data differ from the earlier run's, so its chains "
                "cannot go on here. Extend with the same model and data; to fit new data "
                "from the earlier run's adapted sampler, use "
                "pymc_modal.sample(..., warm_start=previous)."
            )
        return
    fit = previous.fit
    if fit.options.backend != backend_name:
        raise InvalidOptionError(
            f"warm_start: the earlier fit ran on the {fit.options.backend} backend, which "
            f"keeps its adapted sampler, and this one would run on the {backend_name} backend; "
            f"pass backend={fit.options.backend!r}."
        )
    if checked.parameters != fit.parameters:
        raise InvalidOptionError(
            f"warm_start: the earlier fit's model has {fit.parameters:,} unconstrained "
            f"parameters and this one {checked.parameters:,}, so its mass matrix does not fit. "
            "Warm-start the same model, with data of the same shapes."
        )


def _bounded(
    settings: SampleSettings, checked: preflight.Checked, options: Options
) -> SampleSettings:
    """A target run's settings with its draws bounded by the sampler's policy, unless given."""
    if settings.max_draws is not None:
        return settings
    fits = options.max_result_bytes // (checked.draw_bytes * settings.chains)
    max_draws = samplers.get(settings.sampler).max_draws(settings.draws, fits)
    return dataclasses.replace(settings, max_draws=max_draws)


def _priced(
    settings: SampleSettings, tariff: pricing.Tariff | None, backend_name: str
) -> SampleSettings:
    """A target run's settings with the rate its cost cap and forecast count.

    Raises
    ------
    InvalidOptionError
        For ``max_cost`` where nothing is billed.
    """
    if tariff is None:
        if settings.max_cost is not None:
            raise InvalidOptionError(
                f"max_cost={settings.max_cost:g}: the {backend_name} backend bills nothing, so "
                "there is no cost to cap; bound the run with max_seconds= instead."
            )
        return settings
    return dataclasses.replace(
        settings, price_per_second=tariff.cap_rate, idle_seconds=tariff.idle_seconds
    )


def forward(request: Request) -> Any:
    """Run a forward computation on a worker; return the worker's values."""
    encoded = encode(plan(request))
    ((delivery,),) = submit_and_wait([encoded], request.options)
    answer = payload.decode_result(delivery.answer, delivery.where)
    if not request.quiet:
        _log.info(
            "Computed the %s on %s in %s.",
            request.settings.kind.replace("_", " "),
            delivery.where,
            format_seconds(time.perf_counter() - request.started),
        )
    return answer.values


def run(request: Request, *, wait: bool, refit: bool):
    """A sampling call's result: stored, sampled now, or (``wait=False``) a detached run's id."""
    planned = plan(request)
    found = None if refit or not wait else stored(planned)
    if found is not None:
        return found
    encoded = encode(planned)
    if not wait:
        return detach(encoded)
    (deliveries,) = submit_and_wait([encoded], request.options)
    return finish(encoded, deliveries)


def stored(planned: Plan):
    """The stored result of an identical earlier sampling call, or None."""
    found = store.load(planned.key)
    if found is None:
        return None
    answers, made = found
    if not planned.request.quiet:
        _log.info(
            "Returned the stored result of an identical run made %s on %s; "
            "nothing was sampled. Pass refit=True to sample again.",
            made[attrs.STORED_AT],
            made[attrs.WHERE],
        )
    raw = fanout.merge(answers)
    return _checked(planned.request, result.wrap(raw, planned.context, made))


def encode(planned: Plan) -> Encoded:
    """Serialize the jobs, one per worker, and store their data where the workers read it."""
    start = time.perf_counter()
    blobs: dict[str, bytes] = {}
    fingerprint = planned.checked.fingerprint if planned.checked else None
    # Forward work labels its output on the worker, with the coords' values.
    with_coords = isinstance(planned.settings, ForwardSettings)
    model = planned.request.model
    names = planned.checkpoints or (None,) * len(planned.shares)
    jobs = tuple(
        payload.encode_job(
            model, share, blobs, fingerprint, with_coords=with_coords, checkpoint=name
        )
        for share, name in zip(planned.shares, names, strict=True)
    )
    seconds = {**planned.seconds, "serialize": time.perf_counter() - start}

    start = time.perf_counter()
    uploaded = planned.backend.store_blobs(blobs)
    seconds["upload"] = time.perf_counter() - start
    known = {
        attrs.BACKEND: planned.backend.name,
        attrs.WHERE: planned.where,
        attrs.PAYLOAD_BYTES: sum(map(len, jobs)),
        attrs.DATA_BYTES: sum(map(len, blobs.values())),
        attrs.UPLOADED_BYTES: uploaded,
    }
    if planned.checked is not None:
        known[attrs.RESULT_BYTES_ESTIMATED] = planned.checked.result_bytes
        known[attrs.FIT] = planned.key
        request = planned.request
        fit = store.Fit(
            planned.settings,
            dataclasses.replace(request.options, backend=planned.backend.name),
            request.idata_kwargs or {},
            planned.checkpoints,
            planned.checked.parameters,
        )
        store.save_fit(planned.key, fit)
    return Encoded(planned, jobs, tuple(sorted(blobs)), known, seconds)


def submit_and_wait(
    encoded: list[Encoded],
    options: Options,
    on_answer: Callable[[int, list[Delivery]], None] | None = None,
) -> list[list[Delivery]]:
    """Submit every job of ``encoded`` at once, on the first one's backend, and wait.

    Parameters
    ----------
    encoded : list of Encoded
        The calls' jobs.
    options : Options
        The submission's options (``workers``: how many jobs run at once locally).
    on_answer : callable, optional
        Called with a call's index and its deliveries once all its jobs have answered.

    Returns
    -------
    list of list of Delivery
        Each call's deliveries, in job order.
    """
    owners = [i for i, call in enumerate(encoded) for _ in call.jobs]
    jobs = [job for call in encoded for job in call.jobs]
    delivered: list[list[Delivery]] = [[] for _ in encoded]

    def answered(index: int, delivery: Delivery) -> None:
        owner = owners[index]
        delivered[owner].append(delivery)
        if on_answer is not None and len(delivered[owner]) == len(encoded[owner].jobs):
            on_answer(owner, delivered[owner])

    sized = resources.applied(options, [call.plan.resources for call in encoded])
    deliveries = encoded[0].plan.backend.submit(jobs, sized).wait(answered)
    return [
        [d for d, owner in zip(deliveries, owners, strict=True) if owner == i]
        for i in range(len(encoded))
    ]


def _bill(
    tariff: pricing.Tariff | None, answers: list[Answer], seconds: list[float]
) -> dict[str, Any]:
    """What the workers' containers cost: each at the rate of the GPU it ran on, for its
    seconds (every attempt's) and the idle window after them (an estimate: at most)."""
    if tariff is None:
        return {attrs.COST_USD: 0.0}
    devices = [answer.device for answer in answers]
    busy = [own + answer.earlier_seconds for own, answer in zip(seconds, answers, strict=True)]
    return {
        attrs.GPU: ", ".join(dict.fromkeys(tariff.billed(d) or "none" for d in devices)),
        attrs.GPU_SECONDS: sum(busy),
        attrs.IDLE_SECONDS: tariff.idle_seconds * len(answers),
        attrs.CPU: tariff.cpu,
        attrs.MEMORY_MIB: tariff.memory,
        attrs.COST_USD: sum(map(tariff.cost, devices, busy)),
    }


def _assemble(
    deliveries: list[Delivery], known: dict[str, Any], tariff: pricing.Tariff | None
) -> tuple[Answer, dict[str, Any]]:
    """The merged answer and the result's attrs, from the workers' deliveries.

    Re-raises a worker's exception. A detached run's deliveries have no wall
    time seen from here: its workers' own seconds are what is billed.
    """
    answers = [payload.decode_result(d.answer, known[attrs.WHERE]) for d in deliveries]
    raw = fanout.merge(answers)
    seconds = {
        name: max(d.seconds[name] for d in deliveries)
        for name in deliveries[0].seconds.keys() - {"wall"}
    }
    worked = [sum(answer.seconds.values()) for answer in answers]
    walls = [d.seconds.get("wall", own) for d, own in zip(deliveries, worked, strict=True)]
    if "wall" in deliveries[0].seconds:
        pairs = zip(walls, worked, strict=True)
        seconds["start"] = max(max(0.0, wall - own) for wall, own in pairs)
    seconds.update(raw.seconds)
    ended = {attrs.STOP_REASON: raw.stop_reason, attrs.ERROR: raw.error}
    return raw, {
        **known,
        attrs.DEVICE: raw.device,
        attrs.WORKERS: len(deliveries),
        attrs.RETURNED_BYTES: sum(len(d.answer) for d in deliveries),
        attrs.ATTEMPTS: raw.attempts,
        **_bill(tariff, answers, walls),
        **attrs.seconds(seconds),
        **attrs.of_convergence(raw.convergence),
        **{name: value for name, value in ended.items() if value is not None},
    }


def finish(encoded: Encoded, deliveries: list[Delivery]):
    """Wrap a waited call's answers, store them, and say what it took and cost."""
    start = time.perf_counter()
    planned, request = encoded.plan, encoded.plan.request
    known = {**encoded.attrs, **attrs.seconds(encoded.seconds)}
    raw, made = _assemble(deliveries, known, planned.tariff)
    idata = result.wrap(raw, planned.context, made)
    now = time.perf_counter()
    total = now - request.started
    made.update(attrs.seconds({"return": now - start, "total": total}))
    idata.attrs.update(made)
    store.save(planned.key, [d.answer for d in deliveries], made)
    if not request.quiet:
        sampling = raw.seconds["compile"] + raw.seconds["sample"]
        _log.info(
            "Sampled %d chains x %d draws on %s in %s (sampling %s), %s%s.",
            planned.settings.chains,
            idata["posterior"].sizes["draw"],
            planned.where
            if len(deliveries) == 1
            else f"{len(deliveries)} workers on {planned.where}",
            format_seconds(total),
            format_seconds(sampling),
            _charge(made),
            _reached(raw.convergence) + _cpu_would_do(planned),
        )
    return _checked(request, idata)


# Whether this process has said that a CPU container would likely cost less.
_said_cpu_cheaper = False


def _cpu_would_do(planned: Plan) -> str:
    """Once a process, for a model small enough that a CPU container likely costs less."""
    global _said_cpu_cheaper
    small = planned.checked.parameters < pricing.CPU_CHEAPER_BELOW
    if _said_cpu_cheaper or not small or planned.tariff is None or not planned.tariff.gpus:
        return ""
    _said_cpu_cheaper = True
    return (
        f". A model of {planned.checked.parameters:,} parameters likely costs less on a CPU "
        'container, if slower: with pymc_modal.cpu(): ... (README, "GPU or CPU?")'
    )


def _charge(made: dict[str, Any]) -> str:
    """``"about $0.42 (H100, up to 60 s kept warm after it included)"``, or ``"no charge"``."""
    if attrs.GPU not in made:
        return "no charge"
    billed = made[attrs.GPU] if made[attrs.GPU] != "none" else f"{made[attrs.CPU]:g} cores"
    return (
        f"about ${made[attrs.COST_USD]:.2f} ({billed}, up to "
        f"{made[attrs.IDLE_SECONDS]:.0f} s kept warm after it included)"
    )


def _reached(record: Convergence | None) -> str:
    """``"; min bulk ESS 412, min tail ESS 530, max R-hat 1.004"`` for a target run, or nothing."""
    if record is None:
        return ""
    return (
        f"; min bulk ESS {record.min_ess_bulk:.0f}, min tail ESS {record.min_ess_tail:.0f}, "
        f"max R-hat {record.max_rhat:.3f}"
    )


def _ended_early(reason: str, result_attrs: dict[str, Any], draws: int) -> str:
    """What a warning says of a run that ended early."""
    why = {
        "deadline": "its attempt's time was running out (allow more with "
        "pymc_modal.gpu(timeout=SECONDS))",
        "stopped": "it was asked to stop",
    }.get(reason)
    if why is None:
        failed = result_attrs.get(attrs.ERROR, "").strip().splitlines() or ["an exception"]
        why = f"a block failed with {failed[-1]} (its traceback is in attrs[{attrs.ERROR!r}])"
    lost = [name for name, entry in samplers.SAMPLERS.items() if not entry.checkpoints]
    return (
        f"Sampling ended early ({reason}) after {draws:,} draws per chain, because {why}. "
        "The draws so far are returned; calling again with the same arguments goes on from "
        f"its checkpoint ({', '.join(map(repr, lost))} starts over)."
    )


def warn_if_short(idata, stacklevel: int) -> None:
    """Warn if a run stopped short: any run that ended early, or a target run at a cap.

    ``stacklevel`` is ``warnings.warn``'s, counted from the caller.
    """
    result_attrs = idata.attrs
    reason = result_attrs.get(attrs.STOP_REASON)
    if reason is None or reason == "target":
        return
    if reason in ENDED_EARLY:
        message = _ended_early(reason, result_attrs, idata["posterior"].sizes["draw"])
    else:
        record = attrs.convergence(result_attrs)
        forecast = f"~{record.forecast_draws:,} more draws per chain, " + format_seconds(
            record.forecast_seconds
        )
        if record.forecast_cost_usd is not None:
            forecast += f", about ${record.forecast_cost_usd:.2f}"
        message = (
            f"Sampling stopped at {reason} after {record.draws:,} draws per chain "
            f"({record.blocks} blocks), short of target_ess={record.target_ess} with "
            f"max_rhat={record.max_rhat_target}{_reached(record)}. Reaching it was forecast to "
            f"take {forecast}. The draws are returned; to go on from this run's checkpoint, "
            "pass the result to pymc_modal.extend(), or sample again with a larger cap "
            "(max_draws is bounded by pymc_modal.options(max_result_bytes=...) unless given)."
        )
    warnings.warn(message, NotConvergedWarning, stacklevel=stacklevel + 1)


def _checked(request: Request, idata):
    """Warn about R-hat, ESS and divergences as ``pm.sample`` does; return ``idata``."""
    warn_if_short(idata, stacklevel=5)  # sample -> run -> finish or stored -> here
    if request.convergence_checks:
        from pymc.stats.convergence import log_warnings, run_convergence_checks

        found = run_convergence_checks(idata, request.model)
        if not request.quiet:
            log_warnings(found)
    return idata


def detach(encoded: Encoded) -> str:
    """Submit an encoded sampling call detached, record it, and return the run's id."""
    planned = encoded.plan
    folder = store.new_run_folder()
    try:
        sized = resources.applied(planned.request.options, [planned.resources])
        submission = planned.backend.submit(encoded.jobs, sized, detached=folder)
        record = {
            "id": folder.name,
            "created": datetime.datetime.now().isoformat(timespec="seconds"),
            "backend": planned.backend.name,
            "workers": len(encoded.jobs),
            "tariff": None if planned.tariff is None else dataclasses.asdict(planned.tariff),
            # What `python -m pymc_modal clean` must keep until the run is fetched.
            "blobs": list(encoded.blobs),
            # What `Run.stop` asks to stop.
            "checkpoints": list(planned.checkpoints),
            "attrs": {**encoded.attrs, **attrs.seconds(encoded.seconds)},
            **submission.record,
        }
        store.write_run(folder, record, planned.context)
    except BaseException:
        store.remove_run(folder)
        raise
    run_id = folder.name
    if not planned.request.quiet:
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
    submission = backends.get(record["backend"]).reattach(record, folder)
    deliveries = submission.wait(block=wait)
    if deliveries is None:
        raise WorkerError(f"Run {folder.name} is still running; fetch it with wait=True.")
    raw, made = _assemble(deliveries, record["attrs"], store.record_tariff(record))
    made[attrs.RUN_ID] = folder.name
    sampling = raw.seconds["compile"] + raw.seconds["sample"]
    record.update(cost_usd=made[attrs.COST_USD], sampling_seconds=sampling)
    store.write_result(folder, record, result.wrap(raw, store.read_context(folder), made))
