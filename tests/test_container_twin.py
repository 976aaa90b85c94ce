"""The container twin: a job runs in an environment made only of what the Modal image has.

A fresh virtual environment gets exactly the image's pip requirements (less
JAX's CUDA plugin: 4 GB of NVIDIA's libraries that a CPU cannot use), the
``modal`` client Modal's runtime adds to every container, and this package's
source as ``add_local_python_source`` mounts it, nothing else. Jobs the
client encoded, for NumPyro and for nutpie, then run through the worker there. The test fails if the
worker, or the module a container imports to find its function, needs
anything the image does not install.
"""

import dataclasses
import importlib.metadata
import os
import shutil
import subprocess
import venv
from pathlib import Path, PurePosixPath

import pytest
from modal._utils.async_utils import synchronizer
from modal_double import _mounts

from pymc_modal import paths, payload
from pymc_modal.backends import modal as modal_backend

RUN_A_JOB = """
import sys
from pathlib import Path

import pymc_modal.backends.modal  # what a container imports to find its function
from pymc_modal import worker

job, blobs, answer = sys.argv[1:]
Path(answer).write_bytes(worker.run(Path(job).read_bytes(), blobs))
"""


def _mounted_source(root: Path) -> None:
    """The files the image mounts, where a container has them (``/root``)."""
    for mount in _mounts(synchronizer._translate_in(modal_backend.image), set()):
        for entry in mount.entries:
            for local, remote in entry.get_files_to_upload():
                target = root / PurePosixPath(remote).relative_to("/root")
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(local, target)


@pytest.mark.slow
def test_a_job_runs_with_only_what_the_image_installs(tmp_path, settings):
    from conftest import make_data_model

    python = tmp_path / "venv" / "bin" / "python"
    venv.create(tmp_path / "venv", with_pip=True)
    image = [
        *modal_backend.requirements(cuda=False),
        f"modal=={importlib.metadata.version('modal')}",
    ]
    install = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--no-compile", "--only-binary=:all:", *image],
        capture_output=True,
        text=True,
        check=False,
    )
    if install.returncode != 0 and "NewConnectionError" in install.stderr:
        pytest.skip(f"the package index cannot be reached: {install.stderr.strip()[-200:]}")
    assert install.returncode == 0, install.stderr
    _mounted_source(tmp_path / "root")

    # Only the mounted source is on the path: nothing from this checkout or its venv.
    environment = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    environment["PYTHONPATH"] = str(tmp_path / "root")
    for sampler in ("numpyro", "nutpie"):
        blobs = {}
        job = payload.encode_job(
            make_data_model(), dataclasses.replace(settings, sampler=sampler), blobs=blobs
        )
        for name, data in blobs.items():
            path = paths.blob_path(tmp_path / "blobs", name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        (tmp_path / "job").write_bytes(job)
        ran = subprocess.run(
            [python, "-c", RUN_A_JOB, tmp_path / "job", tmp_path / "blobs", tmp_path / "answer"],
            capture_output=True,
            text=True,
            check=False,
            cwd=tmp_path,
            env=environment,
        )
        assert ran.returncode == 0, ran.stderr
        result = payload.decode_result((tmp_path / "answer").read_bytes(), "the twin")
        assert result.posterior["slope"].shape == (settings.chains, settings.draws), sampler
