"""Turn whatever a downstream call raised into a domain error with a contract status.

Errors cross Ray process boundaries wrapped in ``RayTaskError`` (a subclass that also
inherits the original class); backpressure and dead replicas arrive as Serve/Ray
exceptions. This is the one place that maps them all to :mod:`imagetagger.errors`.
"""

from __future__ import annotations

from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError, RayTaskError
from ray.serve.exceptions import (
    BackPressureError,
    DeploymentUnavailableError,
    RayServeException,
)

from imagetagger.errors import ImageTaggerError, Overloaded


def as_domain_error(exc: BaseException) -> ImageTaggerError | None:
    """The client-facing error for ``exc``, or None when it is a bug (answered as 500)."""
    if isinstance(exc, RayTaskError) and isinstance(exc.cause, BaseException):
        exc = exc.cause
    if type(exc) is RayServeException and exc.__cause__ is not None:
        # The router wraps a dead upstream replica's ActorDiedError in a bare
        # RayServeException ("... failed because an upstream actor died").
        exc = exc.__cause__
    if isinstance(exc, ImageTaggerError):
        return type(exc)(exc.detail)
    if isinstance(exc, BackPressureError):
        return Overloaded()
    if isinstance(
        exc, ActorDiedError | ActorUnavailableError | RayActorError | DeploymentUnavailableError
    ):
        return Overloaded("A replica is restarting; retry later.")
    return None
