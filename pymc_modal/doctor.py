"""``python -m pymc_modal doctor``: is Modal ready to sample, and what does a run cost?

The first thing to run after ``modal setup``: it checks the credentials,
builds the image (or finds it built), samples a tiny model on the GPU through
the same path as :func:`pymc_modal.sample`, and reports what it saw.
"""

from __future__ import annotations

from pymc_modal import backends, client, payload
from pymc_modal.config import resolve

__all__ = ["doctor"]

DRAWS = 500


def doctor(gpu: str | None = None) -> list[str]:
    """Sample a tiny model on a Modal GPU and report each step; the report's lines.

    Parameters
    ----------
    gpu : str, optional
        The GPU to try, as :func:`pymc_modal.gpu` takes it; by default the
        one configured (``PYMC_MODAL_GPU``, else ``"A100"``).

    Returns
    -------
    list of str
        The report: where it ran, the versions the worker checked, the JAX
        device, the gradient time of a small model, the seconds of each
        phase and the cost.

    Raises
    ------
    MissingCredentialsError
        If no Modal credentials are configured.
    GpuNotFoundError
        If the container's JAX did not find the GPU.
    PymcModalError
        Whatever else stops the tiny run, as :func:`pymc_modal.sample` raises it.
    """
    import pymc as pm

    backends.get("modal").check_credentials()
    options = resolve(gpu=gpu)
    with pm.Model() as model:
        pm.Normal("x", 0, 1, shape=10)
    idata = client.sample(
        model=model,
        draws=DRAWS,
        tune=DRAWS,
        chains=1,
        random_seed=0,
        progressbar=False,
        backend="modal",
        gpu=options.gpu,
        refit=True,
    )
    attrs = idata.attrs
    gradients = int(idata.sample_stats["n_steps"].sum())
    sampling = attrs["pymc_modal_seconds_sample"]
    versions = ", ".join(f"{name} {version}" for name, version in payload.manifest().items())
    phases = ", ".join(
        f"{name.removeprefix('pymc_modal_seconds_')} {value:.2f}"
        for name, value in attrs.items()
        if name.startswith("pymc_modal_seconds_")
    )
    return [
        f"pymc_modal doctor: {attrs['pymc_modal_where']}",
        "  credentials  found",
        f"  versions     client = image (the worker checked them): {versions}",
        f"  device       {attrs['pymc_modal_device']}",
        f"  gradient     {sampling / gradients * 1e6:.1f} us (10 parameters; "
        f"{gradients} gradients in {sampling:.2f} s, warm-up included)",
        f"  seconds      {phases}",
        f"  cost         about ${attrs['pymc_modal_cost_usd']:.4f} "
        f"({attrs['pymc_modal_gpu_seconds']:.1f} s of {attrs['pymc_modal_gpu']})",
        "Modal is ready: pymc_modal.sample(..., backend='modal') runs there.",
    ]
