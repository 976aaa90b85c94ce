"""Sampling in blocks: warm up once, then draw until converged or capped.

Every sampler hands this module two steps: ``warm_up()``, and ``draw(n)``,
which draws ``n`` more per chain from where the last block left off, with the
kernel adapted in warm-up and its compiled program, and returns them as numpy
arrays. Without a target one block of ``settings.draws`` is drawn, which is
the whole run. With ``settings.target_ess``, after each block the returned
variables' ESS and R-hat are measured over every block so far
(:func:`pymc_modal.convergence.diagnose`) and one line reports them with a
forecast of what the target takes; the run stops when the target is met, or
before a block that would pass a cap (the warm-up and the first block are
always run).
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from tqdm import tqdm

from pymc_modal.convergence import Diagnostics, diagnose, format_seconds
from pymc_modal.job import Answer, Convergence, Returned, SampleSettings
from pymc_modal.worker.chains import answer

__all__ = ["Draw", "run"]

# A block's draws: the returned graph's outputs, then the sample stats by PyMC's names,
# each shaped (chain, draw, ...).
Draw = tuple[list[np.ndarray], dict[str, np.ndarray]]

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
    """The checks of a run sampled to a target, block by block."""

    settings: SampleSettings
    started: float
    blocks: int = 0
    drawn: int = 0
    draw_seconds: float = 0.0
    reason: str | None = None
    found: Diagnostics | None = None
    forecast_draws: int = 0
    forecast_seconds: float = 0.0
    # The first forecast of the seconds to the target, when it was made, and the actual.
    first_forecast: float | None = None
    first_forecast_at: float = 0.0
    first_forecast_actual: float | None = None

    def check(self, posterior: dict[str, np.ndarray], size: int, seconds: float) -> int:
        """Take in a block of ``size`` draws that took ``seconds``; the next block's size, or 0."""
        settings = self.settings
        self.blocks += 1
        self.drawn += size
        self.draw_seconds += seconds
        self.found = found = diagnose(posterior)
        now = time.perf_counter()
        if found.met(settings.target_ess, settings.max_rhat):
            self.reason = "target"
            self.forecast_draws, self.forecast_seconds = 0, 0.0
            if self.first_forecast is not None:
                self.first_forecast_actual = now - self.first_forecast_at
            self._report()
            return 0

        per_draw = seconds / size
        self.forecast_draws = self._more_draws(found)
        self.forecast_seconds = self.forecast_draws * per_draw
        if self.first_forecast is None:
            self.first_forecast, self.first_forecast_at = self.forecast_seconds, now
        size = settings.draws
        if settings.max_draws is not None:
            size = min(size, settings.max_draws - self.drawn)
        seconds_after = now - self.started + size * per_draw
        if size <= 0:
            self.reason = "max_draws"
        elif settings.max_seconds is not None and seconds_after > settings.max_seconds:
            self.reason = "max_seconds"
        elif settings.max_cost is not None and (
            seconds_after * settings.price_per_second > settings.max_cost
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
        # Above the sampler's progress bar, if one is shown, rather than through it.
        tqdm.write(line, file=sys.stderr)
        sys.stderr.flush()

    def record(self) -> Convergence:
        """What the result's attrs say of the run: why it stopped and what it reached."""
        found, settings = self.found, self.settings
        price = settings.price_per_second
        return Convergence(
            stop_reason=self.reason,
            blocks=self.blocks,
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


def run(
    settings: SampleSettings,
    returned: Returned,
    warm_up: Callable[[], None],
    draw: Callable[[int], Draw],
    started: float | None = None,
) -> Answer:
    """Warm up, draw one block or (with ``settings.target_ess``) blocks to the target.

    Parameters
    ----------
    settings : SampleSettings
    returned : Returned
        The graph whose outputs ``draw`` returns.
    warm_up : callable
        Runs the sampler's warm-up, returning once it is done (not merely dispatched).
    draw : callable
        ``draw(n)``: the next ``n`` draws per chain, as :data:`Draw`.
    started : float, optional
        ``time.perf_counter()`` when the worker took the job, from which
        ``max_seconds`` and ``max_cost`` count; by default now.

    Returns
    -------
    Answer
        As :func:`pymc_modal.worker.chains.answer` makes it; its
        ``convergence`` says why a run sampled to a target stopped.
    """
    started = time.perf_counter() if started is None else started
    watch = None if settings.target_ess is None else _Watch(settings, started)
    kept = [v.name for v in returned.kept]
    clock = _CompileClock()
    blocks: list[Draw] = []
    jax.monitoring.register_event_duration_secs_listener(clock)
    try:
        start = time.perf_counter()
        warm_up()
        size = settings.draws
        while size:
            compiled, began = clock.seconds, time.perf_counter()
            blocks.append(draw(size))
            # Nested compile events can add up to more than a tiny block's wall time.
            seconds = max(1e-6, time.perf_counter() - began - (clock.seconds - compiled))
            if watch is None:
                break
            posterior = {
                name: _join([values[i] for values, _ in blocks]) for i, name in enumerate(kept)
            }
            size = watch.check(posterior, size, seconds)
        end = time.perf_counter()
    finally:
        jax.monitoring.unregister_event_duration_listener(clock)
    values = [_join(list(parts)) for parts in zip(*(values for values, _ in blocks), strict=True)]
    stats = {name: _join([block[name] for _, block in blocks]) for name in blocks[0][1]}
    seconds = {"compile": clock.seconds, "sample": max(0.0, end - start - clock.seconds)}
    convergence = None if watch is None else watch.record()
    return answer(settings, returned, values, stats, seconds, convergence=convergence)
