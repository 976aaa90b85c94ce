"""Sampling in blocks: warm up, then draw block by block, each saved, until done.

Every sampler hands :func:`run` its chains as :class:`Steps`, each call
going on from where the last left off with the kernel adapted in warm-up and
its compiled program. With ``settings.target_ess``, after each block of
``settings.draws`` the returned variables' ESS and R-hat are measured over
every block so far (:func:`pymc_modal.convergence.diagnose`) and one line
reports them with a forecast of what the target takes; the run stops when
the target is met, or before a block that would pass a cap. Without a
target, the ``settings.draws`` are drawn in blocks of about
:data:`BLOCK_SECONDS` by the warm-up's pace, which gives the draws one block
would.

After the warm-up and every block a checkpoint is saved
(:mod:`pymc_modal.worker.checkpoint`), where the sampler can be; an attempt
that finds one of the same chains goes on from it. Any run ends early, with
the draws it has (see :data:`pymc_modal.job.ENDED_EARLY`), before a block
that would not end before its attempt's deadline, when the client asks it to
stop, or when a block after the first fails.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
import traceback
from typing import Any, Protocol

import jax
import numpy as np
from tqdm import tqdm

from pymc_modal import samplers
from pymc_modal.convergence import Diagnostics, diagnose, format_seconds
from pymc_modal.errors import NoDrawsError
from pymc_modal.job import Answer, Convergence, Returned, SampleSettings
from pymc_modal.worker.chains import answer
from pymc_modal.worker.checkpoint import Attempt, Checkpoint, Progress

__all__ = ["BLOCK_SECONDS", "Draw", "Steps", "run"]

# A block's draws: the returned graph's outputs, then the sample stats by PyMC's names,
# each shaped (chain, draw, ...).
Draw = tuple[list[np.ndarray], dict[str, np.ndarray]]
# The most sampling between two checkpoints, about: a run without a target draws in blocks
# this long, by the pace of its warm-up, and a long warm-up is saved this often.
BLOCK_SECONDS = 600.0
# A warm-up that can be stepped in stretches first takes this part of its steps, to
# measure its pace; then stretches of about BLOCK_SECONDS, or what is left before the deadline.
_FIRST_STRETCH = 1 / 20

_COMPILE_EVENTS = frozenset(
    {
        "/jax/core/compile/jaxpr_trace_duration",
        "/jax/core/compile/jaxpr_to_mlir_module_duration",
        "/jax/core/compile/backend_compile_duration",
    }
)


class _CompileClock:
    """Sum of the seconds JAX reports spending on tracing, lowering and compiling."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __call__(self, event: str, duration: float, **_: Any) -> None:
        if event in _COMPILE_EVENTS:
            self.seconds += duration


@dataclasses.dataclass
class _Watch:
    """What a run has drawn, block by block, and (with a target) its checks after each block.

    ``earlier`` is the worker's seconds in the attempts before this one,
    which ``max_seconds`` and ``max_cost`` count as well.
    """

    settings: SampleSettings
    started: float
    earlier: float = 0.0
    sizes: list[int] = dataclasses.field(default_factory=list)
    draw_seconds: float = 0.0
    # The seconds a draw took in the last block, or before one, as an earlier attempt's.
    per_draw: float | None = None
    # A run without a target draws in blocks of this size (see `run`).
    block: int | None = None
    reason: str | None = None
    found: Diagnostics | None = None
    forecast_draws: int = 0
    forecast_seconds: float = 0.0
    # The first forecast of the seconds to the target, when it was made, and the actual.
    first_forecast: float | None = None
    first_forecast_at: float = 0.0
    first_forecast_actual: float | None = None

    @property
    def drawn(self) -> int:
        """Draws per chain so far."""
        return sum(self.sizes)

    def check(self, posterior: dict[str, np.ndarray], size: int, seconds: float) -> int:
        """Take in a block of ``size`` draws that took ``seconds``; the next block's size, or 0."""
        self.add(size, seconds)
        return self.decide(posterior)

    def add(self, size: int, seconds: float) -> None:
        """Count a block of ``size`` draws that took ``seconds``."""
        self.sizes.append(size)
        self.draw_seconds += seconds
        self.per_draw = seconds / size

    def decide(self, posterior: dict[str, np.ndarray] | None) -> int:
        """The next block's size, or 0 with :attr:`reason` set where the run is done.

        ``posterior``: the returned variables' draws so far, for a run with a target.
        """
        settings = self.settings
        if settings.target_ess is None:
            return min(self.block or settings.draws, settings.draws - self.drawn)
        self.found = found = diagnose(posterior)
        now = time.perf_counter()
        if found.met(settings.target_ess, settings.max_rhat):
            self.reason = "target"
            self.forecast_draws, self.forecast_seconds = 0, 0.0
            if self.first_forecast is not None:
                self.first_forecast_actual = now - self.first_forecast_at
            self._report()
            return 0

        per_draw = self.per_draw
        self.forecast_draws = self._more_draws(found)
        self.forecast_seconds = self.forecast_draws * per_draw
        if self.first_forecast is None:
            self.first_forecast, self.first_forecast_at = self.forecast_seconds, now
        size = settings.draws
        if settings.max_draws is not None:
            size = min(size, settings.max_draws - self.drawn)
        seconds_after = self.earlier + now - self.started + size * per_draw
        if size <= 0:
            self.reason = "max_draws"
        elif settings.max_seconds is not None and seconds_after > settings.max_seconds:
            self.reason = "max_seconds"
        elif settings.max_cost is not None and (
            (seconds_after + settings.idle_seconds) * settings.price_per_second > settings.max_cost
        ):
            self.reason = "max_cost"
        self._report()
        return 0 if self.reason else size

    def _more_draws(self, found: Diagnostics) -> int:
        """Whole blocks of draws per chain forecast to reach the target from here.

        ESS grows in proportion to the draws once the chains mix, so the
        draws so far are scaled by how far the smallest ESS is from the
        target; an R-hat still too high with the ESS reached asks one block.
        """
        block = self.settings.draws
        smallest = max(1.0, min(found.min_bulk, found.min_tail))
        more = self.drawn * (self.settings.target_ess / smallest - 1.0)
        return max(1, math.ceil(more / block)) * block

    def _report(self) -> None:
        settings, found = self.settings, self.found
        smallest = min(found.min_bulk, found.min_tail)
        line = (
            f"draws {self.drawn:,}: min bulk ESS {found.min_bulk:.0f} ({found.min_bulk_at}), "
            f"min tail ESS {found.min_tail:.0f} ({found.min_tail_at}), "
            f"max R-hat {found.max_rhat:.3f} ({found.max_rhat_at}); "
            f"{_rate(smallest / self.draw_seconds)} ESS/s; "
        )
        if self.reason == "target":
            line += f"target ESS {settings.target_ess:,.0f} and R-hat {settings.max_rhat} reached"
        else:
            line += (
                f"~{self.forecast_draws:,} more draws, ~{format_seconds(self.forecast_seconds)}"
                + (
                    f", ~${self.forecast_seconds * settings.price_per_second:.2f}"
                    if settings.price_per_second is not None
                    else ""
                )
                + f" to reach {settings.target_ess:,.0f}"
            )
            if self.reason:
                line += f"; stopped by {self.reason}={getattr(settings, self.reason):g}"
        _say(line)

    def record(self) -> Convergence:
        """What the result's attrs say of the run: why it stopped and what it reached."""
        found, settings = self.found, self.settings
        price = settings.price_per_second
        return Convergence(
            blocks=len(self.sizes),
            draws=self.drawn,
            target_ess=settings.target_ess,
            max_rhat_target=settings.max_rhat,
            min_ess_bulk=found.min_bulk,
            min_ess_tail=found.min_tail,
            max_rhat=found.max_rhat,
            forecast_draws=self.forecast_draws,
            forecast_seconds=self.forecast_seconds,
            forecast_cost_usd=None if price is None else self.forecast_seconds * price,
            first_forecast_seconds=self.first_forecast,
            first_forecast_actual_seconds=self.first_forecast_actual,
        )


def _rate(value: float) -> str:
    """``"1.9"``, ``"27.4"``, ``"2,771"``: three figures, no exponent."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _join(parts: list[np.ndarray]) -> np.ndarray:
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


def _say(line: str) -> None:
    # Above the sampler's progress bar, if one is shown, rather than through it.
    tqdm.write(line, file=sys.stderr)
    sys.stderr.flush()


class Steps(Protocol):
    """A sampler's chains as :func:`run` steps them, each call going on from the last.

    ``stretches`` says whether ``tune`` may be called for part of the
    warm-up; if not, it is called once with all of it. ``state`` and
    ``restore`` are called only for a sampler whose registry entry says it
    can be checkpointed.
    """

    returned: Returned
    stretches: bool

    def begin(self) -> None:
        """Set every chain at its start."""

    def tune(self, steps: int) -> None:
        """``steps`` more warm-up steps of every chain; returns once they are done."""

    def draw(self, n: int) -> Draw:
        """The next ``n`` draws per chain."""

    def state(self) -> Any:
        """Every chain's state, on the host, to go on from later."""

    def restore(self, state: Any, done: int) -> None:
        """Set the chains at a saved ``state``, after ``done`` steps of warm-up and draws."""


class _Run:
    """One attempt at a run: warm-up, then blocks, each saved, until done or ended early."""

    def __init__(self, settings: SampleSettings, steps: Steps, attempt: Attempt) -> None:
        self.settings, self.steps, self.attempt = settings, steps, attempt
        saves = samplers.get(settings.sampler).checkpoints
        self.checkpoint = attempt.checkpoint if saves else None
        self.watch = _Watch(settings, attempt.started)
        self.blocks: list[Draw] = []
        self.tuned, self.attempts = 0, 1
        self.clock = _CompileClock()
        # This attempt's seconds a warm-up step, once one is measured.
        self.per_step: float | None = None
        self.saved_at, self.save_seconds = attempt.started, 0.0
        self.error: str | None = None
        self.unsaved = False

    def resume(self) -> None:
        """Go on from the checkpoint of an earlier attempt at these chains, else begin."""
        settings, watch = self.settings, self.watch
        loaded = None if self.checkpoint is None else self.checkpoint.load(settings)
        limit = settings.draws if settings.target_ess is None else settings.max_draws
        # A checkpoint of more draws than this run may draw is another run's to go on from.
        if loaded is None or (limit is not None and loaded[0].drawn > limit):
            if settings.extend:
                _say(
                    "The earlier run's checkpoint is gone, or has gone on past these draws: "
                    "warming up and drawing them all afresh, to the same draws."
                )
            self.steps.begin()
            return
        progress, state, self.blocks = loaded
        self.steps.restore(state, progress.tuned + progress.drawn)
        self.tuned = progress.tuned
        watch.sizes, watch.draw_seconds = list(progress.blocks), progress.draw_seconds
        if progress.drawn:
            watch.per_draw = progress.draw_seconds / progress.drawn
        if progress.ended:  # an extension: a call of its own, which counts its own attempts
            _say(f"Going on from the earlier run's {progress.drawn:,} draws a chain.")
            return
        self.attempts, watch.earlier = progress.attempts + 1, progress.seconds
        _say(
            f"Going on from the checkpoint of attempt {progress.attempts}: {progress.tuned:,} "
            f"of {settings.tune:,} warm-up steps and {progress.drawn:,} draws a chain done."
        )

    def save(self, draws: Draw | None = None, end: bool = False) -> None:
        """Save a checkpoint (with the block just drawn, if given), if this sampler can.

        With ``end``, keep only the state of a run that ended as asked. A
        checkpoint that cannot be saved is said once, and the run goes on.
        """
        if self.checkpoint is None:
            return
        start = time.perf_counter()
        try:
            if end:
                self.checkpoint.end(self._progress(), self.steps.state())
            else:
                self.checkpoint.save(self._progress(), self.steps.state(), draws)
        except Exception as exc:  # noqa: BLE001 - only a restart would miss it
            if not self.unsaved:
                _say(f"A checkpoint was not saved ({type(exc).__name__}: {exc}); sampling goes on.")
            self.unsaved = True
        self.saved_at = time.perf_counter()
        self.save_seconds += self.saved_at - start

    def _progress(self) -> Progress:
        watch = self.watch
        return Progress(
            chains=Checkpoint.chains(self.settings),
            tuned=self.tuned,
            blocks=tuple(watch.sizes),
            draw_seconds=watch.draw_seconds,
            attempts=self.attempts,
            seconds=watch.earlier + time.perf_counter() - self.attempt.started,
        )

    def _ends_early(self, seconds: float | None) -> str | None:
        """``"stopped"`` if the client asked, ``"deadline"`` if ``seconds`` more would pass it."""
        attempt = self.attempt
        if attempt.checkpoint is not None and attempt.checkpoint.stop_asked():
            return "stopped"
        late = attempt.deadline is not None and seconds is not None
        if late and time.perf_counter() + seconds > attempt.deadline:
            return "deadline"
        return None

    def _refuse(self, reason: str) -> NoDrawsError:
        """The error of a run that ended for ``reason`` before its first draw, saved first."""
        self.save()
        why = (
            "its attempt's time was running out" if reason == "deadline" else "it was asked to stop"
        )
        kept = ""
        if self.checkpoint is not None:
            longer = ""
            if reason == "deadline":
                longer = ", with a longer timeout (pymc_modal.gpu(timeout=...))"
            kept = (
                " Its checkpoint is kept: call again with the same arguments to go on from "
                f"warm-up step {self.tuned:,}{longer}."
            )
        return NoDrawsError(
            f"The run ended before its first draw, after {self.tuned:,} of "
            f"{self.settings.tune:,} warm-up steps, because {why}.{kept}"
        )

    def warm_up(self) -> None:
        """The warm-up steps not yet done, saved at the end.

        A sampler that allows it is stepped in stretches: a first twentieth to
        measure the pace, then stretches of about :data:`BLOCK_SECONDS`, each
        saved, or shorter to end before the deadline, where the warm-up stops.
        """
        settings, attempt = self.settings, self.attempt
        stepped = False
        while self.tuned < settings.tune:
            left = settings.tune - self.tuned
            if not self.steps.stretches:
                length = left
            elif self.per_step is None:
                length = max(1, int(settings.tune * _FIRST_STRETCH))
            else:
                length = min(left, max(1, int(BLOCK_SECONDS / self.per_step)))
                if attempt.deadline is not None:
                    fits = int((attempt.deadline - time.perf_counter()) / self.per_step)
                    length = min(length, fits)
                reason = self._ends_early(None) or ("deadline" if length <= 0 else None)
                if reason is not None:
                    raise self._refuse(reason)
            compiled, began = self.clock.seconds, time.perf_counter()
            self.steps.tune(length)
            now = time.perf_counter()
            first, stepped = self.per_step is None, True
            self.tuned += length
            self.per_step = max(1e-9, (now - began - (self.clock.seconds - compiled)) / length)
            more = self.per_step * (settings.tune - self.tuned)
            if first and attempt.deadline is not None and now + more > attempt.deadline:
                _say(
                    f"Warm-up needs about {format_seconds(more)} more, and this attempt's time "
                    f"ends in {format_seconds(max(0.0, attempt.deadline - now))}: it will stop "
                    "then, its checkpoint kept, before its first draw."
                )
            if now - self.saved_at >= BLOCK_SECONDS and self.tuned < settings.tune:
                self.save()
        if stepped:
            self.save()

    def draw(self) -> None:
        """Draw blocks until the run is done, or ends early (see :data:`ENDED_EARLY`)."""
        watch, settings = self.watch, self.settings
        kept = [v.name for v in self.steps.returned.kept]
        pace = self.per_step or watch.per_draw
        if settings.target_ess is None and pace is not None:
            watch.block = max(1, min(settings.draws, int(BLOCK_SECONDS / pace)))

        def posterior() -> dict[str, np.ndarray] | None:
            if settings.target_ess is None:
                return None
            joined = zip(*(values for values, _ in self.blocks), strict=True)
            return {name: _join(list(parts)) for name, parts in zip(kept, joined, strict=False)}

        # A target run's first block is always drawn; its next ones are decided by the draws.
        first = not self.blocks and settings.target_ess is not None
        size = settings.draws if first else watch.decide(posterior())
        while size:
            per_draw = watch.per_draw or pace
            reason = self._ends_early(None if per_draw is None else size * per_draw)
            if reason is not None:
                if not self.blocks:
                    raise self._refuse(reason)
                watch.reason = reason
                why = {"deadline": "the next block would not end before this attempt's deadline"}
                kept = "; its checkpoint is kept" if self.checkpoint is not None else ""
                _say(
                    f"Ending after {watch.drawn:,} draws a chain: "
                    f"{why.get(reason, 'asked to stop')}{kept}."
                )
                return
            compiled, began = self.clock.seconds, time.perf_counter()
            try:
                block = self.steps.draw(size)
            except Exception as exc:
                if not self.blocks:
                    raise
                watch.reason, self.error = "error", "".join(traceback.format_exception(exc))
                _say(
                    f"A block failed ({type(exc).__name__}: {exc}); returning the draws before it."
                )
                return
            # Nested compile events can add up to more than a tiny block's wall time.
            seconds = max(1e-6, time.perf_counter() - began - (self.clock.seconds - compiled))
            self.blocks.append(block)
            watch.add(size, seconds)
            self.save(block)
            size = watch.decide(posterior())

    def finish(self) -> None:
        """A run that drew all it was asked, or reached its target, keeps only its state.

        One that stopped at a cap or ended early keeps its draws too, for a
        call with a larger cap (or the same call) to go on.
        """
        if self.watch.reason in (None, "target"):
            self.save(end=True)

    def answer(self, start: float, end: float) -> Answer:
        """The run's answer from its blocks."""
        watch = self.watch
        blocks = self.blocks
        values = [
            _join(list(parts)) for parts in zip(*(values for values, _ in blocks), strict=True)
        ]
        stats = {name: _join([block[name] for _, block in blocks]) for name in blocks[0][1]}
        seconds = {
            "compile": self.clock.seconds,
            "sample": max(0.0, end - start - self.clock.seconds - self.save_seconds),
            "checkpoint": self.save_seconds,
        }
        convergence = None if self.settings.target_ess is None else watch.record()
        made = answer(
            self.settings, self.steps.returned, values, stats, seconds, convergence=convergence
        )
        return dataclasses.replace(
            made,
            stop_reason=watch.reason,
            error=self.error,
            attempts=self.attempts,
            earlier_seconds=watch.earlier,
        )


def run(settings: SampleSettings, steps: Steps, attempt: Attempt | None = None) -> Answer:
    """Warm up and draw, in blocks, going on from a checkpoint of the same chains if there is one.

    Parameters
    ----------
    settings : SampleSettings
    steps : Steps
        The sampler's chains; ``steps.returned`` is the graph whose outputs
        ``draw`` returns.
    attempt : Attempt, optional
        When the worker took the job (from which ``max_seconds`` and
        ``max_cost`` count), its deadline and its checkpoint; by default
        started now, with neither.

    Returns
    -------
    Answer
        As :func:`pymc_modal.worker.chains.answer` makes it, with why the
        run stopped and the attempts it took; its ``convergence`` says what a
        run sampled to a target reached.

    Raises
    ------
    NoDrawsError
        If the run ended before its first draw (its deadline, or a stop).
    """
    attempt = Attempt() if attempt is None else attempt
    run = _Run(settings, steps, attempt)
    jax.monitoring.register_event_duration_secs_listener(run.clock)
    try:
        start = time.perf_counter()
        run.resume()
        run.warm_up()
        run.draw()
        run.finish()
        end = time.perf_counter()
    finally:
        jax.monitoring.unregister_event_duration_listener(run.clock)
    return run.answer(start, end)
