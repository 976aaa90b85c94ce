"""What converged means here, measured the same way on the worker and the client.

ArviZ's rank-normalized split R-hat and bulk and tail ESS (Vehtari et al.
2021) over the returned variables, each element apart; the smallest ESS and
the largest R-hat decide. Imported by both sides: the worker checks each
block of draws with it, the client the chains of several workers joined.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np

__all__ = ["Diagnostics", "diagnose", "format_seconds"]


@dataclasses.dataclass(frozen=True)
class Diagnostics:
    """The worst figures over every element of the returned variables.

    Each ``*_at`` names its element, e.g. ``"sigma_gamma[4]"``. Elements
    whose figures are undefined (a constant, say) are left out.
    """

    min_bulk: float
    min_bulk_at: str
    min_tail: float
    min_tail_at: str
    max_rhat: float
    max_rhat_at: str

    def met(self, target_ess: int, max_rhat: float) -> bool:
        """Whether both ESS reach ``target_ess`` and R-hat is at most ``max_rhat``."""
        return min(self.min_bulk, self.min_tail) >= target_ess and self.max_rhat <= max_rhat


def _worst(found, smallest: bool) -> tuple[float, str]:
    """The smallest (or largest) value over a Dataset's elements, and the element's name."""
    candidates = []
    for name, values in found.data_vars.items():
        array = np.asarray(values, dtype=float)
        if np.isnan(array).all():
            continue
        index = np.unravel_index((np.nanargmin if smallest else np.nanargmax)(array), array.shape)
        label = name + (f"[{','.join(map(str, index))}]" if index else "")
        candidates.append((float(array[index]), label))
    if not candidates:
        return np.nan, ""
    return (min if smallest else max)(candidates, key=lambda candidate: candidate[0])


def diagnose(posterior: dict[str, np.ndarray]) -> Diagnostics:
    """Bulk and tail ESS and R-hat of draws shaped (chain, draw, ...), by ArviZ.

    Parameters
    ----------
    posterior : dict of str to numpy.ndarray
        The returned variables' draws.
    """
    import arviz as az
    import xarray as xr

    dataset = xr.Dataset(
        {
            name: (("chain", "draw", *(f"{name}_{i}" for i in range(v.ndim - 2))), v)
            for name, v in posterior.items()
        }
    )
    # A constant element's figures are 0/0, left out above.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        bulk = _worst(az.ess(dataset, method="bulk"), smallest=True)
        tail = _worst(az.ess(dataset, method="tail"), smallest=True)
        rhat = _worst(az.rhat(dataset), smallest=False)
    return Diagnostics(*bulk, *tail, *rhat)


def format_seconds(seconds: float) -> str:
    """``"4m12s"``, or ``"12s"`` under a minute."""
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"
