"""API keys for the Rekognition route, carried in a SigV4 ``Authorization`` header.

SigV4 is an HMAC whose secret the server must know, and the service keeps only the
SHA-256 hashes of its keys. So the scheme (docs/SECURITY.md, *Rekognition keys*) is: the
SigV4 **access key id is the API key**, checked against the configured hashes like any
other key; the secret access key is not checked (the client may set anything); the
request's ``X-Amz-Date`` must be within 15 minutes of the server's clock, and the
credential's scope date must be that date. The errors are AWS's own, so boto3 reports
them as it would for AWS: ``MissingAuthenticationTokenException`` (no header),
``IncompleteSignatureException`` (a malformed one), ``InvalidSignatureException`` (a
stale or inconsistent date), ``UnrecognizedClientException`` (an unknown key).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from imagetagger.label_apis.common import KeyMatcher
from imagetagger.label_apis.rekognition import AwsError

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW = timedelta(minutes=15)  # as AWS
_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
_FIELD = re.compile(r"\s*(Credential|SignedHeaders|Signature)=([^,\s]+)\s*(?:,|$)")


def authenticate(
    keys: KeyMatcher | None,
    authorization: Sequence[str],
    amz_date: Sequence[str],
    now: datetime | None = None,
) -> str | None:
    """The caller's client id, from every ``Authorization`` and ``X-Amz-Date`` value.

    None when keys are off (nothing is checked, as for the other routes). Raises
    :class:`AwsError` otherwise.
    """
    if keys is None:
        return None
    if not authorization:
        raise AwsError("MissingAuthenticationTokenException", "Missing Authentication Token", 403)
    if len(authorization) > 1 or len(amz_date) > 1:
        raise AwsError("IncompleteSignatureException", "Repeated Authorization or X-Amz-Date.")
    access_key, scope_date = _credential(authorization[0])
    signed_at = _signed_at(amz_date[0] if amz_date else "")
    if signed_at.strftime("%Y%m%d") != scope_date:
        raise AwsError(
            "InvalidSignatureException",
            f"Date in Credential scope does not match YYYYMMDD from X-Amz-Date: {scope_date}",
            403,
        )
    current = now or datetime.now(UTC)
    if abs(current - signed_at) > MAX_SKEW:
        raise AwsError(
            "InvalidSignatureException",
            f"Signature expired: {signed_at.strftime(_DATE_FORMAT)} is not within 15 minutes "
            f"of {current.strftime(_DATE_FORMAT)}.",
            403,
        )
    client = keys.client_id(access_key)
    if client is None:
        raise AwsError(
            "UnrecognizedClientException", "The security token included in the request is invalid."
        )
    return client


def _credential(header: str) -> tuple[str, str]:
    """The access key id and the scope date of ``AWS4-HMAC-SHA256 Credential=...``."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme != ALGORITHM:
        raise AwsError(
            "IncompleteSignatureException", f"Authorization header requires {ALGORITHM}."
        )
    fields = dict(_FIELD.findall(rest))
    if set(fields) != {"Credential", "SignedHeaders", "Signature"}:
        raise AwsError(
            "IncompleteSignatureException",
            "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature'.",
        )
    parts = fields["Credential"].split("/")
    if len(parts) != 5 or parts[4] != "aws4_request" or not parts[0]:
        raise AwsError(
            "IncompleteSignatureException",
            "Credential should be 'KEY/YYYYMMDD/region/service/aws4_request'.",
        )
    return parts[0], parts[1]


def _signed_at(value: str) -> datetime:
    try:
        return datetime.strptime(value.strip(), _DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise AwsError(
            "IncompleteSignatureException",
            "X-Amz-Date is required, as YYYYMMDDTHHMMSSZ.",
        ) from None
