"""Checks that run on the client before any bytes are shipped.

A job that can be seen to fail here must not start a paid GPU: a model with
nothing to sample or with discrete variables, unknown ``var_names``, a graph
PyMC cannot turn into JAX, a result too large to bring back, ``initvals``
PyMC cannot apply, or a start where the log density is not finite.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import re
import warnings
from collections.abc import Iterator, Sequence

import jax
import numpy as np

from pymc_modal.checks import format_bytes
from pymc_modal.errors import (
    DiscreteVariablesError,
    InitialPointError,
    InvalidOptionError,
    JaxConversionError,
    NoFreeVariablesError,
    ResultTooLargeError,
    UnknownVarNamesError,
)
from pymc_modal.job import EXTRA_FIELDS, FLOAT64_TRUNCATION, SampleSettings, returned

__all__ = ["Checked", "check", "check_start", "data_bytes", "draw_bytes"]


def _check_variables(model, settings: SampleSettings) -> None:
    from pytensor.tensor.type import discrete_dtypes

    if not model.free_RVs:
        raise NoFreeVariablesError(
            "The model has no free random variables, so there is nothing to sample. "
            "To draw from observed variables' priors, use pm.sample_prior_predictive."
        )
    discrete = [rv.name for rv in model.free_RVs if rv.dtype in discrete_dtypes]
    if discrete:
        raise DiscreteVariablesError(
            f"NUTS cannot sample the discrete variable(s) {', '.join(discrete)}. "
            "Marginalize them out (e.g. with pymc_extras.marginalize, or a mixture "
            "likelihood), or sample this model with pm.sample on your own machine."
        )
    if settings.var_names is not None:
        available = [v.name for v in model.unobserved_value_vars]
        unknown = [name for name in settings.var_names if name not in available]
        if unknown:
            raise UnknownVarNamesError(
                f"var_names has {', '.join(map(repr, unknown))}, which the model does not "
                f"sample. Choose among: {', '.join(available)}."
            )


@dataclasses.dataclass(frozen=True)
class Checked:
    """What the checks learnt of a job.

    Attributes
    ----------
    result_bytes : int
        The estimated size of the returned draws (with ``max_draws``, at most).
    draw_bytes : int
        The estimated size of one chain's draw.
    fingerprint : str
        SHA-256 of what the worker will compute: the log density and the
        returned variables as a JAX program, the values of its constants
        (the data), and the model's initial point. Stable across processes,
        unlike the model's pickle.
    parameters : int
        The model's unconstrained parameters, elements of its value variables.
    """

    result_bytes: int
    draw_bytes: int
    fingerprint: str
    parameters: int


def _fingerprint(closed, point: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    # A printed jaxpr names its variables by position; only object addresses vary by process.
    digest.update(re.sub(r" at 0x[0-9a-f]+", "", str(closed.jaxpr)).encode())
    arrays = [*closed.consts, *(point[name] for name in sorted(point))]
    for array in map(np.asarray, arrays):
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


@contextlib.contextmanager
def _numpy_constants() -> Iterator[None]:
    """Convert the graph's array constants to numpy arrays rather than JAX arrays.

    Inside an abstract trace a JAX array made from a constant is itself
    traced, so a constant the conversion needs concrete (the boolean mask of
    PyMC's automatic imputation, say) would refuse a model the worker samples;
    a numpy array stays concrete, and starts no device.
    """
    from pytensor.link.jax.dispatch.basic import jax_typify

    jax_typify_ndarray = jax_typify.dispatch(np.ndarray)

    def as_numpy(data, dtype=None, **kwargs):
        if data.ndim == 0:
            return jax_typify_ndarray(data, dtype, **kwargs)
        return np.asarray(data, dtype=dtype)

    jax_typify.register(np.ndarray, as_numpy)
    try:
        yield
    finally:
        jax_typify.register(np.ndarray, jax_typify_ndarray)


def _jaxify(model, settings: SampleSettings) -> Checked:
    """Convert the log density and the returned variables to JAX and trace them abstractly."""
    from pymc.sampling.jax import get_jaxified_logp

    def trace(values):
        logp = get_jaxified_logp(model, negative_logp=False)(values)
        return logp, returned(model, settings).fn(*values)

    point = model.initial_point()
    abstract = [jax.ShapeDtypeStruct(np.shape(point[v.name]), v.dtype) for v in model.value_vars]
    try:
        # Converting inside the abstract trace keeps the model's data out of any JAX
        # device: the client never starts one, so a local GPU is left whole to the worker.
        with _numpy_constants(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=FLOAT64_TRUNCATION)
            closed, (_, outputs) = jax.make_jaxpr(trace, return_shape=True)(abstract)
    except Exception as exc:
        raise JaxConversionError(
            f"PyMC could not turn this model into JAX: {type(exc).__name__}: {exc}. "
            "Every Op in the model needs a JAX conversion (register one with "
            "pytensor.link.jax.dispatch.jax_funcify.register for a custom Op), and the "
            "model must not contain shared random generators or variables with updates. "
            "Check with pymc.sampling.jax.get_jaxified_logp(model)."
        ) from exc
    per_draw = draw_bytes(outputs)
    draws = settings.max_draws or settings.draws
    parameters = sum(math.prod(np.shape(point[v.name])) for v in model.value_vars)
    return Checked(
        per_draw * draws * settings.chains, per_draw, _fingerprint(closed, point), parameters
    )


def draw_bytes(outputs) -> int:
    """Bytes of one chain's draw a run returns, from the abstract shapes of its outputs."""
    per_draw = sum(math.prod(out.shape) * out.dtype.itemsize for out in outputs)
    return per_draw + 8 * len(EXTRA_FIELDS) + 8  # sample stats, tree_depth included


def check(model, settings: SampleSettings, max_result_bytes: int) -> Checked:
    """Refuse, with a specific error, a job that would fail or could not come back.

    Parameters
    ----------
    model : pymc.Model
    settings : SampleSettings
    max_result_bytes : int
        The largest result to accept.

    Returns
    -------
    Checked
        The estimated size of the result and the job's fingerprint.
    """
    _check_variables(model, settings)
    _check_initvals(model, settings.initvals, settings.chains)
    checked = _jaxify(model, settings)
    size = checked.result_bytes
    if size > max_result_bytes:
        draws = f"max_draws={settings.max_draws}" if settings.max_draws else settings.draws
        raise ResultTooLargeError(
            f"The result would be about {format_bytes(size)} ({settings.chains} chains x "
            f"{draws} draws), over the limit of {format_bytes(max_result_bytes)}. "
            "Keep only the variables you need with var_names=[...], or sample fewer draws; "
            "to allow it anyway, raise pymc_modal.options(max_result_bytes=...)."
        )
    return checked


def _check_initvals(model, initvals, chains: int) -> None:
    """Refuse ``initvals`` that are not dicts of the model's free variables, one per chain."""
    if initvals is None:
        return
    per_chain = [initvals] if isinstance(initvals, dict) else initvals
    if not isinstance(per_chain, list | tuple) or not all(
        isinstance(one, dict | None) for one in per_chain
    ):
        raise InvalidOptionError(
            f"initvals={initvals!r}: pass a dict of initial values by variable name, "
            "such as initvals={'mu': 0.0}, or a list of such dicts, one per chain."
        )
    if per_chain is initvals and len(initvals) != chains:
        raise InvalidOptionError(
            f"initvals has {len(initvals)} entries for {chains} chains; give one dict per "
            "chain, or one dict for all."
        )
    free = [rv.name for rv in model.free_RVs]
    valid = {*free, *(value.name for value in model.value_vars)}
    shapes = None
    for one in per_chain:
        named = {getattr(key, "name", key): value for key, value in (one or {}).items()}
        unknown = [name for name in named if name not in valid]
        if unknown:
            raise InvalidOptionError(
                f"initvals has {', '.join(map(repr, unknown))}, which the model does not "
                f"sample. Choose among: {', '.join(free)}."
            )
        for name, value in named.items():
            if value is None or isinstance(value, str):
                continue
            shapes = shapes or {n: tuple(map(int, s)) for n, s in model.eval_rv_shapes().items()}
            if np.shape(value) != shapes[name]:
                raise InvalidOptionError(
                    f"initvals[{name!r}] has shape {np.shape(value)}, but {name} has shape "
                    f"{shapes[name]}: give it a value of that shape."
                )


def data_bytes(model) -> int:
    """The bytes of the arrays the model's graph holds: its data, observed and ``pm.Data``."""
    from pytensor.compile.sharedvalue import SharedVariable
    from pytensor.graph.basic import Constant
    from pytensor.graph.traversal import ancestors

    outputs = [*model.basic_RVs, *model.rvs_to_values.values()]
    outputs += [*model.deterministics, *model.potentials]
    total = 0
    for variable in ancestors(outputs):
        if isinstance(variable, Constant):
            value = variable.data
        elif isinstance(variable, SharedVariable):
            value = variable.get_value(borrow=True)
        else:
            continue
        total += value.nbytes if isinstance(value, np.ndarray) else 0
    return total


def check_start(model, shares: Sequence[SampleSettings]) -> None:
    """Refuse a start the workers could not sample from, as PyMC itself would refuse it.

    Each worker's chains start at PyMC's initial points for its seed and
    ``initvals``, jittered and retried as PyMC's JAX path does; each is
    evaluated here, compiled without a C compiler or a JAX device.

    Raises
    ------
    InvalidOptionError
        For ``initvals`` PyMC cannot apply (an unknown strategy, say).
    InitialPointError
        Where the log density is not finite at a chain's start, with PyMC's
        report of each variable's log density there.
    """
    import pytensor
    from pymc.exceptions import SamplingError
    from pymc.sampling.mcmc import _init_jitter
    from pymc.util import _get_seeds_per_chain

    with pytensor.config.change_flags(mode="FAST_COMPILE"):
        logp = model.compile_logp()
        for share in shares:
            try:
                points = _init_jitter(
                    model,
                    share.initvals,
                    seeds=_get_seeds_per_chain(share.seed, share.chains),
                    jitter=share.jitter,
                    jitter_max_retries=10,
                    logp_fn=logp,
                )
                if not share.jitter:  # _init_jitter evaluated the jittered starts.
                    for point in points:
                        if not np.isfinite(logp(point)):
                            model.check_start_vals(point)
            except SamplingError as exc:
                raise InitialPointError(
                    f"{exc}\nThe log density is not finite where a chain would start"
                    f"{', after 10 tries of the jitter' if share.jitter else ''}. Pass "
                    "initvals= with a value inside the support of each variable whose "
                    "log density is -inf or nan above, or check the model with model.debug()."
                ) from exc
            except (TypeError, ValueError) as exc:
                if share.initvals is None:
                    raise
                raise InvalidOptionError(
                    f"initvals could not be applied: {exc}. Give each variable a value of "
                    "its shape, or a strategy, 'support_point' or 'prior'."
                ) from exc
