"""Custom Prometheus metrics of the service, through ``ray.serve.metrics``.

Ray exports them on each node's metrics port with a ``ray_`` prefix and the
``deployment``, ``replica`` and ``application`` tags added; docs/OPERATIONS.md lists them.
Each replica process creates its metric objects once, on first use.
"""

from functools import cache

from ray.serve.metrics import Counter, Gauge, Histogram

LATENCY_BOUNDARIES_S = [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
BYTES_BOUNDARIES = [10e3, 50e3, 100e3, 500e3, 1e6, 5e6, 10e6, 20e6]
BATCH_BOUNDARIES = [1, 2, 4, 8, 16, 32, 64, 128, 256]


class IngressMetrics:
    def __init__(self) -> None:
        self.requests = Counter(
            "imagetagger_http_requests",
            description="HTTP requests answered by the ingress, by route and status code.",
            tag_keys=("route", "status"),
        )
        self.images = Counter(
            "imagetagger_images",
            description="Images handled, by outcome: ok or the error type.",
            tag_keys=("outcome",),
        )
        self.cache_hits = Counter(
            "imagetagger_response_cache_hits",
            description="Images answered from the response cache (same bytes, same model).",
        )
        self.cache_misses = Counter(
            "imagetagger_response_cache_misses",
            description="Images the response cache had no answer for (the model ran).",
        )
        self.cache_entries = Gauge(
            "imagetagger_response_cache_entries",
            description="Answers held in this replica's response cache.",
        )
        self.cache_bytes = Gauge(
            "imagetagger_response_cache_bytes",
            description="Memory held by this replica's response cache.",
        )


class DownloaderMetrics:
    def __init__(self) -> None:
        self.download_seconds = Histogram(
            "imagetagger_download_seconds",
            description="Time to download one image (all redirects included).",
            boundaries=LATENCY_BOUNDARIES_S,
        )
        self.download_bytes = Histogram(
            "imagetagger_download_bytes",
            description="Size of each downloaded image body.",
            boundaries=BYTES_BOUNDARIES,
        )
        self.preprocess_seconds = Histogram(
            "imagetagger_preprocess_seconds",
            description="Time to decode, crop and resize one image.",
            boundaries=LATENCY_BOUNDARIES_S,
        )


class ModelMetrics:
    def __init__(self) -> None:
        self.batch_size = Histogram(
            "imagetagger_batch_size",
            description="Images in each batch the model ran.",
            boundaries=BATCH_BOUNDARIES,
        )
        self.inference_seconds = Histogram(
            "imagetagger_inference_seconds",
            description="Time of one batched model call.",
            boundaries=LATENCY_BOUNDARIES_S,
        )


@cache
def ingress_metrics() -> IngressMetrics:
    return IngressMetrics()


@cache
def downloader_metrics() -> DownloaderMetrics:
    return DownloaderMetrics()


@cache
def model_metrics() -> ModelMetrics:
    return ModelMetrics()
