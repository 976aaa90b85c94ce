"""Exceptions raised by pymc_modal.

Every check that can fail before a job is shipped has its own class, so a
caller can catch exactly the failure it expects. All derive from
:class:`PymcModalError`.
"""

__all__ = [
    "DiscreteVariablesError",
    "GpuNotFoundError",
    "InitialPointError",
    "InvalidOptionError",
    "InvalidTypeError",
    "JaxConversionError",
    "MissingCredentialsError",
    "ModalServiceError",
    "NoDrawsError",
    "NoFreeVariablesError",
    "NotConvergedWarning",
    "PayloadError",
    "PymcModalError",
    "ResultTooLargeError",
    "RunNotFoundError",
    "RunTimeoutError",
    "SlowFloat64Warning",
    "UnknownVarNamesError",
    "UnsupportedArgumentError",
    "VersionMismatchError",
    "WorkerError",
    "WorkerMemoryError",
]


class PymcModalError(Exception):
    """Base class of every error raised by pymc_modal."""


class UnsupportedArgumentError(PymcModalError, TypeError):
    """An argument of ``pm.sample`` that has no meaning for pymc_modal."""


class InvalidOptionError(PymcModalError, ValueError):
    """An option (backend, sampler keyword, limit) has a value that is not accepted."""


class InvalidTypeError(InvalidOptionError, TypeError):
    """An argument of a type it cannot have (``draws="100"``), a TypeError as in ``pm.sample``."""


class NoFreeVariablesError(PymcModalError, ValueError):
    """The model has no free random variables, so there is nothing to sample."""


class DiscreteVariablesError(PymcModalError, ValueError):
    """The model has discrete free variables, which NUTS cannot sample."""


class UnknownVarNamesError(PymcModalError, ValueError):
    """A name in ``var_names`` is not a variable that sampling can return."""


class JaxConversionError(PymcModalError, ValueError):
    """PyMC could not turn the model into a JAX function."""


class InitialPointError(PymcModalError, RuntimeError):
    """The log density is not finite where a chain would start (PyMC's ``SamplingError``)."""


class ResultTooLargeError(PymcModalError, ValueError):
    """The result would be larger than the configured limit."""


class PayloadError(PymcModalError, ValueError):
    """The model or its arguments could not be serialized for shipping."""


class VersionMismatchError(PymcModalError, RuntimeError):
    """The worker's library versions differ from those that made the payload."""


class WorkerError(PymcModalError, RuntimeError):
    """The worker failed with an exception that could not be re-raised as itself."""


class WorkerMemoryError(PymcModalError, MemoryError):
    """What the sampler would hold exceeds the worker's memory; refused before sampling."""


class GpuNotFoundError(PymcModalError, RuntimeError):
    """A worker billed for a GPU found none: JAX would have sampled on its CPU."""


class MissingCredentialsError(PymcModalError, RuntimeError):
    """The Modal backend was chosen but no Modal credentials are configured."""


class RunNotFoundError(PymcModalError, LookupError):
    """No detached run with that id is recorded on this machine."""


class RunTimeoutError(PymcModalError, TimeoutError):
    """A worker was stopped at its timeout, on every attempt it was given."""


class NoDrawsError(PymcModalError, RuntimeError):
    """A run ended before its first draw (its attempt's time ran out, or it was stopped)."""


class ModalServiceError(PymcModalError, RuntimeError):
    """Modal itself refused or failed a step (credentials, connection, image build)."""


class SlowFloat64Warning(UserWarning):
    """A float64 model goes to a GPU that computes float64 at a small fraction of float32."""


class NotConvergedWarning(UserWarning):
    """A run stopped short of what it was asked: a target run at a cap, or any run ended early.

    Its draws so far are returned.
    """
