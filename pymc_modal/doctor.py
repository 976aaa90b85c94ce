"""``python -m pymc_modal doctor``: is Modal ready to sample, and what does a run cost?

The first thing to run after ``modal setup``: it checks the credentials,
builds the image (or finds it built), samples a tiny model on the GPU through
the same path as :func:`pymc_modal.sample`, and reports what it saw.
"""

from __future__ import annotations

from pymc_modal import attrs, client, payload, pricing

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
    ModalServiceError
        If Modal itself refused or failed a step (credentials, network, image
        build), with what to do about it.
    PymcModalError
        Whatever else stops the tiny run, as :func:`pymc_modal.sample` raises it.
    """
    import pymc as pm

    from pymc_modal.backends.modal import service_errors_explained

    with pm.Model() as model:
        pm.Normal("x", 0, 1, shape=10)
    with service_errors_explained():
        idata = client.sample(
            model=model,
            draws=DRAWS,
            tune=DRAWS,  # as many as the draws, which the gradient estimate relies on
            chains=1,
            random_seed=0,
            progressbar=False,
            backend="modal",
            gpu=gpu,
            refit=True,
        )
    found = idata.attrs
    # The sampling phase times warm-up and draws as one; the draws' gradient count,
    # scaled to it, assumes warm-up steps cost alike.
    gradients = int(idata.sample_stats["n_steps"].sum()) * 2
    sampling = found[f"{attrs.SECONDS}sample"]
    versions = ", ".join(f"{name} {version}" for name, version in payload.manifest().items())
    phases = ", ".join(
        f"{name.removeprefix(attrs.SECONDS)} {value:.2f}"
        for name, value in found.items()
        if name.startswith(attrs.SECONDS)
    )
    return [
        f"pymc_modal doctor: {found[attrs.WHERE]}",
        "  credentials  found",
        f"  versions     client = image (the worker checked them): {versions}",
        f"  device       {found[attrs.DEVICE]}",
        f"  gradient     about {sampling / gradients * 1e6:.1f} us (10 parameters; "
        f"{sampling:.2f} s for {DRAWS} warm-up steps and {DRAWS} draws)",
        f"  seconds      {phases}",
        f"  cost         about ${found[attrs.COST_USD]:.4f} "
        f"({found[attrs.GPU_SECONDS]:.1f} s of {found[attrs.GPU]}, {found[attrs.CPU]:g} cores "
        f"and {found[attrs.MEMORY_MIB] / 1024:g} GiB, and up to {found[attrs.IDLE_SECONDS]} s "
        "kept warm after it)",
        f"  GPU or CPU   a model under {pricing.CPU_CHEAPER_BELOW:,} parameters likely costs "
        "less, if slower, on a container with CPU cores only: pymc_modal.cpu() "
        '(README, "GPU or CPU?")',
        "Modal is ready: pymc_modal.sample(..., backend='modal') runs there.",
    ]
