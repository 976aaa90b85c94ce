"""An identical call returns its stored result without a worker; refit=True samples anew."""

import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import make_model

import pymc_modal
from pymc_modal import attrs, paths, payload, store
from pymc_modal.preflight import check

TINY = {"draws": 10, "tune": 10, "chains": 1, "backend": "local", "progressbar": False}


@pytest.fixture
def runs_counted(in_process):
    """The jobs of each submission, run in this process."""
    return in_process.submitted


def test_identical_call_returns_stored_result(model, runs_counted, caplog):
    first = pymc_modal.sample(model=model, random_seed=4, **TINY)
    with caplog.at_level(logging.INFO, logger="pymc_modal"):
        second = pymc_modal.sample(model=make_model(), random_seed=4, **TINY)
    assert runs_counted == [1]
    assert "stored result of an identical run" in caplog.text
    assert "refit=True" in caplog.text
    np.testing.assert_array_equal(first.posterior["mu"].values, second.posterior["mu"].values)
    assert attrs.STORED_AT in second.attrs and attrs.STORED_AT not in first.attrs
    assert list(second.posterior["effect"].coords["group"].values) == ["g0", "g1", "g2", "g3"]


def test_refit_samples_again(model, runs_counted):
    pymc_modal.sample(model=model, random_seed=4, **TINY)
    again = pymc_modal.sample(model=model, random_seed=4, refit=True, **TINY)
    assert runs_counted == [1, 1]
    assert attrs.STORED_AT not in again.attrs


@pytest.mark.slow  # each change compiles another program
@pytest.mark.parametrize(
    "change",
    [
        {"random_seed": 5},
        {"random_seed": 4, "draws": 11},
        {"random_seed": 4, "model": make_model(seed=1)},  # the same graph, other data
        {"random_seed": None},
    ],
)
def test_any_difference_samples_again(model, runs_counted, change):
    pymc_modal.sample(model=model, random_seed=4, **TINY)
    pymc_modal.sample(**{"model": model, **TINY, **change})
    assert runs_counted == [1, 1]


def test_failed_run_is_not_stored():
    failure = payload.encode_failure(ValueError("no"))
    store.save("k", [payload.encode_result({}), failure], {"pymc_modal_workers": 2})
    assert store.load("k") is None
    store.save("k", [payload.encode_result({})], {"pymc_modal_workers": 1})
    assert store.load("k")[1]["pymc_modal_workers"] == 1


@pytest.mark.slow
def test_fingerprint_is_the_same_in_another_process(settings):
    code = textwrap.dedent(
        """
        import sys
        sys.path.insert(0, "tests")
        from conftest import make_model
        from pymc_modal.job import SampleSettings
        from pymc_modal.preflight import check
        settings = SampleSettings(**{settings!r})
        print(check(make_model(), settings, 10**9).fingerprint)
        """
    ).format(settings=dict(settings.__dict__))
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()[-1]
    assert check(make_model(), settings, 10**9).fingerprint == other
    assert check(make_model(seed=1), settings, 10**9).fingerprint != other


def _entry() -> Path:
    (folder,) = paths.results_dir().iterdir()
    return folder


@pytest.mark.parametrize(
    "damage",
    [
        lambda folder: (
            paths.RunPaths(folder)
            .answer(0)
            .write_bytes(paths.RunPaths(folder).answer(0).read_bytes()[:-100])
        ),
        lambda folder: (folder / "attrs.json").write_text("{"),
        lambda folder: paths.RunPaths(folder).answer(0).write_bytes(b"junk"),
        lambda folder: paths.RunPaths(folder).answer(0).unlink(),
    ],
    ids=["truncated answer", "overwritten attrs", "junk answer", "missing answer"],
)
def test_an_unreadable_entry_is_removed_and_sampled_anew(model, runs_counted, caplog, damage):
    pymc_modal.sample(model=model, random_seed=4, **TINY)
    folder = _entry()
    damage(folder)
    with caplog.at_level(logging.WARNING, logger="pymc_modal"):
        again = pymc_modal.sample(model=model, random_seed=4, **TINY)
    assert f"The stored result in {folder} could not be read" in caplog.text
    assert attrs.STORED_AT not in again.attrs
    stored = pymc_modal.sample(model=model, random_seed=4, **TINY)
    assert runs_counted == [1, 1]
    assert attrs.STORED_AT in stored.attrs
    assert caplog.text.count("could not be read") == 1


def test_an_unreadable_entry_is_gone_once_found(caplog):
    store.save("k", [payload.encode_result({})], {"pymc_modal_workers": 1})
    paths.RunPaths(_entry()).answer(0).write_bytes(b"junk")
    with caplog.at_level(logging.WARNING, logger="pymc_modal"):
        assert store.load("k") is None
        assert store.load("k") is None
    assert list(paths.results_dir().iterdir()) == []
    assert caplog.text.count("could not be read") == 1


def test_refit_replaces_the_stored_entry(model, runs_counted):
    pymc_modal.sample(model=model, random_seed=4, **TINY)
    attrs_file = _entry() / "attrs.json"
    attrs_file.write_text(json.dumps({**json.loads(attrs_file.read_text()), "old": True}))
    pymc_modal.sample(model=model, random_seed=4, refit=True, **TINY)
    stored = pymc_modal.sample(model=model, random_seed=4, **TINY)
    assert runs_counted == [1, 1]
    assert "old" not in stored.attrs and attrs.STORED_AT in stored.attrs


def test_a_write_that_fails_midway_leaves_no_entry(monkeypatch):
    answer = payload.encode_result({})

    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(store.json, "dumps", fail)
    with pytest.raises(KeyboardInterrupt):
        store.save("k", [answer], {"pymc_modal_workers": 1})
    assert list(paths.results_dir().iterdir()) == []


@pytest.mark.slow
def test_two_processes_storing_one_key_leave_one_good_entry():
    code = textwrap.dedent(
        """
        import sys
        from pymc_modal import payload, store
        answer = payload.encode_result({"writer": sys.argv[1]})
        for _ in range(200):
            store.save("k", [answer], {"pymc_modal_workers": 1})
        """
    )
    writers = [subprocess.Popen([sys.executable, "-c", code, str(i)]) for i in range(2)]
    assert [writer.wait() for writer in writers] == [0, 0]
    (answer,), stored_attrs = store.load("k")
    assert answer["writer"] in ("0", "1") and stored_attrs["pymc_modal_workers"] == 1
    assert [folder.name for folder in paths.results_dir().iterdir()] == ["k"]
