"""The flagship example runs end to end at a tiny size and writes its plot."""

import importlib.util
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from pymc_modal.backends import local

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "hier_logistic.py"


def _load_example():
    spec = importlib.util.spec_from_file_location("hier_logistic", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_simulation_follows_the_design():
    example = _load_example()
    data = example.simulate(observations=20_000, groups=1_000, covariates=20)
    assert data["x"].dtype == np.float32
    assert data["truth"]["alpha"] == np.float32(-1.0)
    assert np.all((data["truth"]["sigma_gamma"] > 0.15) & (data["truth"]["sigma_gamma"] < 0.35))
    assert 0.30 < data["y"].mean() < 0.42


def test_tiny_flagship_runs_and_writes_the_plot(tmp_path, capsys):
    local.BACKEND.close()  # a fresh worker process, whose output this test captures
    example = _load_example()
    plot = tmp_path / "recovery.png"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = example.main(
            [
                "--backend=local",
                "--observations=600",
                "--groups=8",
                "--covariates=3",
                "--draws=40",
                "--tune=40",
                "--chains=2",
                "--target-ess=20",
                "--max-draws=80",
                f"--plot={plot}",
            ]
        )
    assert plot.read_bytes().startswith(b"\x89PNG")
    assert set(out["idata"]["posterior"].data_vars) == set(example.FIXED_EFFECTS)
    assert out["recovery"]["max_abs_error"] < 1.0
    printed = capsys.readouterr()
    sampler_line = r"sampler: tree depth mean [\d.]+ .*E-BFMI by chain [\d.]+, [\d.]+"
    assert re.search(sampler_line, printed.out)
    blocks = out["idata"].attrs["pymc_modal_blocks"]
    assert f"draws per chain in {blocks} blocks (target: ESS 20, R-hat 1.01)" in printed.out
    # On a line of its own, above the progress bar.
    assert re.search(r"(^|\r)draws 40: min bulk ESS \d+.*\n", printed.err, re.MULTILINE)
    # JAX's float64 truncation warning, neither from this process nor from the worker's.
    assert not [w for w in caught if "Explicitly requested dtype float64" in str(w.message)]
    assert "Explicitly requested dtype float64" not in printed.err


def test_group_index_is_not_narrowed_at_full_size():
    import pytensor
    from pytensor.compile.sharedvalue import SharedVariable
    from pytensor.graph.basic import Constant, graph_inputs

    example = _load_example()
    data = example.simulate(observations=50, groups=40_000, covariates=2)
    data["group"][-1] = 39_999
    with pytensor.config.change_flags(floatX="float32"):
        model = example.build_model(data)
    indices = [
        var.data if isinstance(var, Constant) else var.get_value()
        for var in graph_inputs([model["y"]])
        if isinstance(var, Constant | SharedVariable) and "int" in str(getattr(var, "dtype", ""))
    ]
    assert any(np.array_equal(index, data["group"]) for index in indices)
