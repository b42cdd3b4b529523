"""``GET /ui``: a small page to try the service in a browser (not part of the API contract).

The page and its script and style ship as package data (``imagetagger/data/ui/``), read
once at import: no CDN, no build step, nothing fetched while serving. Every answer
carries a strict Content-Security-Policy: only the page's own script and style run, and
the script inserts what the API answers as text, never as HTML. The page calls the
public API with relative URLs, so it works under any route prefix (``root_path``);
API keys guard those calls (``imagetagger.api.access``), never the page itself.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response

UI_PATH = "/ui"

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data: blob: http: https:; connect-src 'self'; "
    "form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    # The URL a person types is shown as an <img>: its host learns nothing of this page.
    "Referrer-Policy": "no-referrer",
    # A new release's page is picked up at once; the three files are a few KiB.
    "Cache-Control": "no-cache",
}

# File name -> (route, media type). The page refers to the other two as "ui/<name>".
_FILES = {
    "index.html": (UI_PATH, "text/html; charset=utf-8"),
    "ui.js": (f"{UI_PATH}/ui.js", "text/javascript; charset=utf-8"),
    "ui.css": (f"{UI_PATH}/ui.css", "text/css; charset=utf-8"),
}


def _read(name: str) -> bytes:
    return resources.files("imagetagger").joinpath("data", "ui", name).read_bytes()


_CONTENT: dict[str, tuple[bytes, str]] = {
    route: (_read(name), media_type) for name, (route, media_type) in _FILES.items()
}

ui_router = APIRouter(include_in_schema=False)


def _serve(route: str) -> Response:
    body, media_type = _CONTENT[route]
    return Response(content=body, media_type=media_type, headers=SECURITY_HEADERS)


@ui_router.get(UI_PATH)
async def ui_page() -> Response:
    """The page: HTML that loads ui/ui.css and ui/ui.js, relative to itself."""
    return _serve(UI_PATH)


@ui_router.get(f"{UI_PATH}/")
async def ui_page_with_slash() -> RedirectResponse:
    """``/ui/`` would resolve the page's relative URLs one level too deep: send it to ``/ui``.

    The Location is relative (``../ui``), so it is right under any route prefix.
    """
    return RedirectResponse("../ui", status_code=308)


@ui_router.get(f"{UI_PATH}/ui.js")
async def ui_script() -> Response:
    return _serve(f"{UI_PATH}/ui.js")


@ui_router.get(f"{UI_PATH}/ui.css")
async def ui_style() -> Response:
    return _serve(f"{UI_PATH}/ui.css")
