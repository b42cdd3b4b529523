"""The HTTP contract of docs/API.md, end to end: real HTTP, real Ray Serve, real model."""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from imagetagger.routes import ROUTES, UI
from tests import images
from tests.photos import CATS
from tests.service.helpers import ROOT, TF_APP, TF_PREFIX, Service, tensorflow_service

ANY_CAT = CATS | {"Persian_cat", "Siamese_cat"}  # ImageNet's domestic cats, 281-285
INVALID_IMAGE = {
    "error": {"type": "InvalidImage", "detail": "Url is not pointing to a valid image format."}
}
UNREACHABLE = {"error": {"type": "UnreachableURL", "detail": "Url cannot be reached."}}


def assert_sorted_predictions(predictions: list[dict]) -> None:
    confidences = [p["confidence"] for p in predictions]
    assert confidences == sorted(confidences, reverse=True)
    for prediction in predictions:
        assert set(prediction) == {"label", "confidence"}
        assert isinstance(prediction["label"], str)
        assert 0.0 <= prediction["confidence"] <= 1.0


def assert_validation_error(response, loc: list) -> list[dict]:
    assert response.status_code == 422, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["type"] == "ValidationError"
    issues = body["error"]["detail"]
    assert issues, body
    for issue in issues:
        assert set(issue) == {"loc", "message", "type"}
        assert isinstance(issue["message"], str) and issue["message"]
    assert loc in [issue["loc"] for issue in issues], issues
    return issues


@pytest.fixture(scope="module", params=["litert", "tensorflow"])
def service(request: pytest.FixtureRequest, session_service: Service) -> Iterator[Service]:
    """Every test here runs on both runtimes: the session's app (litert, the CPU
    default) and its twin on tensorflow (the GPU runtime) at ``/tf``."""
    if request.param == "litert":
        yield session_service
        return
    with tensorflow_service(session_service) as twin:
        yield twin


# --- GET / ----------------------------------------------------------------------------


def test_info(service: Service) -> None:
    response = service.get("/")
    assert response.status_code == 200
    body = response.json()
    assert list(body)[:5] == ["description", "version", "revision", "author", "github_url"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", body["version"])
    assert isinstance(body["revision"], int) and body["revision"] >= 1
    assert body["github_url"].startswith("https://github.com/")
    assert body["model"] == "efficientnet_lite2"


# --- GET /predictions: successes -----------------------------------------------------


def test_cat_top1_by_default(service: Service) -> None:
    url = service.image_url("chelsea.jpg")
    response = service.predict(url)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["url"] == url
    assert len(body["predictions"]) == 1
    assert body["predictions"][0]["label"] in CATS
    assert_sorted_predictions(body["predictions"])


def test_coffee_is_espresso(service: Service) -> None:
    body = service.predict(service.image_url("coffee.jpg"), top=3).json()
    assert body["predictions"][0]["label"] == "espresso"
    assert len(body["predictions"]) == 3
    assert_sorted_predictions(body["predictions"])


def test_png_and_redirect_are_followed(service: Service) -> None:
    for name in ("chelsea.png", "to-chelsea"):
        body = service.predict(service.image_url(name)).json()
        assert body["predictions"][0]["label"] in CATS, body


def test_url_is_echoed_exactly(service: Service) -> None:
    url = service.image_url("chelsea.jpg") + "?b=2&a=%41#frag"
    body = service.predict(url).json()
    assert body["url"] == url


@pytest.mark.parametrize("top", [1, 5, 1000])
def test_top(service: Service, top: int) -> None:
    body = service.predict(service.image_url("chelsea.jpg"), top=top).json()
    assert len(body["predictions"]) == top
    assert_sorted_predictions(body["predictions"])


def test_minconf_alone_returns_every_label_above(service: Service) -> None:
    url = service.image_url("chelsea.jpg")
    everything = service.predict(url, minconf=0).json()["predictions"]
    assert len(everything) == 1000
    assert abs(sum(p["confidence"] for p in everything) - 1.0) < 1e-3
    threshold = everything[2]["confidence"]
    above = service.predict(url, minconf=threshold).json()["predictions"]
    assert above == [p for p in everything if p["confidence"] >= threshold]
    assert len(above) >= 3


def test_top_and_minconf_together(service: Service) -> None:
    url = service.image_url("chelsea.jpg")
    everything = service.predict(url, minconf=0).json()["predictions"]
    threshold = everything[4]["confidence"]
    assert len(service.predict(url, top=2, minconf=threshold).json()["predictions"]) == 2
    assert len(service.predict(url, top=50, minconf=threshold).json()["predictions"]) == 5
    assert service.predict(url, top=5, minconf=1.0).json()["predictions"] == []


# --- GET /predictions: client errors ---------------------------------------------------


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"top": "0"}, ["query", "top"]),
        ({"top": "1001"}, ["query", "top"]),
        ({"top": "abc"}, ["query", "top"]),
        ({"top": "1.5"}, ["query", "top"]),
        ({"minconf": "-0.1"}, ["query", "minconf"]),
        ({"minconf": "1.5"}, ["query", "minconf"]),
        ({"minconf": "x"}, ["query", "minconf"]),
    ],
)
def test_bad_parameters(service: Service, params: dict, loc: list) -> None:
    response = service.predict(service.image_url("chelsea.jpg"), **params)
    assert_validation_error(response, loc)


def test_missing_url(service: Service) -> None:
    issues = assert_validation_error(service.get("/predictions"), ["query", "url"])
    assert issues == [{"loc": ["query", "url"], "message": "Field required", "type": "missing"}]


@pytest.mark.parametrize(
    ("url", "error_type"),
    [
        ("ftp://127.0.0.2/cat.jpg", "url_scheme"),
        ("file:///etc/passwd", "url_scheme"),
        ("not a url", "url_scheme"),
        ("http://", "url_parsing"),
        ("http://host:99999/x", "url_parsing"),
        ("http://127.0.0.2/" + "a" * 2048, "url_too_long"),
    ],
)
def test_malformed_urls(service: Service, url: str, error_type: str) -> None:
    issues = assert_validation_error(service.predict(url), ["query", "url"])
    assert issues[0]["type"] == error_type


def test_several_violations_are_all_listed(service: Service) -> None:
    response = service.get("/predictions", params={"top": "0", "minconf": "2"})
    issues = assert_validation_error(response, ["query", "url"])
    assert sorted(issue["loc"][1] for issue in issues) == ["minconf", "top", "url"]


@pytest.mark.parametrize(
    "name", ["text.txt", "page.html", "html-as-jpeg.jpg", "truncated.jpg", "empty.jpg"]
)
def test_not_an_image(service: Service, name: str) -> None:
    response = service.predict(service.image_url(name))
    assert response.status_code == 400
    assert response.json() == INVALID_IMAGE


@pytest.mark.parametrize("name", ["missing.jpg", "broken.jpg", "loop"])
def test_unreachable(service: Service, name: str) -> None:
    response = service.predict(service.image_url(name))
    assert response.status_code == 404
    assert response.json() == UNREACHABLE


def test_closed_port_is_unreachable(service: Service) -> None:
    from tests.servers import unused_port

    response = service.predict(f"http://127.0.0.2:{unused_port('127.0.0.2')}/cat.jpg")
    assert response.status_code == 404
    assert response.json() == UNREACHABLE


def test_loopback_outside_allowed_networks_is_forbidden(service: Service) -> None:
    response = service.predict(f"http://127.0.0.1:{service.images.port}/chelsea.jpg")
    assert response.status_code == 403
    assert response.json()["error"]["type"] == "ForbiddenURL"


def test_unknown_route_is_json(service: Service) -> None:
    response = service.get("/nope")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "NotFound"


# --- docs --------------------------------------------------------------------------


def test_docs_pages(service: Service) -> None:
    for path in ("/docs", "/redoc"):
        response = service.get(path)
        assert response.status_code == 200
        assert "text/html" in response.headers["content-type"]
        assert "/openapi.json" in response.text


def test_openapi_documents_every_route(service: Service) -> None:
    spec = service.get("/openapi.json").json()
    documented = {(path, method) for path, item in spec["paths"].items() for method in item}
    # Every route of the route table but the page for people (outside the API's schema).
    assert documented == {(r.path, r.method.lower()) for r in ROUTES if r is not UI}
    get = spec["paths"]["/predictions"]["get"]
    assert {p["name"] for p in get["parameters"]} == {"url", "top", "minconf", "labels"}
    assert {"200", "400", "401", "403", "404", "413", "422", "429", "503"} <= set(get["responses"])
    example = get["responses"]["400"]["content"]["application/json"]["example"]
    assert example == INVALID_IMAGE


# --- POST /predictions (upload) ------------------------------------------------------


def test_upload(service: Service) -> None:
    data = (ROOT / "tests" / "data" / "chelsea.jpg").read_bytes()
    response = service.post(
        "/predictions", params={"top": 3}, files={"file": ("kitty.jpg", data, "image/jpeg")}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["filename"] == "kitty.jpg"
    assert len(body["predictions"]) == 3
    assert body["predictions"][0]["label"] in CATS


def test_upload_not_an_image(service: Service) -> None:
    response = service.post("/predictions", files={"file": ("a.jpg", b"nope", "image/jpeg")})
    assert response.status_code == 400
    assert response.json() == INVALID_IMAGE


def test_upload_without_file(service: Service) -> None:
    response = service.post("/predictions", data={"other": "x"})
    assert_validation_error(response, ["body", "file"])


# --- POST /predictions/batch ---------------------------------------------------------


def test_batch_mixed(service: Service) -> None:
    urls = [
        service.image_url("chelsea.jpg"),
        service.image_url("text.txt"),
        service.image_url("coffee.jpg"),
        service.image_url("missing.jpg"),
        f"http://127.0.0.1:{service.images.port}/chelsea.jpg",
    ]
    response = service.post("/predictions/batch", json={"urls": urls, "top": 2})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["url"] for r in results] == urls
    assert results[0]["predictions"][0]["label"] in CATS
    assert len(results[0]["predictions"]) == 2
    assert results[1] == {"url": urls[1], **INVALID_IMAGE}
    assert results[2]["predictions"][0]["label"] == "espresso"
    assert results[3] == {"url": urls[3], **UNREACHABLE}
    assert results[4]["error"]["type"] == "ForbiddenURL"


def test_batch_limits(service: Service) -> None:
    url = service.image_url("chelsea.jpg")
    assert_validation_error(
        service.post("/predictions/batch", json={"urls": [url] * 65}), ["body", "urls"]
    )
    assert_validation_error(service.post("/predictions/batch", json={"urls": []}), ["body", "urls"])
    assert_validation_error(
        service.post("/predictions/batch", json={"urls": ["ftp://x/y"]}), ["body", "urls", 0]
    )
    assert_validation_error(
        service.post("/predictions/batch", json={"urls": [url], "top": 0}), ["body", "top"]
    )


# --- concurrency -----------------------------------------------------------------------


def test_64_concurrent_requests(service: Service) -> None:
    url = service.image_url("chelsea.jpg")
    with ThreadPoolExecutor(max_workers=64) as pool:
        responses = list(pool.map(lambda _: service.predict(url), range(64)))
    assert [r.status_code for r in responses] == [200] * 64
    labels = {r.json()["predictions"][0]["label"] for r in responses}
    assert len(labels) == 1 and labels <= CATS


def test_every_image_mode_still_a_cat(service: Service) -> None:
    """Uploads of chelsea in every Pillow mode the corpus makes: a cat in the top 3.

    A 1-bit dithered chelsea loses her stripes, so any domestic cat counts here.
    """
    for name, data in images.photo_mode_variants().items():
        response = service.post(
            "/predictions", params={"top": 3}, files={"file": (name, data, "image/*")}
        )
        assert response.status_code == 200, (name, response.text)
        labels = {p["label"] for p in response.json()["predictions"]}
        assert labels & ANY_CAT, (name, labels)


# --- runtimes ------------------------------------------------------------------------


def _replica_pids(app: str) -> dict[str, int]:
    """Replica processes of ``app`` by deployment, from the titles Ray gives its workers."""
    prefix = f"ray::ServeReplica:{app}:"
    found = {}
    for entry in Path("/proc").iterdir():
        try:
            title = (entry / "cmdline").read_bytes().split(b"\0")[0].decode()
        except (OSError, ValueError):
            continue
        if title.startswith(prefix):
            found[title.removeprefix(prefix).split()[0].split(".")[0]] = int(entry.name)
    return found


def _maps_tensorflow(pid: int) -> bool:
    """Whether the process has TensorFlow's own libraries mapped (imported)."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return "site-packages/tensorflow/" in maps


def test_only_a_tensorflow_model_replica_loads_tensorflow(service: Service) -> None:
    app = TF_APP if service.base_url.endswith(TF_PREFIX) else "imagetagger"
    pids = _replica_pids(app)
    assert set(pids) == {"ImageTagger", "Downloader", "ModelDeployment"}, pids
    loaded = {name for name, pid in pids.items() if _maps_tensorflow(pid)}
    assert loaded == ({"ModelDeployment"} if app == TF_APP else set())
