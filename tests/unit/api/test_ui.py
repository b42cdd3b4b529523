"""The /ui page's routes and files without a browser: headers, CSP-safe markup, relative URLs.

The page in a real browser, against the deployed service, is tests/service/test_ui.py.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from importlib import resources
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from imagetagger.api.access import Access, AccessMiddleware
from imagetagger.api.auth import ApiKeys, hash_key
from imagetagger.api.routers.contract import guard as contract_guard
from imagetagger.api.ui import CONTENT_SECURITY_POLICY, ui_router
from imagetagger.errors import ERROR_TABLE

STRICT_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data: blob: http: https:; connect-src 'self'; "
    "form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)
FILES = {
    "/ui": "text/html; charset=utf-8",
    "/ui/ui.js": "text/javascript; charset=utf-8",
    "/ui/ui.css": "text/css; charset=utf-8",
}
KEY = "it-test-ui-key-3c9b1e"


def ui_file(name: str) -> str:
    return resources.files("imagetagger").joinpath("data", "ui", name).read_text("utf-8")


@pytest.fixture(scope="module")
def client() -> TestClient:
    app = FastAPI()
    app.include_router(ui_router)
    return TestClient(app)


class Markup(HTMLParser):
    """Every start tag of a page, with its attributes, and the text inside each <script>."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.script_text: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.script_text.append(data)


def parse(html: str) -> Markup:
    markup = Markup()
    markup.feed(html)
    markup.close()
    return markup


@pytest.mark.parametrize(("path", "content_type"), FILES.items())
def test_each_file_has_its_type_and_the_security_headers(
    client: TestClient, path: str, content_type: str
) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    assert response.headers["content-security-policy"] == STRICT_CSP
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert CONTENT_SECURITY_POLICY == STRICT_CSP


def test_the_answers_are_the_shipped_files(client: TestClient) -> None:
    assert client.get("/ui").text == ui_file("index.html")
    assert client.get("/ui/ui.js").text == ui_file("ui.js")
    assert client.get("/ui/ui.css").text == ui_file("ui.css")
    assert "<title>Image Tagger</title>" in ui_file("index.html")


def test_the_page_has_no_inline_script_or_style() -> None:
    markup = parse(ui_file("index.html"))
    scripts = [attrs for tag, attrs in markup.tags if tag == "script"]
    assert scripts and all(attrs.get("src") for attrs in scripts)
    assert "".join(markup.script_text).strip() == ""
    assert not [tag for tag, _ in markup.tags if tag == "style"]
    for tag, attrs in markup.tags:
        assert "style" not in attrs, tag
        handlers = [name for name in attrs if name.startswith("on")]
        assert not handlers, (tag, handlers)  # inline event handlers are inline script
        for name in ("href", "src", "action", "formaction"):
            assert not (attrs.get(name) or "").lower().startswith("javascript:"), (tag, name)


def test_every_url_in_the_page_is_relative(client: TestClient) -> None:
    """Relative URLs work under any route prefix; each one resolves to a route that answers."""
    markup = parse(ui_file("index.html"))
    urls = [
        value
        for _, attrs in markup.tags
        for name, value in attrs.items()
        if name in ("href", "src", "action") and value
    ]
    assert set(urls) == {"ui/ui.css", "ui/ui.js", "docs", "data:,"}  # data:, no favicon request
    for url in set(urls) - {"data:,"}:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc and not url.startswith("/"), url
    for prefix in ("", "/some/prefix"):
        page = f"http://testserver{prefix}/ui"
        for url in ("ui/ui.css", "ui/ui.js"):
            assert urljoin(page, url) == f"http://testserver{prefix}/{url}"
    assert client.get(urljoin("http://testserver/ui", "ui/ui.js")).status_code == 200


def test_the_script_calls_the_api_relatively_and_inserts_text_only() -> None:
    script = ui_file("ui.js")
    targets = re.findall(r"fetch\(([^,)]+)", script)
    assert targets == ['"predictions?" + query', "target"]
    assert re.search(r'const target = "predictions" \+', script)
    for html_sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"):
        assert html_sink not in script
    for dynamic_code in ("eval(", "new Function", 'setTimeout("', 'setAttribute("on'):
        assert dynamic_code not in script
    string_paths = re.findall(r"""["'`](/[A-Za-z][^"'`]*)["'`]""", script)
    assert string_paths == [], string_paths  # no absolute path: it would skip the prefix
    assert "http://" not in script.replace("https?:\\/\\/", "")


def test_the_script_names_a_message_for_every_api_error_type() -> None:
    block = re.search(r"const MESSAGES = \{(.*?)\n  \};", ui_file("ui.js"), re.S)
    assert block is not None
    named = set(re.findall(r"^\s+(\w+):", block.group(1), re.M))
    assert named == set(ERROR_TABLE) | {"ValidationError"}


def test_ui_with_a_slash_redirects_to_the_page_relatively(client: TestClient) -> None:
    response = client.get("/ui/", follow_redirects=False)
    assert response.status_code == 308
    assert response.headers["location"] == "../ui"
    assert urljoin("http://testserver/prefix/ui/", "../ui") == "http://testserver/prefix/ui"


def test_keys_guard_the_api_calls_not_the_page() -> None:
    app = FastAPI()
    app.include_router(ui_router)

    @app.get("/predictions")
    async def predict_url(url: str) -> dict[str, Any]:
        return {"url": url, "predictions": []}

    access = Access(keys=ApiKeys([hash_key(KEY)]))
    app.add_middleware(AccessMiddleware, access=lambda: access, guards={"contract": contract_guard})
    keyed = TestClient(app)
    for path in FILES:
        assert keyed.get(path).status_code == 200, path
    query = {"url": "http://x.test/"}
    assert keyed.get("/predictions", params=query).status_code == 401
    authorized = {"Authorization": f"Bearer {KEY}"}
    assert keyed.get("/predictions", params=query, headers=authorized).status_code == 200


def test_the_ingress_serves_the_page_outside_its_openapi_schema() -> None:
    from deployments.ingress import app

    routes = {"ui_page": "/ui", "ui_script": "/ui/ui.js", "ui_style": "/ui/ui.css"}
    for name, path in routes.items():
        assert app.url_path_for(name) == path
    spec = app.openapi()
    assert not [path for path in spec["paths"] if path.startswith("/ui")]
    assert "[the page at /ui](ui)" in spec["info"]["description"]
