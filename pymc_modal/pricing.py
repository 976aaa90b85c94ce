"""The GPU types Modal offers and what a second of each costs.

Source: Modal's pricing page (modal.com/pricing), as transcribed in July 2026;
the A100-40GB price also appears in the flagship's source article. Prices
change: pass ``pymc_modal.options(price_per_second=...)`` to use your own rate.
"""

from __future__ import annotations

import re

from pymc_modal.errors import InvalidOptionError

__all__ = ["DEFAULT_GPU", "PRICE_PER_SECOND", "cost", "gpu_type", "parse_gpu"]

DEFAULT_GPU = "A100"

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
# Other names Modal accepts, and the type they are billed as.
ALIASES = {
    "A100": "A100-40GB",
    "A10G": "A10",
    "H100!": "H100",
    "B200+": "B200",
}
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


def cost(spec: str, seconds: float, price_per_second: float | None = None) -> float:
    """Estimated US dollars for ``seconds`` on the GPU(s) of ``spec``.

    Parameters
    ----------
    spec : str
        A GPU spec as Modal takes it, e.g. ``"H100"`` or ``"A100-80GB:2"``.
    seconds : float
        GPU-seconds billed per GPU.
    price_per_second : float, optional
        A rate per GPU-second to use instead of the table's.
    """
    _, count = parse_gpu(spec)
    rate = PRICE_PER_SECOND[gpu_type(spec)] if price_per_second is None else price_per_second
    return rate * count * seconds
