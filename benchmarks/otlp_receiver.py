"""A local OTLP/HTTP trace receiver that counts what it gets, for the traced bench run.

It answers ``POST /v1/traces`` as a Collector does, decodes each export with
``opentelemetry-proto``'s ``ExportTraceServiceRequest`` (so what it counts is what a
backend would store) and keeps only counts; ``GET /counts`` answers them as JSON
(``exports``, ``spans``, ``traces``: distinct trace ids). It runs as its own process
(``python -m benchmarks.otlp_receiver --port P``) so that decoding spans takes no CPU
from the load generator; its CPU is not counted as the service's (it stands for the
collector, which runs elsewhere). The tests have their own receiver (tests/otlp.py).
"""

from __future__ import annotations

import argparse
import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


class Counts:
    def __init__(self) -> None:
        self.exports = 0
        self.spans = 0
        self.trace_ids: set[bytes] = set()
        self.lock = threading.Lock()

    def add(self, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        spans = [
            span.trace_id
            for resource_spans in request.resource_spans
            for scope_spans in resource_spans.scope_spans
            for span in scope_spans.spans
        ]
        with self.lock:
            self.exports += 1
            self.spans += len(spans)
            self.trace_ids.update(spans)

    def as_dict(self) -> dict[str, int]:
        with self.lock:
            return {"exports": self.exports, "spans": self.spans, "traces": len(self.trace_ids)}


def make_server(host: str, port: int) -> tuple[ThreadingHTTPServer, Counts]:
    counts = Counts()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            if self.path != "/v1/traces":
                self._answer(404, b"", "text/plain")
                return
            counts.add(body)
            self._answer(
                200, ExportTraceServiceResponse().SerializeToString(), "application/x-protobuf"
            )

        def do_GET(self) -> None:
            if self.path != "/counts":
                self._answer(404, b"", "text/plain")
                return
            self._answer(200, json.dumps(counts.as_dict()).encode(), "application/json")

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    return ThreadingHTTPServer((host, port), Handler), counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    server, _ = make_server(args.host, args.port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
