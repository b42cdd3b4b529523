"""Operator tunables, validated: each deployment's ``user_config`` in the Serve config.

Serve hands ``user_config`` to ``reconfigure`` at start and on every config change, so
these values change live without a redeploy. Unknown keys are refused: a typo in the
YAML must fail the deploy, not silently keep a default.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from imagetagger.limits import MAX_IN_FLIGHT

DEFAULT_CACHE_BYTES = 16 * 2**20  # the response cache: ~4,000 answers of 1000 float32


def _check_cidr(value: str) -> str:
    ipaddress.ip_network(value, strict=False)  # ValueError -> pydantic error
    return value


# A network such as ``127.0.0.1/32`` or ``10.1.0.0/16`` (host bits ignored), kept as written:
# the Downloader's ``allowed_networks`` and ``imagetagger tag --allow-network``.
Cidr = Annotated[str, AfterValidator(_check_cidr)]


class DownloaderSettings(BaseModel):
    """``user_config`` of the Downloader deployment."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allowed_networks: list[Cidr] = Field(
        default_factory=list,
        description="CIDRs exempted from the private-address block (e.g. an internal "
        "image store). Empty by default: only public addresses are fetched.",
    )
    max_image_bytes: int = Field(
        default=20 * 2**20, gt=0, description="Largest body read; reading stops there."
    )
    max_image_pixels: int = Field(
        default=64_000_000, gt=0, description="Largest width x height, from the header."
    )
    timeout_s: float = Field(default=10.0, gt=0, description="Whole-download deadline.")
    max_connections_per_host: int = Field(
        default=8,
        ge=1,
        description="Downloads from one host at once, per replica; more wait their turn "
        "within their deadline, so one client cannot flood a third-party host.",
    )


class ModelSettings(BaseModel):
    """``user_config`` of the ModelDeployment."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_batch_size: int = Field(default=16, ge=1, le=512)
    batch_wait_timeout_s: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="How long a batch waits to fill. 0: take what is queued, so batches "
        "form while the previous one runs (best on CPU).",
    )


class IngressSettings(BaseModel):
    """``user_config`` of the ImageTagger ingress."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_upload_bytes: int = Field(default=20 * 2**20, gt=0, description="Largest upload.")
    max_in_flight: int = Field(
        default=MAX_IN_FLIGHT,
        gt=0,
        description="Requests one ingress replica works on at once; more get 503 Overloaded.",
    )
    request_timeout_s: float = Field(
        default=30.0, gt=0, description="Deadline for one image; past it the answer is 503."
    )
    rate_limit_per_s: float = Field(
        default=0.0,
        ge=0.0,
        description="Requests per second one client may make to the tagging routes, per "
        "ingress replica (the client is its API key when keys are on, else its address). "
        "0: no limit.",
    )
    rate_limit_burst: int = Field(
        default=20,
        ge=1,
        description="Requests a client may make at once before the rate applies (the "
        "token bucket's size); used only when rate_limit_per_s > 0.",
    )
    response_cache_bytes: int = Field(
        default=DEFAULT_CACHE_BYTES,
        ge=0,
        description="Memory for answers to repeated images (same bytes, same model), per "
        "ingress replica; least recently used out first. 0: off.",
    )
