"""Ray's and Serve's failures as the client's errors: the app's and the core's mapper.

Errors cross Ray process boundaries wrapped in ``RayTaskError`` (a subclass that also
inherits the original class); backpressure and dead replicas arrive as Serve/Ray
exceptions. Everything else about error answers is library code
(:mod:`imagetagger.api.errors`).
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
        return exc
    if isinstance(exc, BackPressureError):
        return Overloaded()
    if isinstance(
        exc, ActorDiedError | ActorUnavailableError | RayActorError | DeploymentUnavailableError
    ):
        return Overloaded("A replica is restarting; retry later.")
    return None
