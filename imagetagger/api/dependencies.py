"""What a router's functions are handed: the request core, and a body read within limits.

The app holds a function that returns the core (``app.state.core``): in a Serve replica
it is the ingress deployment's core, in a test one wired to the library in-process.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from imagetagger.api.core import RequestCore
from imagetagger.errors import ImageTooLarge


async def request_core(request: Request) -> RequestCore:
    """The core serving this app (a dependency: ``core: Core`` in a route's signature).

    ``async``: FastAPI runs a plain ``def`` dependency in its thread pool, a thread hop
    per request for a lookup."""
    return request.app.state.core()


Core = Annotated[RequestCore, Depends(request_core)]


async def read_body(request: Request, limit: int) -> bytes:
    """The body, read up to ``limit`` bytes (whatever Content-Length says), else 413."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ImageTooLarge()
        chunks.append(chunk)
    return b"".join(chunks)
