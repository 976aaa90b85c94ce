"""nutpie and ChEES: the default's posterior and result shape; bad options refused."""

import dataclasses
import inspect
import os
import re
import warnings
from pathlib import Path

import arviz as az
import jax
import numpy as np
import pymc as pm
import pytensor.tensor as pt
import pytest
from pytensor.graph.op import Op
from pytensor.link.jax.dispatch import jax_funcify

import pymc_modal
from pymc_modal._compat import PYMC_MAJOR
from pymc_modal.errors import InvalidOptionError, NotConvergedWarning, WorkerMemoryError
from pymc_modal.payload import Job
from pymc_modal.samplers import DEFAULT, SAMPLERS
from pymc_modal.worker import blackjax as blackjax_worker
from pymc_modal.worker import nutpie as nutpie_worker

COMMON = {"draws": 300, "tune": 300, "random_seed": 2, "backend": "local", "progressbar": False}
# Each fit draws its 300 in two blocks, the second going on from the first.
BLOCKS = {"draws": 150, "target_ess": 10**6, "max_draws": 300}
CHAINS = {"numpyro": 4, "nutpie": 4, "chees": 64}
OTHERS = [name for name in CHAINS if name != "numpyro"]
NUTPIE = SAMPLERS["nutpie"]


def _groups(result) -> set[str]:
    return set(result.children) if PYMC_MAJOR >= 6 else set(result.groups())


@pytest.fixture(scope="module")
def fits():
    from conftest import make_model

    model = make_model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotConvergedWarning)
        return {
            name: pymc_modal.sample(
                model=model, sampler=name, chains=chains, **{**COMMON, **BLOCKS}
            )
            for name, chains in CHAINS.items()
        }


@pytest.mark.slow
@pytest.mark.parametrize("name", OTHERS)
def test_posterior_means_agree_with_the_default_within_monte_carlo_error(fits, name):
    reference, fit = fits["numpyro"], fits[name]
    for var in ("mu", "sigma", "slope", "effect"):
        errors = [np.asarray(az.mcse(result, var_names=[var])[var]) for result in (reference, fit)]
        difference = fit.posterior[var].mean(("chain", "draw")) - reference.posterior[var].mean(
            ("chain", "draw")
        )
        bound = 5 * np.sqrt(errors[0] ** 2 + errors[1] ** 2)
        assert np.all(np.abs(np.asarray(difference)) <= bound), (var, difference, bound)


@pytest.mark.slow
@pytest.mark.parametrize("name", OTHERS)
def test_results_have_the_default_groups_coords_dims_and_n_steps(fits, name):
    reference, fit = fits["numpyro"], fits[name]
    assert _groups(fit) == _groups(reference)
    for var in reference.posterior.data_vars:
        assert fit.posterior[var].dims == reference.posterior[var].dims
    assert list(fit.posterior["effect"].coords["group"].values) == ["g0", "g1", "g2", "g3"]
    assert fit.posterior.sizes["chain"] == CHAINS[name]
    assert fit.posterior.sizes["draw"] == COMMON["draws"]
    assert fit.attrs["pymc_modal_blocks"] == 2
    steps = np.asarray(fit.sample_stats["n_steps"])
    assert steps.shape == (CHAINS[name], COMMON["draws"]) and steps.min() >= 1
    assert {"lp", "step_size", "acceptance_rate", "diverging"} <= set(fit.sample_stats.data_vars)


def test_an_unknown_sampler_is_refused_before_shipping_with_the_valid_names(model, nothing_shipped):
    for removed in ("blackjax", "laps"):  # samplers that lost (BENCHMARKS.md)
        with pytest.raises(InvalidOptionError, match="'numpyro', 'nutpie', 'chees'\\."):
            pymc_modal.sample(model=model, sampler=removed, backend="local")
    with (
        pytest.raises(InvalidOptionError, match="sampler='hmc'"),
        pymc_modal.gpu("H100", sampler="hmc"),
    ):
        pass


def test_options_a_sampler_cannot_honour_are_refused(model, nothing_shipped):
    with pytest.raises(InvalidOptionError, match="max_tree_depth: NumPyro NUTS options"):
        pymc_modal.sample(model=model, sampler="chees", nuts_sampler_kwargs={"max_tree_depth": 5})
    with pytest.raises(InvalidOptionError, match="sampler='chees' adapts.*chains=16"):
        pymc_modal.sample(model=model, sampler="chees", chains=1, backend="local")
    with pytest.raises(
        InvalidOptionError, match="max_tree_depth.*nutpie's options are low_rank_modified"
    ):
        pymc_modal.sample(model=model, sampler="nutpie", nuts={"max_tree_depth": 5})
    with pytest.raises(InvalidOptionError, match="low_rank_modified_mass_matrix='yes'"):
        pymc_modal.sample(
            model=model, sampler="nutpie", nuts={"low_rank_modified_mass_matrix": "yes"}
        )


@pytest.mark.parametrize(
    ("name", "worker", "tune", "steps"),
    [
        ("chees", blackjax_worker, 5, 12),
        ("nutpie", nutpie_worker, 5, 24),  # every chain's, in one bar
    ],
)
def test_the_progress_bar_counts_every_warm_up_step_and_draw(
    model, settings, name, worker, tune, steps, capsys
):
    settings = dataclasses.replace(
        settings, draws=7, tune=tune, chains=2, progressbar=True, sampler=name
    )
    worker.sample(Job(model, settings, [], None))
    assert f"{steps}/{steps}" in capsys.readouterr().err


class _Flaky(Op):
    """The identity; in JAX, a callback that fails from its 40th call on, as a device might."""

    itypes = [pt.dscalar]
    otypes = [pt.dscalar]

    def perform(self, node, inputs, outputs):
        outputs[0][0] = np.asarray(inputs[0])


_calls = []


def _fails_late(x):
    _calls.append(x)
    if len(_calls) >= 40:
        raise ValueError("the device is out of memory")
    return x


@jax_funcify.register(_Flaky)
def _flaky_in_jax(op, **kwargs):
    return lambda x: jax.pure_callback(_fails_late, jax.ShapeDtypeStruct(x.shape, x.dtype), x)


def test_nutpie_raises_the_error_of_a_call_that_failed_in_its_threads(settings):
    with pm.Model() as model:
        mu = pm.Normal("mu")
        pm.Deterministic("twin", _Flaky()(mu))  # computed once a draw, in nutpie's threads
    settings = dataclasses.replace(settings, draws=50, tune=50, chains=2, sampler="nutpie")
    _calls.clear()

    with pytest.raises(ValueError, match="the device is out of memory"):
        nutpie_worker.sample(Job(model, settings, [], None))


def test_nutpie_returns_the_variables_asked_for_and_stops_at_the_target(model, settings):
    settings = dataclasses.replace(
        settings,
        draws=100,
        tune=200,
        chains=2,
        sampler="nutpie",
        var_names=["mu"],
        log_likelihood=True,
        target_ess=50,
        max_draws=NUTPIE.max_draws(100, 10**9),  # as the plan sets it: most_blocks blocks
    )

    result = nutpie_worker.sample(Job(model, settings, [], None))

    draws = result.convergence.draws
    assert result.stop_reason == "target" and draws % 100 == 0
    assert set(result.posterior) == {"mu"} and set(result.log_likelihood) == {"y"}
    assert result.posterior["mu"].shape == (2, draws)
    assert result.log_likelihood["y"].shape == (2, draws, 20)


@pytest.mark.slow
def test_nutpie_to_a_target_with_no_max_draws_stops_after_its_most_blocks():
    """The plan bounds the draws by nutpie's most_blocks, not only by the result's size."""
    with pm.Model() as model:
        mu = pm.Normal("mu")
        pm.Normal("x", mu, 1, shape=50)

    with pytest.warns(NotConvergedWarning, match="stopped at max_draws after 1,000 draws"):
        result = pymc_modal.sample(
            model=model,
            sampler="nutpie",
            target_ess=10**9,
            draws=100,
            tune=100,
            var_names=["mu"],
            **{name: COMMON[name] for name in ("random_seed", "backend", "progressbar")},
        )

    assert result.posterior.sizes["draw"] == NUTPIE.most_blocks * 100


@pytest.mark.parametrize(
    ("draws", "target_ess", "room", "message"),
    [
        # A target without max_draws asks nutpie for its entry's most_blocks blocks.
        (100, 50, 600, r"100 tune \+ 1000 draws\).*Pass max_draws of 500 or fewer"),
        (600, 50, 600, r"100 tune \+ 6000 draws\).*Pass draws and max_draws of 500 or fewer"),
        (1000, None, 600, r"100 tune \+ 1000 draws\).*Pass draws of 500 or fewer"),
        # Not even the warm-up fits.
        (1000, None, 50, r"var_names keeps\. Use sampler='numpyro'"),
    ],
)
def test_nutpie_refuses_a_trace_the_machine_could_not_hold_before_sampling(
    model, settings, monkeypatch, draws, target_ess, room, message
):
    """``room``: the draws a chain, warm-up's included, the machine's memory holds."""
    per_draw = NUTPIE.trace_bytes_per_value * 7 * 2  # 7 parameters, 2 chains
    monkeypatch.setattr(nutpie_worker, "_memory_bytes", lambda: per_draw * room)
    monkeypatch.setattr("nutpie.sample", _never_called)
    settings = dataclasses.replace(
        settings,
        draws=draws,
        tune=100,
        chains=2,
        sampler="nutpie",
        target_ess=target_ess,
        max_draws=None if target_ess is None else NUTPIE.max_draws(draws, 10**9),
    )

    with pytest.raises(WorkerMemoryError, match=message):
        nutpie_worker.sample(Job(model, settings, [], None))


def _never_called(*args, **kwargs):
    raise AssertionError("nutpie started sampling")


def test_readme_table_of_samplers_is_the_registry():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Choosing a sampler", 1)[1]
    table = section.split("| sampler | what it is |", 1)[1].split("\n\n", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    named = [re.match(r"\| `\"(\w+)\"`( \(default\))?", row).groups() for row in rows]

    assert [name for name, _ in named] == list(SAMPLERS)
    assert [name for name, default in named if default] == [DEFAULT]
    sampler_doc = inspect.getdoc(pymc_modal.sample).split("\nsampler : ", 1)[1].splitlines()[0]
    assert sampler_doc == "{" + ", ".join(f'"{name}"' for name in SAMPLERS) + "}, optional"


def test_readme_says_which_samplers_checkpoint_extend_and_warm_start_as_the_registry_does():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Long runs", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("| ")]
    names = re.findall(r'`"(\w+)"`', lines[0])
    said = {line.split(" | ")[0].strip("| "): line.split(" | ")[1:] for line in lines[1:]}
    capable = {
        "checkpoint, resume": "checkpoints",
        "`extend`": "checkpoints",
        "`warm_start`": "warm_start",
    }

    assert sorted(names) == sorted(SAMPLERS)
    for row, flag in capable.items():
        yes = [name for name, cell in zip(names, said[row], strict=True) if cell.startswith("yes")]
        assert yes == [name for name in names if getattr(SAMPLERS[name], flag)], row


@pytest.mark.parametrize(
    ("limit", "expected"), [("1073741824\n", 2**30), ("max\n", None), (None, None)]
)
def test_nutpie_reads_its_container_s_memory_limit(tmp_path, monkeypatch, limit, expected):
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    path = tmp_path / "memory.max"
    if limit is not None:
        path.write_text(limit)
    monkeypatch.setattr(nutpie_worker, "CGROUP_LIMITS", (str(path),))
    assert nutpie_worker._memory_bytes() == (expected or physical)
