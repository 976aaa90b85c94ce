"""What Modal bills a container for: its GPU, CPU and memory, by the second.

A container is billed from its start until it scales down: while it works,
and for ``scaledown_window`` seconds after its last answer, kept warm for the
next call. Rates: Modal's pricing page (modal.com/pricing), as transcribed on
:data:`RATES_AS_OF`; the A100-40GB price also appears in the flagship's
source article. Prices change: pass
``pymc_modal.options(price_per_second=...)`` to use your own GPU rate.
"""

from __future__ import annotations

import dataclasses
import re

from pymc_modal.errors import InvalidOptionError

__all__ = [
    "CPU_CHEAPER_BELOW",
    "CPU_PER_CORE_SECOND",
    "DEFAULT_GPU",
    "MEMORY_PER_GIB_SECOND",
    "PRICE_PER_SECOND",
    "RATES_AS_OF",
    "SLOW_FLOAT64",
    "Tariff",
    "device_gpu",
    "gpu_type",
    "parse_gpu",
]

DEFAULT_GPU = "A100"
RATES_AS_OF = "2026-07"

# US dollars per GPU-second, by the name Modal accepts.
PRICE_PER_SECOND = {
    "B200": 0.001736,
    "H200": 0.001261,
    "H100": 0.001097,
    "RTX-PRO-6000": 0.000842,
    "A100-80GB": 0.000694,
    "A100-40GB": 0.000583,
    "L40S": 0.000542,
    "A10": 0.000306,
    "L4": 0.000222,
    "T4": 0.000164,
}
# US dollars per physical core-second and per GiB-second of memory: the larger of what a
# container asks for and what it uses is billed.
CPU_PER_CORE_SECOND = 0.0000131
MEMORY_PER_GIB_SECOND = 0.00000222
# Below this many parameters a model's steps likely cost less on a container with 8 cores
# than with a GPU (BENCHMARKS.md, "GPU or CPU?").
CPU_CHEAPER_BELOW = 40_000
# The GPUs whose float64 runs at a small fraction of their float32 rate (1/32 or 1/64,
# by NVIDIA's data sheets), by that fraction's denominator: the others run it at 1/2.
SLOW_FLOAT64 = {"T4": 32, "A10": 32, "L4": 64, "L40S": 64, "RTX-PRO-6000": 64}
# Other names Modal accepts, and the type they are billed as.
ALIASES = {
    "A100": "A100-40GB",
    "A10G": "A10",
    "H100!": "H100",
    "B200+": "B200",
}
# The GPU type a JAX device kind names, e.g. "NVIDIA A100-SXM4-80GB"; "A100" before "A10".
_DEVICE_KINDS = (
    (r"B200", "B200"),
    (r"H200", "H200"),
    (r"H100", "H100"),
    (r"RTX PRO 6000", "RTX-PRO-6000"),
    (r"A100.*80GB", "A100-80GB"),
    (r"A100", "A100-40GB"),
    (r"L40S", "L40S"),
    (r"A10G?\b", "A10"),
    (r"L4\b", "L4"),
    (r"T4\b", "T4"),
)
_SPEC = re.compile(r"^(?P<name>[A-Za-z0-9!+-]+?)(?::(?P<count>\d+))?$")
MAX_COUNT = 8


def parse_gpu(spec: str) -> tuple[str, int]:
    """Split a GPU spec such as ``"h100:2"`` into Modal's name and a count.

    Raises
    ------
    InvalidOptionError
        If Modal does not offer that GPU type or count.
    """
    match = _SPEC.match(spec.strip()) if isinstance(spec, str) else None
    name = match["name"].upper() if match else None
    if name not in PRICE_PER_SECOND and name not in ALIASES:
        offered = ", ".join([*PRICE_PER_SECOND, *ALIASES])
        raise InvalidOptionError(
            f"gpu={spec!r} is not a GPU type Modal offers. Choose one of {offered}, "
            "optionally with a count such as 'H100:2', or a list of them as fallbacks."
        )
    count = int(match["count"] or 1)
    if not 1 <= count <= MAX_COUNT:
        raise InvalidOptionError(f"gpu={spec!r}: the count must be between 1 and {MAX_COUNT}.")
    return name, count


def gpu_type(spec: str) -> str:
    """The billed GPU type of a spec, e.g. ``"A100"`` -> ``"A100-40GB"``."""
    name, _ = parse_gpu(spec)
    return ALIASES.get(name, name)


def device_gpu(device: str) -> str | None:
    """The GPU type of a worker's JAX device, e.g. ``"gpu: NVIDIA H100 80GB HBM3"`` -> ``"H100"``.

    None for a device that is no GPU Modal offers (a CPU).
    """
    return next((gpu for kind, gpu in _DEVICE_KINDS if re.search(kind, device)), None)


@dataclasses.dataclass(frozen=True)
class Tariff:
    """What a call's containers are billed at, by the second.

    Attributes
    ----------
    gpus : tuple of str
        The GPU specs asked for, in the order Modal tries them; none for a
        container with CPU cores only.
    cpu : float
        Physical cores asked for.
    memory : int
        MiB of memory asked for.
    idle_seconds : int
        How long each container is kept warm after its answer
        (``scaledown_window``): billed unless another call of the same
        session uses it or the session ends first.
    gpu_price : float, optional
        The user's rate per GPU-second, instead of the table's.
    """

    gpus: tuple[str, ...]
    cpu: float
    memory: int
    idle_seconds: int
    gpu_price: float | None = None

    def per_second(self, spec: str | None) -> float:
        """US dollars a second of a container with the GPU(s) of ``spec`` (None: none)."""
        gpu = 0.0
        if spec is not None:
            _, count = parse_gpu(spec)
            rate = PRICE_PER_SECOND[gpu_type(spec)] if self.gpu_price is None else self.gpu_price
            gpu = rate * count
        return gpu + self.cpu * CPU_PER_CORE_SECOND + self.memory / 1024 * MEMORY_PER_GIB_SECOND

    @property
    def cap_rate(self) -> float:
        """The dearest of ``gpus``' rates: what a cost cap and a forecast count."""
        return max(map(self.per_second, self.gpus or (None,)))

    def billed(self, device: str) -> str | None:
        """The spec a worker that ran on ``device`` is billed as; None with no GPU asked for.

        The spec asked for of the device's type; else (Modal gave a better GPU
        than asked, as it may an H200 for ``"H100"``) the first asked for.
        """
        found = device_gpu(device)
        first = self.gpus[0] if self.gpus else None
        return next((spec for spec in self.gpus if gpu_type(spec) == found), first)

    def cost(self, device: str, seconds: float) -> float:
        """US dollars for a container on ``device`` busy ``seconds``, then kept warm."""
        return self.per_second(self.billed(device)) * (seconds + self.idle_seconds)
