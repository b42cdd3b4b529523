"""Property-based fuzzing of the live service against its own OpenAPI document.

Schemathesis reads ``/openapi.json`` from the deployed app and generates valid and
invalid requests for every operation in it. Each answer must not be a 5xx, must carry
a status code the document lists for that operation, and must match the documented
response schema (which for errors is the contract's JSON error shape).

Why the URLs are not left to Schemathesis: a generated ``url`` (or ``urls`` item) is
something the service downloads, and tests may only cause traffic to 127.0.0.0/8.
A free-form string can be a DNS name (the Downloader would ask a resolver before its
address guard sees an address) and the document's own example is
``https://example.com/cat.jpg``. So the ``flatmap_query``/``flatmap_body`` hooks below
replace every URL Schemathesis generates with a draw from :func:`url_strategy`: the
image server on 127.0.0.2 (real photos, text, 404, 500, redirect loop, random paths and
queries), forbidden loopback forms (127.0.0.1, ``2130706433``, ``[::1]``), a closed
port, and malformed strings (no scheme, ftp:, overlong, unicode, control characters).
:func:`assert_loopback_only` re-checks every case before it is sent, so a URL that
slipped past the hooks fails the test unsent.

Cases come from ``APIOperation.as_strategy`` (the fuzzing phase) under a plain
``@given``, one test per operation and generation mode, rather than from
``schemathesis.pytest.from_fixture(...).parametrize()``: the schema only exists once the
session's ``service`` fixture has deployed the app, and that lazy loader breaks on
pytest 9.2 (``'Function' object has no attribute '_nodeid'``). This way also never runs
the examples and coverage phases, which build cases from the document's examples (the
example.com URL) rather than through the hooks.

Schemathesis' ``negative_data_rejection`` and ``positive_data_acceptance`` checks are
not used: after a URL is replaced, a case generated as invalid may have become valid
(and the reverse), so they would judge the wrong thing.
"""

from __future__ import annotations

import base64
import ipaddress
import json
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from yarl import URL

from imagetagger.routes import ROUTES
from imagetagger.schemas import MAX_BATCH_URLS, MAX_URL_LENGTH
from tests import servers
from tests.photos import CHELSEA
from tests.service.helpers import Service

EXAMPLES_PER_OPERATION = 50
POSITIVE, NEGATIVE = GenerationMode.POSITIVE, GenerationMode.NEGATIVE
# Every operation in /openapi.json, valid and invalid data (GET / takes no input to spoil).
OPERATIONS = [
    ("GET", "/", POSITIVE),
    ("GET", "/predictions", POSITIVE),
    ("GET", "/predictions", NEGATIVE),
    ("POST", "/predictions", POSITIVE),
    ("POST", "/predictions", NEGATIVE),
    ("POST", "/predictions/batch", POSITIVE),
    ("POST", "/predictions/batch", NEGATIVE),
]
# The label APIs read their bodies themselves (their wire formats are Google's and AWS's,
# not in /openapi.json's schemas): fuzzed by test_label_api_bodies_never_fail_the_server.
LABEL_API_OPERATIONS = {("POST", "/v1/images:annotate"), ("POST", "/")}
# So do the model-serving protocols (KServe's and Hugging Face's wire formats): their
# bodies are fuzzed by test_fuzz_protocols.py; their GET routes take no input to spoil.
PROTOCOL_OPERATIONS = {
    (route.method, route.path)
    for route in ROUTES
    if route.path.startswith("/v2") or route.guard == "hugging_face"
}
# A batch of up to 64 URLs is 64 model calls; a few are enough to fuzz the shape.
MAX_FUZZED_BATCH = 6
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
ERROR_TYPES = {
    400: {"InvalidImage"},
    403: {"ForbiddenURL"},
    404: {"UnreachableURL"},
    413: {"ImageTooLarge"},
    422: {"ValidationError"},
}
# The answer to an upload body that is not multipart at all: like any body the
# framework cannot parse, a 422 whose one issue is at ["body"].
MALFORMED_MULTIPART = {
    "error": {
        "type": "ValidationError",
        "detail": [{"loc": ["body"], "message": "Invalid multipart data.", "type": "body_parsing"}],
    }
}
IMAGE_ROUTES = (
    "chelsea.jpg",
    "coffee.jpg",
    "chelsea.png",
    "to-chelsea",
    "text.txt",
    "page.html",
    "truncated.jpg",
    "empty.jpg",
    "missing.jpg",
    "broken.jpg",
    "loop",
)
# Characters a random tail may not contain: none can end the authority part early.
_NO_SCHEME = st.text(st.characters(exclude_characters=":", exclude_categories=["Cs"]))


def url_strategy(images: servers.LoopbackServer) -> st.SearchStrategy[str]:
    """URLs the service may be sent: each one resolves to loopback or is rejected unparsed."""
    base, port = images.base_url, images.port
    closed = servers.unused_port(images.host)
    fixed = [base + "/" + name for name in IMAGE_ROUTES] + [
        # forbidden: loopback outside allowed_networks, in several spellings
        f"http://127.0.0.1:{port}/chelsea.jpg",
        f"http://2130706433:{port}/chelsea.jpg",
        f"http://[::1]:{port}/chelsea.jpg",
        f"http://[::ffff:127.0.0.1]:{port}/chelsea.jpg",
        # unreachable: nothing listens there
        f"http://{images.host}:{closed}/chelsea.jpg",
        # malformed
        "",
        f"{images.host}:{port}/chelsea.jpg",
        f"ftp://{images.host}:{port}/chelsea.jpg",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "data:image/png;base64,iVBORw0KGgo=",
        "http://",
        "https://",
        "http:///chelsea.jpg",
        f"http://{images.host}:99999/chelsea.jpg",
        f"http://{images.host}:0/chelsea.jpg",
        "http://[::1/chelsea.jpg",
        f"{base}/a b.jpg",
        f"\x01{base}/chelsea.jpg",
        f"{base}/chelsea.jpg\x00",
        f"{base}/ünïcødé-😺.jpg",
        f"HTTP://{images.host}:{port}/chelsea.jpg",
        # at and just past the length limit (the path itself is a 404 on the server)
        _padded(base + "/", MAX_URL_LENGTH),
        _padded(base + "/", MAX_URL_LENGTH + 1),
    ]
    named = st.sampled_from([base + "/" + name for name in IMAGE_ROUTES])
    return st.one_of(
        st.sampled_from(fixed),
        # the image server with a random path, or a real route with a random query/fragment
        st.builds(lambda tail: f"{base}/{tail}", _NO_SCHEME),
        st.builds(lambda url, q, f: f"{url}?{q}#{f}", named, _NO_SCHEME, _NO_SCHEME),
        # no scheme at all: never fetched
        _NO_SCHEME,
    )


def _padded(prefix: str, length: int) -> str:
    return prefix + "a" * (length - len(prefix))


def _is_loopback_host(host: str | None) -> bool:
    if host is None:
        return True  # no host: nothing to connect to
    if host == "2130706433":
        return True  # 127.0.0.1 as one decimal number
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False  # a name: resolving it would already leave the machine
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def is_loopback_only(url: Any) -> bool:
    """Whether sending ``url`` to the service can only make it connect to loopback.

    Checked with both URL parsers in play: the ingress validates with ``urllib``, the
    Downloader connects with ``yarl``. A string neither can read as http(s) is never
    fetched.
    """
    if not isinstance(url, str):
        return True  # refused by validation as the wrong type
    try:
        split = urlsplit(url)
        if split.scheme.lower() in ("http", "https") and not _is_loopback_host(split.hostname):
            return False
    except ValueError:
        pass
    try:
        parsed = URL(url)
    except ValueError:
        return True
    return parsed.scheme.lower() not in ("http", "https") or _is_loopback_host(parsed.host)


def assert_loopback_only(case: schemathesis.Case) -> None:
    """Fail, without sending it, a case whose URLs could reach beyond loopback."""
    urls: list[Any] = []
    if isinstance(case.query, dict) and "url" in case.query:
        urls.append(case.query["url"])
    if isinstance(case.body, dict) and isinstance(case.body.get("urls"), list):
        urls.extend(case.body["urls"])
    unsafe = [url for url in urls if not is_loopback_only(url)]
    assert not unsafe, f"generated a non-loopback URL, not sent: {unsafe!r}"


@pytest.fixture(scope="module")
def api_schema(service: Service) -> schemathesis.BaseSchema:
    config = schemathesis.Config.from_dict({})  # this file's settings, not a discovered toml
    schema = schemathesis.openapi.from_url(
        service.base_url + "/openapi.json", config=config, timeout=30
    )
    urls = url_strategy(service.images)

    @schema.hook
    def flatmap_query(context: Any, query: Any) -> st.SearchStrategy[Any]:
        if isinstance(query, dict) and "url" in query:
            return urls.map(lambda url: {**query, "url": url})
        return st.just(query)

    @schema.hook
    def flatmap_body(context: Any, body: Any) -> st.SearchStrategy[Any]:
        if not (isinstance(body, dict) and isinstance(body.get("urls"), list)):
            return st.just(body)
        # Over the limit: keep the length (a 422, nothing fetched); else keep it cheap.
        size = len(body["urls"])
        size = size if size > MAX_BATCH_URLS else min(size, MAX_FUZZED_BATCH)
        items = st.lists(urls, min_size=size, max_size=size)
        return items.map(lambda new: {**body, "urls": new})

    return schema


def test_every_operation_is_fuzzed(api_schema: schemathesis.BaseSchema) -> None:
    """A route added to the app without a line in OPERATIONS must not go unfuzzed."""
    listed = {(op.method.upper(), op.path) for op in _operations(api_schema)}
    fuzzed = {(method, path) for method, path, _ in OPERATIONS}
    assert listed == fuzzed | LABEL_API_OPERATIONS | PROTOCOL_OPERATIONS


@pytest.mark.parametrize(
    ("method", "path", "mode"),
    OPERATIONS,
    ids=[f"{method} {path} {mode.value}" for method, path, mode in OPERATIONS],
)
def test_operation_conforms_to_openapi(
    api_schema: schemathesis.BaseSchema, method: str, path: str, mode: GenerationMode
) -> None:
    operation = api_schema[path][method]

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        phases=[Phase.generate, Phase.shrink],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(case=operation.as_strategy(mode))
    def fuzz(case: schemathesis.Case) -> None:
        check_case(case)

    fuzz()


def _operations(schema: schemathesis.BaseSchema) -> list[schemathesis.APIOperation]:
    return [result.ok() for result in schema.get_all_operations()]


def check_case(case: schemathesis.Case) -> None:
    """Send one generated request and hold the answer to the document and the contract."""
    assert_loopback_only(case)
    response = case.call(timeout=60)
    case.validate_response(response, checks=CHECKS)
    body = response.json()
    route = (case.method.upper(), case.operation.path)
    if response.status_code >= 400:
        if route == ("POST", "/predictions") and body == MALFORMED_MULTIPART:
            assert response.status_code == 422
            return
        assert body["error"]["type"] in ERROR_TYPES.get(response.status_code, set()), body
        return
    # Judge by what went over the wire: requests drops empty lists, repeats keys, ...
    params = sent_query(response.request)
    if route == ("GET", "/predictions"):
        assert body["url"] == params["url"]
        assert_predictions_match(body["predictions"], params)
    elif route == ("POST", "/predictions"):
        assert_predictions_match(body["predictions"], params)
    elif route == ("POST", "/predictions/batch"):
        sent = json.loads(response.request.body)
        assert [item["url"] for item in body["results"]] == sent["urls"]
        for item in body["results"]:
            if "predictions" in item:
                assert_predictions_match(item["predictions"], sent)


def sent_query(request: requests.PreparedRequest) -> dict[str, str]:
    """The query string as the service reads a scalar parameter: the last value wins."""
    pairs = parse_qsl(urlsplit(request.url).query, keep_blank_values=True)
    return dict(pairs)


def assert_predictions_match(predictions: list[dict[str, Any]], params: dict[str, Any]) -> None:
    """Sorted best first, and restricted the way ``top``/``minconf`` asked."""
    confidences = [p["confidence"] for p in predictions]
    assert confidences == sorted(confidences, reverse=True)
    top, minconf = params.get("top"), params.get("minconf")
    if top is None and minconf is None:
        assert len(predictions) == 1
    if top is not None:
        assert len(predictions) <= int(top)
        if minconf is None:
            assert len(predictions) == int(top)  # 1000 labels: always enough
    if minconf is not None:
        assert all(c >= float(minconf) for c in confidences)


@pytest.mark.parametrize(
    "body",
    [b'{"urls": [', b"\xff\xfe", b'{"urls": ["\xff"]}'],
    ids=["truncated", "not-utf8", "not-utf8-inside"],
)
def test_batch_malformed_json_is_a_validation_error(service: Service, body: bytes) -> None:
    """Found by the fuzzer: any malformed JSON body is the documented 422, as FastAPI
    answers a truncated one, not an undocumented 400 for bytes that are not UTF-8."""
    response = requests.post(
        service.base_url + "/predictions/batch",
        data=body,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["type"] == "ValidationError"


def _json_values() -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-5, 2000),
        st.floats(allow_nan=False, allow_infinity=False),  # what JSON can carry
        st.text(),
    )
    return st.recursive(
        scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner)
    )


def vision_bodies(urls: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    """Cloud Vision bodies, near the real shape and far from it (every URI loopback-only)."""
    content = st.sampled_from([CHELSEA, b"not an image", b""]).map(
        lambda data: base64.b64encode(data).decode()
    ) | st.text(max_size=20)
    image = st.fixed_dictionaries(
        {}, optional={"content": content, "source": st.fixed_dictionaries({"imageUri": urls})}
    )
    feature = st.fixed_dictionaries(
        {},
        optional={
            "type": st.sampled_from(["LABEL_DETECTION", 4, 1, "FACE_DETECTION", "NOPE", -1]),
            "maxResults": st.integers(-3, 2000) | st.text(max_size=3),
        },
    )
    request = st.fixed_dictionaries(
        {}, optional={"image": image, "features": st.lists(feature, max_size=2)}
    )
    return st.one_of(
        st.fixed_dictionaries({"requests": st.lists(request, max_size=3)}),
        st.fixed_dictionaries({"requests": st.lists(request, min_size=17, max_size=17)}),
        _json_values(),
    )


def rekognition_bodies() -> st.SearchStrategy[Any]:
    image = st.fixed_dictionaries(
        {},
        optional={
            "Bytes": st.sampled_from([CHELSEA, b"x"]).map(lambda d: base64.b64encode(d).decode())
            | st.text(max_size=10),
            "S3Object": st.fixed_dictionaries({"Bucket": st.text(), "Name": st.text()}),
        },
    )
    return st.one_of(
        st.fixed_dictionaries(
            {"Image": image},
            optional={
                "MaxLabels": st.integers(-2, 2000) | st.text(max_size=3),
                "MinConfidence": st.floats(-10, 200) | st.text(max_size=3),
            },
        ),
        _json_values(),
    )


def _label_api_urls(body: Any) -> list[Any]:
    if not isinstance(body, dict) or not isinstance(body.get("requests"), list):
        return []
    found = []
    for request in body["requests"]:
        image = request.get("image") if isinstance(request, dict) else None
        source = image.get("source") if isinstance(image, dict) else None
        if isinstance(source, dict):
            found.append(source.get("imageUri"))
    return found


def test_label_api_bodies_never_fail_the_server(service: Service) -> None:
    """Any body gets a 200 or its API's own error shape, never a 5xx or a stack trace."""
    session = requests.Session()

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(vision=vision_bodies(url_strategy(service.images)), aws=rekognition_bodies())
    def fuzz(vision: Any, aws: Any) -> None:
        assert all(is_loopback_only(url) for url in _label_api_urls(vision)), vision
        answer = session.post(service.base_url + "/v1/images:annotate", json=vision, timeout=60)
        assert answer.status_code in (200, 400), answer.text
        body = answer.json()
        if answer.status_code == 200:
            assert len(body["responses"]) == len(vision["requests"])
        else:
            assert body["error"]["status"] == "INVALID_ARGUMENT", body
        answer = session.post(
            service.base_url + "/",
            json=aws,
            headers={"X-Amz-Target": "RekognitionService.DetectLabels"},
            timeout=60,
        )
        assert answer.status_code in (200, 400), answer.text
        if answer.status_code == 400:
            assert answer.json()["__type"].endswith("Exception"), answer.text
        else:
            assert isinstance(answer.json()["Labels"], list)

    fuzz()
