"""docs/API.md against the code: its routes are the route table's, its error table
ERROR_TABLE's, so the next drift fails here rather than reaching a reader."""

from __future__ import annotations

import re

from imagetagger.api.access import Access
from imagetagger.api.app import GUARDS, build_api
from imagetagger.errors import ERROR_TABLE
from imagetagger.routes import ROUTES, UI
from tests.paths import REPO_ROOT

app = build_api(core=lambda: None, access=Access)  # the routes only: no request is made

API_MD = (REPO_ROOT / "docs" / "API.md").read_text()


def section(title: str) -> str:
    match = re.search(rf"^## {title}\n(.*?)(?=^## )", API_MD, re.S | re.M)
    assert match is not None, title
    return match.group(1)


def test_the_routes_section_lists_every_route_of_the_table() -> None:
    documented = set(re.findall(r"^### `(GET|POST) (\S+)`", section("Routes"), re.M))
    assert documented == {(r.method, r.path) for r in ROUTES if r is not UI}


def test_the_app_serves_exactly_the_route_table() -> None:
    app.openapi_schema = None  # built afresh, with every route
    paths = app.openapi()["paths"]
    documented = {(method.upper(), path) for path, item in paths.items() for method in item}
    assert documented == {(r.method, r.path) for r in ROUTES if r is not UI}
    for route in ROUTES:
        if route.path in paths:
            assert paths[route.path][route.method.lower()]["summary"] == route.summary
    assert app.url_path_for("ui_page") == UI.path


def test_the_errors_table_is_the_error_table_of_the_code() -> None:
    rows = re.findall(r"^\| (\d{3}) \| `(\w+)` \|", section("Errors"), re.M)
    assert {(int(status), name) for status, name in rows} == {
        (cls.status_code, name) for name, cls in ERROR_TABLE.items()
    }


def test_every_tagging_route_is_guarded_and_nothing_else() -> None:
    guarded = {(r.method, r.path): r.guard for r in ROUTES if r.guarded}
    assert guarded == {
        ("GET", "/predictions"): "contract",
        ("POST", "/predictions"): "contract",
        ("POST", "/predictions/batch"): "contract",
        ("POST", "/v1/images:annotate"): "cloud_vision",
        ("POST", "/"): "rekognition",
        ("POST", "/v2/models/{model}/infer"): "open_inference",
        ("POST", "/v2/models/{model}/versions/{version}/infer"): "open_inference",
        ("POST", "/models/{model}"): "hugging_face",
    }
    assert set(guarded.values()) == set(GUARDS)
