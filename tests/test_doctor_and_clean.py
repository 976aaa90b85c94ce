"""``python -m pymc_modal doctor`` and ``python -m pymc_modal clean``, against the Modal double."""

import json

import modal.exception
import pytest

from pymc_modal import __main__ as cli
from pymc_modal import paths, store
from pymc_modal.backends.local import BACKEND as LOCAL
from pymc_modal.backends.modal import BACKEND as MODAL
from pymc_modal.doctor import doctor
from pymc_modal.errors import GpuNotFoundError, MissingCredentialsError
from pymc_modal.paths import blob_dir, compilation_cache_dir

KEPT, DROPPED, OTHER = "ab" + "1" * 62, "ab" + "2" * 62, "cd" + "3" * 62


@pytest.mark.slow
def test_doctor_reports_each_step_of_a_tiny_run(modal_server):
    lines = doctor("H100")
    report = "\n".join(lines)
    assert lines[0] == "pymc_modal doctor: Modal H100"
    assert modal_server.options[-1]["gpu"] == "H100"
    for item in ("credentials  found", "pymc ", "device       cpu", "gradient", "compile"):
        assert item in report
    assert "about $" in lines[-3] and "of H100" in lines[-3]
    assert "under 40,000 parameters likely costs less" in lines[-2]


@pytest.mark.slow
def test_doctor_says_when_the_gpu_is_missing(modal_server):
    modal_server.gpu = False
    with pytest.raises(GpuNotFoundError, match="JAX found only"):
        doctor()


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (modal.exception.AuthError("Token ID is malformed"), "modal token new"),
        (modal.exception.ConnectionError("Deadline exceeded"), "this machine's network"),
        (modal.exception.ImageBuildError("Image build failed", "im-1"), "no wheel for Linux"),
        (modal.exception.InternalError("Internal error"), "InternalError: Internal error"),
    ],
)
def test_doctor_says_what_modal_refused_and_what_to_do_without_a_traceback(
    modal_server, capsys, error, said
):
    modal_server.call_error = error
    assert cli.main(["doctor"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: Modal") and said in err and "Traceback" not in err


def test_doctor_without_credentials_says_how_to_set_them(capsys):
    with pytest.raises(MissingCredentialsError):
        doctor()
    assert cli.main(["doctor"]) == 1
    assert "modal setup" in capsys.readouterr().err


def _run_folder(blobs, fetched, checkpoints=()):
    folder = store.new_run_folder()
    record = {"id": folder.name, "blobs": blobs, "checkpoints": list(checkpoints)}
    store.write_run(folder, record, {})
    if fetched:
        paths.RunPaths(folder).result.write_bytes(b"netcdf")
    return folder.name


@pytest.fixture
def own_compilation_cache():
    """This test's own JAX compilation cache, not the one the session's tests share."""
    compilation_cache_dir().unlink()
    compilation_cache_dir().mkdir()


def test_clean_keeps_what_unfetched_runs_need_and_says_what_it_freed(
    modal_server, capsys, own_compilation_cache
):
    blobs = {KEPT: b"k" * 1_000_000, DROPPED: b"d" * 2_000_000, OTHER: b"o" * 3_000_000}
    LOCAL.store_blobs(blobs)
    MODAL.store_blobs(blobs)
    (compilation_cache_dir() / "jit_program").write_bytes(b"p" * 500_000)
    (modal_server.volume("pymc-modal-jax-cache") / "jit_program").write_bytes(b"p" * 700_000)
    waiting = _run_folder([KEPT], fetched=False, checkpoints=["kept"])
    done = _run_folder([DROPPED], fetched=True, checkpoints=["dropped"])
    results = modal_server.volume("pymc-modal-results")
    for run_id in (waiting, done):
        (results / f"{run_id}-0").write_bytes(b"a" * 100_000)
    # A run another machine started and has not fetched: its record is there, not here.
    elsewhere = {"blobs": [OTHER], "checkpoints": ["theirs"]}
    (results / "elsewhere-needs").write_text(json.dumps(elsewhere))
    for root in (paths.checkpoints_dir(), results / paths.CHECKPOINTS):
        for name in ("kept", "dropped", "theirs"):
            (root / name).mkdir(parents=True)
            (root / name / "state").write_bytes(b"s" * 200_000)

    assert cli.main(["clean", "--dry-run"]) == 0
    # Here 5.0 MB of blobs, 0.5 MB of programs and two checkpoints, 0.4; on Modal 2.0 (the
    # other machine's run keeps its 3.0), 0.7, a fetched answer, 0.1, and a checkpoint, 0.2.
    assert "Would free 8.9 MB" in capsys.readouterr().out
    assert len(list(modal_server.volume("pymc-modal-data").rglob("*/*"))) == 3

    assert cli.main(["clean"]) == 0
    out = capsys.readouterr().out
    assert "Freed" in out and "kept the data of 1 blob(s) and 1 checkpoint(s)" in out
    assert [path.name for path in blob_dir().rglob("*/*")] == [KEPT]
    on_modal = modal_server.volume("pymc-modal-data").rglob("*/*")
    assert sorted(path.name for path in on_modal) == [KEPT, OTHER]
    assert list(compilation_cache_dir().iterdir()) == []
    assert list(modal_server.volume("pymc-modal-jax-cache").iterdir()) == []
    left = sorted(path.name for path in results.iterdir())
    assert left == [f"{waiting}-0", "checkpoints", "elsewhere-needs"]
    assert [path.parent.name for path in paths.checkpoints_dir().rglob("state")] == ["kept"]
    kept = sorted(path.parent.name for path in (results / paths.CHECKPOINTS).rglob("state"))
    assert kept == ["kept", "theirs"]


def test_clean_without_modal_credentials_cleans_this_machine(capsys, own_compilation_cache):
    LOCAL.store_blobs({DROPPED: b"d" * 2_000_000})
    assert cli.main(["clean"]) == 0
    out = capsys.readouterr().out
    assert "modal: skipped, no credentials" in out
    assert "Freed 2.0 MB." in out
