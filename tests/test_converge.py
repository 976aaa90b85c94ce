"""Sampling to a target ESS and R-hat in blocks, with caps, a forecast and the result's record."""

import dataclasses
import re
import time

import jax
import numpy as np
import pytest

import pymc_modal
from pymc_modal import fanout, pipeline
from pymc_modal.client import prepare
from pymc_modal.convergence import diagnose
from pymc_modal.errors import InvalidOptionError, NotConvergedWarning, ResultTooLargeError
from pymc_modal.job import Answer, Convergence
from pymc_modal.worker import blackjax
from pymc_modal.worker.blocks import _Watch

QUICK = {"tune": 100, "random_seed": 3, "progressbar": False, "backend": "local"}
FORECAST = (
    r"draws 50: min bulk ESS \d+ \(\w+(\[\d+\])?\), min tail ESS \d+ \(\w+(\[\d+\])?\), "
    r"max R-hat [\d.]+ \(\w+(\[\d+\])?\); [\d.,]+ ESS/s; ~[\d,]+ more draws, ~(\d+m)?\d+s"
    r"(, ~\$[\d.]+)? to reach "
)


def _target(settings, **kwargs):
    """Settings sampled in blocks to a target never reached."""
    return dataclasses.replace(
        settings, **{"chains": 2, "tune": 50, "target_ess": 100_000, **kwargs}
    )


def test_a_blackjax_block_hands_the_next_its_last_draw(settings):
    settings = dataclasses.replace(settings, chains=4, tune=20)
    warm_up, draws = blackjax._chees(
        lambda x: -0.5 * (x**2).sum(), lambda x: [x], settings, lambda: None
    )
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    carry = jax.jit(warm_up)(keys, jax.numpy.zeros((4, 3)))
    carry, ((positions,), stats) = jax.jit(draws(5))(carry, 0)

    assert positions.shape == (4, 5, 3) and stats["n_steps"].shape == (4, 5)
    np.testing.assert_array_equal(carry[0].position, positions[:, -1])


def _checked(settings, seconds, size=50, started=None):
    """A watch that took a block of independent draws per entry of ``seconds``, and its answer."""
    watch = _Watch(settings, time.perf_counter() if started is None else started)
    rng = np.random.default_rng(0)
    draws = {"mu": rng.normal(size=(2, 0)), "effect": rng.normal(size=(2, 0, 4))}
    for block_seconds in seconds:
        new = {"mu": rng.normal(size=(2, size)), "effect": rng.normal(size=(2, size, 4))}
        draws = {name: np.concatenate([draws[name], new[name]], axis=1) for name in draws}
        answer = watch.check(draws, size, block_seconds)
        if answer == 0:
            break
    return watch, answer


@pytest.mark.parametrize(
    ("cap", "reason"),
    [
        ({"max_draws": 100}, "max_draws=100"),
        ({"max_seconds": 60.2}, "max_seconds=60.2"),
        ({"max_cost": 0.0602, "price_per_second": 0.001}, "max_cost=0.0602"),
        # The idle window billed after the answer counts against the cap as well.
        ({"max_cost": 0.0902, "price_per_second": 0.001, "idle_seconds": 30}, "max_cost=0.0902"),
    ],
)
def test_a_cap_stops_before_a_block_that_would_pass_it(settings, capsys, cap, reason):
    # 59 s in, a block of 0.5 s leaves room for another; after one of 2 s, another does not.
    watch, answer = _checked(
        _target(settings, draws=50, **cap), [0.5, 2.0, 0.5], started=time.perf_counter() - 59
    )

    name = reason.partition("=")[0]
    assert answer == 0 and watch.reason == name
    first, second = capsys.readouterr().err.strip().splitlines()
    assert "stopped" not in first
    assert second.startswith("draws 100: ") and second.endswith(f"stopped by {reason}")
    assert ("~$" in second) == ("max_cost" in cap)
    record = watch.record()
    assert (watch.reason, record.blocks, record.draws) == (name, 2, 100)
    assert (record.forecast_cost_usd is not None) == ("max_cost" in cap)
    assert record.forecast_draws > 0 and record.first_forecast_seconds > 0


def test_the_forecast_scales_the_draws_by_the_ess_still_missing(settings, capsys):
    watch, answer = _checked(_target(settings, draws=50, target_ess=1000), [0.5])
    assert answer == 50
    smallest = min(watch.found.min_bulk, watch.found.min_tail)
    more = 50 * (1000 / smallest - 1)
    assert watch.forecast_draws == 50 * np.ceil(more / 50)
    assert watch.forecast_seconds == pytest.approx(watch.forecast_draws * 0.01)
    assert re.fullmatch(FORECAST + "1,000", capsys.readouterr().err.strip())


def test_a_met_target_stops_and_records_how_close_the_first_forecast_came(settings, capsys):
    watch, answer = _checked(_target(settings, draws=50, target_ess=300), [0.5] * 20)
    assert answer == 0 and watch.reason == "target"
    record = watch.record()
    assert record.forecast_draws == 0 and record.first_forecast_seconds > 0
    assert 0 < record.first_forecast_actual_seconds < 10
    assert capsys.readouterr().err.strip().endswith("target ESS 300 and R-hat 1.01 reached")


@pytest.mark.slow
def test_a_run_to_the_target_returns_every_block_and_how_close_its_forecast_came(model, caplog):
    with caplog.at_level("INFO", logger="pymc_modal"):
        found = pymc_modal.sample(model=model, draws=100, chains=2, target_ess=300, **QUICK)

    attrs = found.attrs
    assert attrs["pymc_modal_stop_reason"] == "target"
    assert attrs["pymc_modal_blocks"] >= 2
    assert (
        found.posterior.sizes["draw"]
        == attrs["pymc_modal_draws"]
        == 100 * attrs["pymc_modal_blocks"]
    )
    assert found.sample_stats.sizes["draw"] == attrs["pymc_modal_draws"]
    assert min(attrs["pymc_modal_min_ess_bulk"], attrs["pymc_modal_min_ess_tail"]) >= 300
    assert attrs["pymc_modal_first_forecast_seconds"] > 0
    assert attrs["pymc_modal_first_forecast_actual_seconds"] > 0
    assert attrs["pymc_modal_forecast_draws"] == 0
    summary = f"Sampled 2 chains x {attrs['pymc_modal_draws']} draws on this machine"
    assert summary in caplog.text
    assert f"min bulk ESS {attrs['pymc_modal_min_ess_bulk']:.0f}, min tail ESS" in caplog.text


@pytest.mark.slow
def test_a_capped_run_warns_naming_the_cap_and_so_does_its_stored_result(model, in_process):
    capped = {"draws": 30, "chains": 2, "target_ess": 50_000, "max_draws": 60, **QUICK}
    with pytest.warns(NotConvergedWarning, match=r"stopped at max_draws after 60 draws") as seen:
        first = pymc_modal.sample(model=model, **capped)
    assert seen.pop(NotConvergedWarning).filename == __file__
    assert first.posterior.sizes["draw"] == 60
    with pytest.warns(NotConvergedWarning, match="target_ess=50000") as seen:
        again = pymc_modal.sample(model=model, **capped)
    assert seen.pop(NotConvergedWarning).filename == __file__
    assert "pymc_modal_stored_at" in again.attrs
    assert again.attrs["pymc_modal_forecast_draws"] == first.attrs["pymc_modal_forecast_draws"]


def test_without_max_draws_the_draws_stop_before_the_result_passes_its_limit(model):
    with pymc_modal.options(max_result_bytes=20_000):
        planned = pipeline.plan(
            prepare(model=model, draws=20, chains=2, target_ess=400, backend="local")
        )
        (share,) = planned.shares
        assert share.max_draws == 20_000 // (planned.checked.draw_bytes * 2)
        assert share.price_per_second is None
        with pytest.raises(ResultTooLargeError, match="2 chains x max_draws=10000 draws"):
            pymc_modal.sample(
                model=model, draws=20, chains=2, target_ess=400, max_draws=10_000, **QUICK
            )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"target_ess": 0}, "target_ess=0: pass a positive whole number"),
        ({"target_ess": 2.5}, "target_ess=2.5: pass a positive whole number"),
        ({"target_ess": True}, "target_ess=True: pass a positive whole number"),
        ({"target_ess": 400, "draws": 0}, r"draws=0: .* \(with target_ess, per block\)"),
        ({"target_ess": 400, "max_rhat": 1.0}, "max_rhat=1.0: R-hat is 1 at best"),
        ({"target_ess": 400, "max_rhat": "1.01"}, "max_rhat='1.01': R-hat is 1 at best"),
        ({"target_ess": 400, "max_draws": 10}, "max_draws=10: pass a whole number .* draws=1000"),
        ({"target_ess": 400, "max_seconds": 0}, "max_seconds=0: pass a positive number of sec"),
        ({"target_ess": 400, "max_cost": -1.0}, r"max_cost=-1.0: pass a positive number of US"),
        ({"max_seconds": 60}, "max_seconds applies to a run sampled to a target"),
        ({"max_rhat": 1.05}, "max_rhat applies to a run sampled to a target"),
        ({"target_ess": 400, "max_cost": 2.0}, "max_cost=2: the local backend bills nothing"),
    ],
)
def test_bad_targets_and_caps_are_refused_before_anything_ships(
    model, nothing_shipped, arguments, message
):
    with pytest.raises(InvalidOptionError, match=message):
        pymc_modal.sample(model=model, backend="local", **arguments)


def test_workers_aim_at_their_share_and_the_result_keeps_what_all_have(settings):
    whole = _target(settings, chains=3, max_cost=3.0)
    shares = fanout.split(whole, 2)
    # Whole effective draws, in proportion to the chains, that add up to the target.
    assert [share.target_ess for share in shares] == [66_667, 33_333]
    assert all(type(share.target_ess) is int for share in shares)
    assert [share.max_cost for share in shares] == pytest.approx([2.0, 1.0])

    rng = np.random.default_rng(0)

    def answer(chains, draws, reason):
        record = Convergence(
            blocks=draws // 10,
            draws=draws,
            target_ess=50_000 * chains,
            max_rhat_target=1.01,
            min_ess_bulk=1.0,
            min_ess_tail=1.0,
            max_rhat=2.0,
            forecast_draws=10,
            forecast_seconds=1.0,
        )
        return Answer(
            posterior={"mu": rng.normal(size=(chains, draws))},
            sample_stats={"lp": rng.normal(size=(chains, draws))},
            log_likelihood=None,
            attrs={"sampling_time": 1.0},
            seconds={"sample": 1.0},
            device="cpu",
            convergence=record,
            stop_reason=reason,
        )

    first, second = answer(2, 40, "target"), answer(1, 30, "max_seconds")
    merged = fanout.merge([first, second])
    assert merged.posterior["mu"].shape == (3, 30)
    np.testing.assert_array_equal(merged.posterior["mu"][:2], first.posterior["mu"][:, :30])
    record = merged.convergence
    assert (merged.stop_reason, record.draws, record.blocks) == ("max_seconds", 30, 4)
    assert record.target_ess == 150_000
    assert record.min_ess_bulk == diagnose(merged.posterior).min_bulk
