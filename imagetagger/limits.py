"""The service's limits and the order they must keep, each defined once.

Concurrency, at one ingress replica, from the inside out (each a value of
``serve_config.yaml``, the defaults here; tests/repo/test_limits.py holds the chain and the
configs to it):

1. ``max_in_flight`` (:data:`MAX_IN_FLIGHT`, the ingress's ``user_config``): requests the
   app works on at once; the next one gets the app's own JSON 503 ``Overloaded``.
2. HAProxy's ``maxconn`` (:data:`HAPROXY_MAXCONN`, :mod:`imagetagger.serving.haproxy`):
   requests HAProxy has at the replica at once, above (1) so the app answers a flood
   with its JSON 503; a request beyond it waits in HAProxy's queue, then gets a 503.
3. Serve's ``max_ongoing_requests`` (:data:`INGRESS_MAX_ONGOING_REQUESTS`, the ingress
   deployment's option): above (2), so Serve's own queue never fills.

Sizes: :data:`MAX_BODY_BYTES`, the largest body the upload, Open Inference and Cloud
Vision routes read, travels from the ingress to the Downloader in one gRPC message, so
Serve's replica gRPC must accept :data:`GRPC_MAX_MESSAGE_BYTES`, above it (Ray's
``RAY_SERVE_REPLICA_GRPC_MAX_MESSAGE_LENGTH``: imagetagger/serving/serving_env.py, and
the Serve configs' ``runtime_env``).
"""

from __future__ import annotations

MIB = 2**20

MAX_IN_FLIGHT = 256
HAPROXY_MAXCONN = 300
INGRESS_MAX_ONGOING_REQUESTS = 320

MAX_BODY_BYTES = 64 * MIB
# The body and the call's framing (the request's other fields, protobuf's overhead).
GRPC_MAX_MESSAGE_BYTES = MAX_BODY_BYTES + 8 * MIB  # 75497472


def check_chain(max_in_flight: int, maxconn: int, max_ongoing_requests: int) -> None:
    """ValueError unless ``max_in_flight`` < HAProxy's ``maxconn`` < ``max_ongoing_requests``."""
    if not 0 < max_in_flight < maxconn < max_ongoing_requests:
        raise ValueError(
            f"the limits must grow outwards: max_in_flight {max_in_flight} < HAProxy maxconn "
            f"{maxconn} < Serve max_ongoing_requests {max_ongoing_requests}"
        )


def haproxy_maxconn(max_in_flight: int, max_ongoing_requests: int) -> int:
    """HAProxy's ``maxconn`` for an ingress with these limits: :data:`HAPROXY_MAXCONN` where
    it fits between them, else halfway; ValueError when nothing fits."""
    if max_in_flight < HAPROXY_MAXCONN < max_ongoing_requests:
        return HAPROXY_MAXCONN
    maxconn = (max_in_flight + max_ongoing_requests) // 2
    check_chain(max_in_flight, maxconn, max_ongoing_requests)
    return maxconn
