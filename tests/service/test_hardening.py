"""The hardening of docs/SECURITY.md, proved through the running service: SSRF, hostile
input, limits.

Every request goes through real HTTP to the Serve app deployed by ``conftest.py``
(Downloader ``allowed_networks = ["127.0.0.2/32"]``). 127.0.0.1 (and ::1) play the
forbidden internal host: a ``ConnectionCountingServer`` listens there and must count
zero connections, so a 403 is not just a status but proof that no byte was sent.
Hostile bodies are generated here (``tests/images.py``) and served from 127.0.0.2.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache

import pytest
import requests
import yaml
from PIL import Image

from tests import images, servers
from tests.photos import CATS
from tests.service.helpers import ROOT, Service

ANY_CAT = CATS | {"Persian_cat", "Siamese_cat"}  # ImageNet's domestic cats, 281-285


def error(error_type: str, detail: str) -> dict:
    return {"error": {"type": error_type, "detail": detail}}


FORBIDDEN = error("ForbiddenURL", "Url resolves to an address that is not allowed.")
INVALID_IMAGE = error("InvalidImage", "Url is not pointing to a valid image format.")
UNREACHABLE = error("UnreachableURL", "Url cannot be reached.")
MAX_BYTES = 20 * 2**20  # serve_config.yaml: Downloader max_image_bytes, ingress max_upload_bytes
TOO_MANY_BYTES = error("ImageTooLarge", f"Image is larger than {MAX_BYTES} bytes.")
# Uploads are cut by the ingress, and headers claiming more than twice Pillow's
# MAX_IMAGE_PIXELS (about 179 Mpx) are refused by Pillow's own bomb check at open:
# both answer the generic detail. Between 64 Mpx and that, the service's header check
# names the size.
TOO_LARGE = error("ImageTooLarge", "Image is larger than this service accepts.")


def too_many_pixels(width: int, height: int) -> dict:
    return error(
        "ImageTooLarge",
        f"Image is {width}x{height} pixels; this service accepts at most 64000000.",
    )


def downloader_timeout_s() -> float:
    """The Downloader's ``timeout_s`` as deployed (serve_config.yaml)."""
    config = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    for deployment in config["applications"][0]["deployments"]:
        if deployment["name"] == "Downloader":
            return float(deployment["user_config"]["timeout_s"])
    raise AssertionError("no Downloader in serve_config.yaml")


def timed_predict(service: Service, url: str, **params: object) -> tuple[requests.Response, float]:
    started = time.monotonic()
    response = service.predict(url, **params)
    return response, time.monotonic() - started


def assert_cat_in_top3(response: requests.Response, context: object) -> None:
    assert response.status_code == 200, (context, response.text)
    labels = {p["label"] for p in response.json()["predictions"]}
    assert labels & ANY_CAT, (context, labels)


def assert_cat_in_top3_result(result: dict) -> None:
    labels = {p["label"] for p in result["predictions"]}
    assert labels & ANY_CAT, result


def assert_validation_error(response: requests.Response, loc: list, error_type: str) -> None:
    assert response.status_code == 422, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["type"] == "ValidationError"
    issues = body["error"]["detail"]
    for issue in issues:
        assert set(issue) == {"loc", "message", "type"}
    assert [loc, error_type] in [[i["loc"], i["type"]] for i in issues], issues


# --- SSRF ---------------------------------------------------------------------------------


@dataclass
class ForbiddenHosts:
    """Counting servers on the forbidden loopback addresses; ``v6`` is None without IPv6."""

    v4: servers.ConnectionCountingServer
    v6: servers.ConnectionCountingServer | None

    def url(self, template: str) -> str:
        if "{P6}" in template and self.v6 is None:
            pytest.skip("no IPv6 loopback here")
        return template.format(P=self.v4.port, P6=self.v6.port if self.v6 else 0)

    def assert_untouched(self) -> None:
        assert self.v4.connections == 0, "a forbidden IPv4 address was contacted"
        assert self.v6 is None or self.v6.connections == 0, "::1 was contacted"


@pytest.fixture(scope="module")
def forbidden() -> Iterator[ForbiddenHosts]:
    with servers.ConnectionCountingServer("127.0.0.1") as v4:
        if servers.ipv6_loopback_available():
            with servers.ConnectionCountingServer("::1") as v6:
                yield ForbiddenHosts(v4, v6)
        else:
            yield ForbiddenHosts(v4, None)


# Every spelling of the forbidden loopback host at {P} (127.0.0.1) or {P6} (::1).
LOOPBACK_FORMS = {
    "dotted": "http://127.0.0.1:{P}/",
    "decimal": "http://2130706433:{P}/",
    "hex": "http://0x7f000001:{P}/",
    "octal": "http://0177.0.0.1:{P}/",
    "short": "http://127.1:{P}/",
    "hex-short": "http://0x7f.1:{P}/",
    "zero-padded": "http://127.000.000.001:{P}/",
    "ipv4-mapped": "http://[::ffff:127.0.0.1]:{P}/",
    "ipv4-mapped-hex": "http://[::ffff:7f00:1]:{P}/",
    "localhost": "http://localhost:{P}/",  # /etc/hosts: 127.0.0.1
    "LOCALHOST": "http://LOCALHOST:{P}/",
    "fullwidth-digits": "http://\uff11\uff12\uff17.\uff10.\uff10.\uff11:{P}/",  # IDNA: 127.0.0.1
    "ideographic-dots": "http://127\u30020\u30020\u30021:{P}/",
    "unspecified": "http://0.0.0.0:{P}/",  # Linux connects 0.0.0.0 to loopback
    "zero": "http://0:{P}/",
    "userinfo": "http://127.0.0.2@127.0.0.1:{P}/",  # the host is after the @
    "fragment-at": "http://127.0.0.1:{P}#@127.0.0.2/",
    "ipv6-loopback": "http://[::1]:{P6}/",
    "ipv6-loopback-long": "http://[0:0:0:0:0:0:0:1]:{P6}/",
    "ipv6-unspecified": "http://[::]:{P6}/",  # reaches ::1
}

# Forbidden and not loopback: refused by the address check, so no connection is tried
# (a connect attempt would end in 404 UnreachableURL, not 403).
INTERNAL_LITERALS = {
    "metadata": "http://169.254.169.254/latest/meta-data/",
    "metadata-decimal": "http://2852039166/latest/meta-data/",
    "metadata-mapped": "http://[::ffff:169.254.169.254]/",
    "metadata-nat64": "http://[64:ff9b::a9fe:a9fe]/",
    "metadata-6to4": "http://[2002:a9fe:a9fe::1]/",
    "private-10": "http://10.0.0.1/",
    "private-10-hex": "http://0x0a000001/",
    "private-172": "http://172.16.0.1/",
    "private-192": "http://192.168.1.1/",
    "cgnat": "http://100.64.0.1/",
    "multicast": "http://224.0.0.1/",
    "reserved": "http://240.0.0.1/",
    "broadcast": "http://255.255.255.255/",
    "link-local-v6": "http://[fe80::1]/",
    "link-local-v6-zone": "http://[fe80::1%25eth0]/",
    "unique-local-v6": "http://[fc00::1]/",
    "multicast-v6": "http://[ff02::1]/",
}

# Routes on the allowed image server (127.0.0.2) that redirect to a forbidden address.
REDIRECTS = {
    "302-dotted": (302, "http://127.0.0.1:{P}/cat.jpg"),
    "301-decimal": (301, "http://2130706433:{P}/cat.jpg"),
    "303-hex": (303, "http://0x7f000001:{P}/cat.jpg"),
    "307-mapped": (307, "http://[::ffff:127.0.0.1]:{P}/cat.jpg"),
    "308-localhost": (308, "http://localhost:{P}/cat.jpg"),
    "302-unspecified": (302, "http://0.0.0.0:{P}/cat.jpg"),
    "302-scheme-relative": (302, "//127.0.0.1:{P}/cat.jpg"),
    "302-metadata": (302, "http://169.254.169.254/latest/meta-data/"),
    "302-ipv6-loopback": (302, "http://[::1]:{P6}/cat.jpg"),
}
CHAIN_HOPS = 3  # /ssrf/chain/1 -> /2 -> /3 -> forbidden: the check runs on every hop


@pytest.fixture(scope="module")
def ssrf_routes(service: Service, forbidden: ForbiddenHosts) -> dict[str, str]:
    """Install the redirect routes; returns redirect id -> URL on the allowed server."""
    urls = {}
    for name, (status, template) in REDIRECTS.items():
        if "{P6}" in template and forbidden.v6 is None:
            continue
        service.images.add_route(f"/ssrf/{name}", servers.redirect(forbidden.url(template), status))
        urls[name] = service.image_url(f"ssrf/{name}")
    chain = servers.redirect_chain(
        "/ssrf/chain", CHAIN_HOPS, forbidden.url(LOOPBACK_FORMS["dotted"])
    )
    for path, handler in chain.items():
        service.images.add_route(path, handler)
    urls["chain"] = service.image_url("ssrf/chain/1")
    return urls


def test_counting_server_sees_the_service(service: Service) -> None:
    """Control: a counting server the service *may* reach counts its connection.

    Without this, ``connections == 0`` below could also mean the counter is blind.
    """
    with servers.ConnectionCountingServer("127.0.0.2") as allowed:
        response = service.predict(allowed.url("/anything.jpg"))
        assert response.status_code == 400  # it answered b"reached": not an image
        assert response.json() == INVALID_IMAGE
        assert allowed.connections == 1
        assert allowed.requests[0].headers["user-agent"].startswith("imagetagger/")


@pytest.mark.parametrize("form", LOOPBACK_FORMS, ids=str)
def test_loopback_forms_are_forbidden(service: Service, forbidden: ForbiddenHosts, form: str):
    url = forbidden.url(LOOPBACK_FORMS[form])
    response, elapsed = timed_predict(service, url)
    assert response.status_code == 403, response.text
    assert response.json() == FORBIDDEN
    assert elapsed < 2.0
    forbidden.assert_untouched()


@pytest.mark.parametrize("name", INTERNAL_LITERALS, ids=str)
def test_internal_addresses_are_refused_without_connecting(
    service: Service, forbidden: ForbiddenHosts, name: str
) -> None:
    response, elapsed = timed_predict(service, INTERNAL_LITERALS[name])
    assert response.status_code == 403, response.text
    assert response.json() == FORBIDDEN
    assert elapsed < 2.0  # nothing waited on a connect attempt
    forbidden.assert_untouched()


@pytest.mark.parametrize("name", [*REDIRECTS, "chain"], ids=str)
def test_redirect_to_forbidden_address(
    service: Service, forbidden: ForbiddenHosts, ssrf_routes: dict[str, str], name: str
) -> None:
    if name not in ssrf_routes:
        pytest.skip("no IPv6 loopback here")
    before = len(service.images.requests)
    response, elapsed = timed_predict(service, ssrf_routes[name])
    assert response.status_code == 403, response.text
    assert response.json() == FORBIDDEN
    assert elapsed < 2.0
    # The allowed hops were really fetched; the forbidden one never was.
    hops = CHAIN_HOPS if name == "chain" else 1
    assert len(service.images.requests) - before >= hops
    forbidden.assert_untouched()


def test_backslash_authority_is_refused_before_any_lookup(
    service: Service, forbidden: ForbiddenHosts
) -> None:
    # Parsers disagree on it (WHATWG: host 127.0.0.2; urlsplit: host 127.0.0.1). The
    # fetcher's parser (yarl) rejects the URL outright: nothing resolved, nothing sent.
    url = forbidden.url("http://127.0.0.2\\@127.0.0.1:{P}/")
    response = service.predict(url)
    assert response.status_code == 404, response.text
    assert response.json() == UNREACHABLE
    forbidden.assert_untouched()


def test_batch_refuses_each_forbidden_url_alone(
    service: Service, forbidden: ForbiddenHosts, ssrf_routes: dict[str, str]
) -> None:
    good = service.image_url("chelsea.jpg")
    bad = [
        *(
            forbidden.url(t)
            for t in LOOPBACK_FORMS.values()
            if forbidden.v6 is not None or "{P6}" not in t
        ),
        *INTERNAL_LITERALS.values(),
        *ssrf_routes.values(),
    ]
    assert len(bad) + 2 <= 64
    urls = [good, *bad, good]
    response = service.post("/predictions/batch", json={"urls": urls, "top": 3})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["url"] for r in results] == urls
    assert_cat_in_top3_result(results[0])
    assert_cat_in_top3_result(results[-1])
    for result in results[1:-1]:
        assert result == {"url": result["url"], **FORBIDDEN}
    forbidden.assert_untouched()


# --- hostile input from an allowed server --------------------------------------------------

CHELSEA_JPEG = (ROOT / "tests" / "data" / "chelsea.jpg").read_bytes()
HUGE = 30 * 2**20  # well over max_image_bytes


@cache
def huge_body() -> bytes:
    return images.random_bytes(HUGE, seed=1)


@cache
def chelsea_png() -> bytes:
    return images.png_bytes(images.photo())


def animated_cat(fmt: str) -> bytes:
    """An animation whose first frame is the cat and whose other frames are flat colors."""
    cat = Image.fromarray(images.photo())
    if fmt == "GIF":
        cat = cat.convert("P", palette=Image.Palette.ADAPTIVE)
    others = [Image.new(cat.mode, cat.size, color) for color in (0, 255)]
    buffer = io.BytesIO()
    cat.save(buffer, fmt, save_all=True, append_images=others, duration=100, loop=0)
    return buffer.getvalue()


@dataclass(frozen=True)
class Hostile:
    """A body served from 127.0.0.2 and the exact answer the service must give.

    ``expected`` None means 200 with a cat in the top 3. ``upload`` says whether the same
    bytes also go through ``POST /predictions`` (with the upload's own expected answer).
    """

    make: Callable[[], servers.Handler]
    status: int
    expected: dict | None
    upload: bytes | Callable[[], bytes] | None = None


def served(data: Callable[[], bytes], content_type: str = "application/octet-stream"):
    return lambda: servers.respond(data(), content_type)


HOSTILE: dict[str, Hostile] = {
    # Not images, whatever the Content-Type says.
    "truncated-jpeg": Hostile(
        served(lambda: images.truncated(CHELSEA_JPEG), "image/jpeg"), 400, INVALID_IMAGE
    ),
    "truncated-png": Hostile(
        served(lambda: images.truncated(chelsea_png()), "image/png"), 400, INVALID_IMAGE
    ),
    "jpeg-header-only": Hostile(
        served(lambda: CHELSEA_JPEG[:600], "image/jpeg"), 400, INVALID_IMAGE
    ),
    "zero-bytes": Hostile(served(lambda: b"", "image/jpeg"), 400, INVALID_IMAGE),
    "random-bytes": Hostile(served(lambda: images.random_bytes(4096)), 400, INVALID_IMAGE),
    "html": Hostile(served(lambda: images.HTML, "text/html"), 400, INVALID_IMAGE),
    "svg": Hostile(served(lambda: images.SVG, "image/svg+xml"), 400, INVALID_IMAGE),
    "json": Hostile(served(lambda: images.JSON, "image/png"), 400, INVALID_IMAGE),
    "html-then-png": Hostile(served(images.html_then_png, "image/png"), 400, INVALID_IMAGE),
    "gif-script-polyglot": Hostile(
        served(images.gif_script_polyglot, "image/gif"), 400, INVALID_IMAGE
    ),
    # A PNG with HTML appended is still a PNG: decoders stop at IEND.
    "png-then-html": Hostile(served(images.png_then_html, "text/html"), 200, None),
    # gzip is never decoded (auto_decompress off), so a 10 MiB gzip bomb is 10 KiB of junk.
    "gzip-bomb": Hostile(lambda: servers.gzip_encoded(b"\0" * (10 * 2**20)), 400, INVALID_IMAGE),
    # Decompression bombs: refused from the header, before any pixel is decoded.
    "png-bomb-20000x20000": Hostile(served(images.png_bomb, "image/png"), 413, TOO_LARGE),
    "png-bomb-10000x10000": Hostile(
        served(lambda: images.png_bomb(10000, 10000), "image/png"),
        413,
        too_many_pixels(10000, 10000),
    ),
    "jpeg-claims-65535x65535": Hostile(
        served(lambda: images.jpeg_with_header_size(65535, 65535), "image/jpeg"), 413, TOO_LARGE
    ),
    "jpeg-claims-9000x9000": Hostile(
        served(lambda: images.jpeg_with_header_size(9000, 9000), "image/jpeg"),
        413,
        too_many_pixels(9000, 9000),
    ),
    "gif-claims-65535x65535": Hostile(
        served(lambda: images.gif_with_header_size(65535, 65535), "image/gif"), 413, TOO_LARGE
    ),
    "gif-claims-9000x9000": Hostile(
        served(lambda: images.gif_with_header_size(9000, 9000), "image/gif"),
        413,
        too_many_pixels(9000, 9000),
    ),
    # 30 MiB bodies: stop at max_image_bytes whatever the framing.
    "30MiB-honest-length": Hostile(served(huge_body), 413, TOO_MANY_BYTES),
    "30MiB-chunked": Hostile(lambda: servers.chunked(huge_body(), 2**20), 413, TOO_MANY_BYTES),
    "claims-1TB-sends-10B": Hostile(
        lambda: servers.lying_length(10**12, b"x" * 10), 413, TOO_MANY_BYTES
    ),
    # A Content-Length smaller than the body: aiohttp frames the body by the declared
    # length, so the service never reads past it (no 413: it never sees 30 MiB). When the
    # surplus arrives in the same read as the response head (small claim), aiohttp's
    # parser fails on "data after Connection: close": 404. When the claim spans several
    # reads, the body ends at the claimed length before the surplus is parsed, and the
    # claimed prefix (random bytes) is decoded: 400. tests/unit/download/test_fetch.py
    # documents both.
    "30MiB-claims-1000B": Hostile(
        lambda: servers.lying_length(1000, huge_body()), 404, UNREACHABLE
    ),
    "30MiB-claims-1MiB": Hostile(
        lambda: servers.lying_length(2**20, huge_body()), 400, INVALID_IMAGE
    ),
    "closed-mid-body": Hostile(
        lambda: servers.close_mid_body(len(CHELSEA_JPEG), CHELSEA_JPEG[:5000]), 404, UNREACHABLE
    ),
    # Redirects: at most 5 are followed; only http(s) targets.
    "redirect-loop": Hostile(lambda: servers.redirect("/hostile/redirect-loop"), 404, UNREACHABLE),
    "redirect-without-location": Hostile(lambda: servers.status(302), 404, UNREACHABLE),
    "redirect-to-ftp": Hostile(
        lambda: servers.redirect("ftp://127.0.0.2/cat.jpg"), 404, UNREACHABLE
    ),
    "redirect-to-file": Hostile(lambda: servers.redirect("file:///etc/passwd"), 404, UNREACHABLE),
    # Animations: the first frame is the image.
    "animated-gif": Hostile(served(lambda: animated_cat("GIF"), "image/gif"), 200, None),
    "animated-png": Hostile(served(lambda: animated_cat("PNG"), "image/png"), 200, None),
    "animated-webp": Hostile(served(lambda: animated_cat("WEBP"), "image/webp"), 200, None),
    "mpo": Hostile(
        served(lambda: images.mpo([images.photo(), images.coffee()[:300, :451]]), "image/jpeg"),
        200,
        None,
    ),
}
for _fmt in (
    "JPEG2000",
    "PCX",
    "SGI",
    "QOI",
    "DDS",
    "ICNS",
    "IM",
    "SPIDER",
    "XBM",
    "MSP",
    "EPS",
    "PDF",
):
    HOSTILE[f"outside-allowlist-{_fmt}"] = Hostile(
        served(lambda fmt=_fmt: images.formats_outside_allowlist()[fmt]), 400, INVALID_IMAGE
    )

REDIRECT_HOPS_ALLOWED = 5


@pytest.fixture(scope="module")
def hostile_routes(service: Service) -> None:
    for name, case in HOSTILE.items():
        service.images.add_route(f"/hostile/{name}", case.make())
    for hops in (REDIRECT_HOPS_ALLOWED, REDIRECT_HOPS_ALLOWED + 1):
        for path, handler in servers.redirect_chain(f"/hops{hops}", hops, "/chelsea.jpg").items():
            service.images.add_route(path, handler)
    for name, data in images.photo_mode_variants().items():
        service.images.add_route(f"/modes/{name}", servers.respond(data))


@pytest.mark.usefixtures("hostile_routes")
@pytest.mark.parametrize("name", HOSTILE, ids=str)
def test_hostile_body_by_url(service: Service, name: str) -> None:
    case = HOSTILE[name]
    response = service.predict(service.image_url(f"hostile/{name}"), top=3)
    if case.expected is None:
        assert_cat_in_top3(response, name)
    else:
        assert response.status_code == case.status, response.text
        assert response.json() == case.expected


@pytest.mark.usefixtures("hostile_routes")
def test_five_redirects_are_followed_six_are_not(service: Service) -> None:
    allowed = service.predict(service.image_url(f"hops{REDIRECT_HOPS_ALLOWED}/1"), top=3)
    assert_cat_in_top3(allowed, "5 redirects")
    refused = service.predict(service.image_url(f"hops{REDIRECT_HOPS_ALLOWED + 1}/1"))
    assert refused.status_code == 404
    assert refused.json() == UNREACHABLE


@pytest.mark.usefixtures("hostile_routes")
def test_every_pillow_mode_by_url_is_a_cat(service: Service) -> None:
    names = list(images.photo_mode_variants())
    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(
            pool.map(lambda n: service.predict(service.image_url(f"modes/{n}"), top=3), names)
        )
    for name, response in zip(names, responses, strict=True):
        assert_cat_in_top3(response, name)


def test_slow_drip_is_cut_at_the_download_timeout(service: Service) -> None:
    """One byte a second never trips a read timeout; the whole-download deadline does."""
    timeout_s = downloader_timeout_s()
    service.images.add_route("/drip", servers.slow_drip(CHELSEA_JPEG[:64], interval_s=1.0))
    response, elapsed = timed_predict(service, service.image_url("drip"))
    assert response.status_code == 404, response.text
    assert response.json() == UNREACHABLE
    assert timeout_s - 0.5 <= elapsed < timeout_s + 3.0, elapsed


# --- validation limits ---------------------------------------------------------------------


def test_url_length_limit(service: Service) -> None:
    base = service.image_url("missing/")
    at_limit = base + "a" * (2048 - len(base))
    response = service.predict(at_limit)  # valid, fetched: the image server answers 404
    assert response.status_code == 404 and response.json() == UNREACHABLE
    assert_validation_error(service.predict(at_limit + "a"), ["query", "url"], "url_too_long")


def test_batch_size_limit(service: Service) -> None:
    url = service.image_url("missing.jpg")
    response = service.post("/predictions/batch", json={"urls": [url] * 64})
    assert response.status_code == 200, response.text
    assert response.json()["results"] == [{"url": url, **UNREACHABLE}] * 64
    too_many = service.post("/predictions/batch", json={"urls": [url] * 65})
    assert_validation_error(too_many, ["body", "urls"], "too_long")


# --- uploads -------------------------------------------------------------------------------


def upload(service: Service, data: bytes, name: str = "upload.bin") -> requests.Response:
    return service.post(
        "/predictions", params={"top": 3}, files={"file": (name, data, "application/octet-stream")}
    )


def test_upload_size_limit(service: Service) -> None:
    at_limit = upload(service, huge_body()[:MAX_BYTES])  # accepted, then not an image
    assert at_limit.status_code == 400 and at_limit.json() == INVALID_IMAGE
    for size in (MAX_BYTES + 1, HUGE):
        response = upload(service, huge_body()[:size])
        assert response.status_code == 413, (size, response.text)
        assert response.json() == TOO_LARGE


UPLOADS: dict[str, tuple[Callable[[], bytes], int, dict]] = {
    "truncated-jpeg": (lambda: images.truncated(CHELSEA_JPEG), 400, INVALID_IMAGE),
    "truncated-png": (lambda: images.truncated(chelsea_png()), 400, INVALID_IMAGE),
    "zero-bytes": (lambda: b"", 400, INVALID_IMAGE),
    "random-bytes": (lambda: images.random_bytes(4096), 400, INVALID_IMAGE),
    "html": (lambda: images.HTML, 400, INVALID_IMAGE),
    "svg": (lambda: images.SVG, 400, INVALID_IMAGE),
    "html-then-png": (images.html_then_png, 400, INVALID_IMAGE),
    "gif-script-polyglot": (images.gif_script_polyglot, 400, INVALID_IMAGE),
    "png-bomb-20000x20000": (images.png_bomb, 413, TOO_LARGE),
    "png-bomb-10000x10000": (
        lambda: images.png_bomb(10000, 10000),
        413,
        too_many_pixels(10000, 10000),
    ),
    "jpeg-claims-65535x65535": (lambda: images.jpeg_with_header_size(65535, 65535), 413, TOO_LARGE),
    "gif-claims-9000x9000": (
        lambda: images.gif_with_header_size(9000, 9000),
        413,
        too_many_pixels(9000, 9000),
    ),
    **{
        f"outside-allowlist-{fmt}": (
            lambda fmt=fmt: images.formats_outside_allowlist()[fmt],
            400,
            INVALID_IMAGE,
        )
        for fmt in ("JPEG2000", "PCX", "QOI", "EPS", "PDF")
    },
}


@pytest.mark.parametrize("name", UPLOADS, ids=str)
def test_hostile_upload(service: Service, name: str) -> None:
    make, status, expected = UPLOADS[name]
    response = upload(service, make(), name)
    assert response.status_code == status, response.text
    assert response.json() == expected


# --- still standing ------------------------------------------------------------------------


def test_service_still_serves_after_the_corpus(service: Service, forbidden: ForbiddenHosts) -> None:
    """Runs last: no hostile input took a replica down, and nothing ever reached 127.0.0.1."""
    from ray import serve

    response = service.predict(service.image_url("chelsea.jpg"))
    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0]["label"] in CATS
    status = serve.status().applications["imagetagger"]
    assert status.status == "RUNNING"
    assert {name: d.status for name, d in status.deployments.items()} == {
        "ImageTagger": "HEALTHY",
        "Downloader": "HEALTHY",
        "ModelDeployment": "HEALTHY",
    }
    forbidden.assert_untouched()
