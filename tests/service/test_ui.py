"""The /ui page in a real browser (headless Chromium) against the deployed service.

Debian's ``chromium`` and ``chromium-driver`` (``make test`` installs them) are driven by
Selenium; the tests fail, never skip, when they are missing. Each test writes a
screenshot of the page as it ended to ``test-results/ui/<test>.png``. The keys-on page
is served by one more small app, ``imagetagger-ui-keys`` at ``/ui-keys``, which also
shows that the page's relative URLs work under a route prefix. The errors the service
cannot be made to answer on demand (Overloaded, RateLimited, ...) come from a small
local FastAPI app that serves the same page and answers them as the ingress does.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse, Response

from imagetagger.api.auth import INVALID_KEY, hash_key
from imagetagger.api.errors import error_response
from imagetagger.api.ui import CONTENT_SECURITY_POLICY, ui_router
from imagetagger.errors import (
    ImageTaggerError,
    ImageTooLarge,
    Overloaded,
    RateLimited,
    UnreachableURL,
)
from tests import servers
from tests.service.helpers import (
    IMAGE_HOST,
    ROOT,
    Service,
    beside_the_session_app,
    test_serve_config,
)
from tests.service.test_security import secure_app_config

RESULTS = ROOT / "test-results" / "ui"
CHELSEA = ROOT / "tests" / "data" / "chelsea.jpg"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these three the browser's own background traffic is refused by a closed
    # network, and that shows as errors in the console the tests read.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1100,900",
)
WAIT_S = 60
KEYED_APP = "imagetagger-ui-keys"
KEYED_PREFIX = "/ui-keys"
KEY = f"it-e2e-ui-{uuid.uuid4().hex}"
FORBIDDEN_MESSAGE = (
    "The service may not fetch from that address: it is on a loopback, private or reserved network."
)


def _browser_binaries() -> tuple[str, str]:
    chromium = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.fail(
            "the browser tests need Debian's chromium and chromium-driver "
            "(apt-get install -y chromium chromium-driver; make test installs them as root); "
            f"found chromium={chromium}, chromedriver={driver}",
            pytrace=False,
        )
    return chromium, driver


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium with a fresh profile whose console log the tests can read."""
    binary, driver_path = _browser_binaries()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="ui-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=DriverService(driver_path))
    driver.set_page_load_timeout(WAIT_S)
    RESULTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def save_screenshot(driver: Any, request: pytest.FixtureRequest) -> None:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name).strip("_")
    assert driver.save_screenshot(str(RESULTS / f"{name}.png")), name


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One browser for the module's tests on the session's app."""
    for old in RESULTS.glob("*.png"):  # only this run's screenshots are left there
        old.unlink()
    with chromium() as driver:
        yield driver


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """The browser, its console emptied; the page's screenshot is written after the test."""
    browser.get_log("browser")
    yield browser
    save_screenshot(browser, request)


def open_ui(browser: Any, base_url: str) -> None:
    browser.get(base_url + "/ui")
    assert browser.title == "Image Tagger"


def element(browser: Any, element_id: str) -> Any:
    from selenium.webdriver.common.by import By

    return browser.find_element(By.ID, element_id)


def wait_until(browser: Any, condition: Any) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, WAIT_S).until(condition)


def shown_labels(browser: Any) -> list[tuple[str, str]]:
    """(label, percentage) of each row, once the result is shown."""
    from selenium.webdriver.common.by import By

    wait_until(browser, lambda b: element(b, "result").is_displayed())
    rows = browser.find_elements(By.CSS_SELECTOR, "#labels li.label")
    return [
        (
            row.find_element(By.CLASS_NAME, "name").text,
            row.find_element(By.CLASS_NAME, "value").text,
        )
        for row in rows
    ]


def shown_error(browser: Any) -> tuple[str, str]:
    wait_until(browser, lambda b: element(b, "error").is_displayed())
    return element(browser, "error-title").text, element(browser, "error-detail").text


def console_errors(browser: Any) -> list[dict[str, Any]]:
    return [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]


def set_value(browser: Any, element_id: str, value: str) -> None:
    field = element(browser, element_id)
    field.clear()
    if value:
        field.send_keys(value)


def submit_url(browser: Any, url: str) -> None:
    set_value(browser, "url", url)
    element(browser, "url-submit").click()


def percent(confidence: float) -> str:
    return f"{confidence * 100:.1f}%"


def test_the_page_loads_with_its_style_and_no_console_errors(page: Any, service: Service) -> None:
    response = service.get("/ui")
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    open_ui(page, service.base_url)
    assert element(page, "url").is_displayed() and element(page, "drop").is_displayed()
    assert not element(page, "key-form").is_displayed()  # only after a 401
    assert not element(page, "result").is_displayed()
    # ui.css applied: main is a 46rem card (the default style has no max-width).
    from selenium.webdriver.common.by import By

    main = page.find_element(By.TAG_NAME, "main")
    assert main.value_of_css_property("max-width") == "736px"
    assert console_errors(page) == []


def test_the_browser_enforces_the_csp(page: Any, service: Service) -> None:
    """An inline script added to the page does not run: the CSP is in force, not decoration."""
    open_ui(page, service.base_url)
    page.execute_script(
        "const s = document.createElement('script');"
        "s.textContent = 'window.inlineRan = true;';"
        "document.head.append(s);"
    )
    assert page.execute_script("return window.inlineRan === true;") is False
    refused = [e["message"] for e in console_errors(page)]
    assert any("Content Security Policy" in message for message in refused), refused


def test_a_file_upload_shows_the_cats_labels(page: Any, service: Service) -> None:
    files = {"file": ("chelsea.jpg", CHELSEA.read_bytes(), "image/jpeg")}
    expected = service.post("/predictions", params={"top": 5}, files=files).json()
    open_ui(page, service.base_url)
    element(page, "file").send_keys(str(CHELSEA))
    shown = shown_labels(page)
    assert shown[0][0] == expected["predictions"][0]["label"]
    assert shown == [(p["label"], percent(p["confidence"])) for p in expected["predictions"]]
    preview = element(page, "preview")
    assert preview.get_attribute("src").startswith("blob:")
    assert page.execute_script("return arguments[0].naturalWidth;", preview) > 0
    assert element(page, "source").text == "chelsea.jpg"
    assert console_errors(page) == []


def test_a_url_shows_the_coffees_labels_with_top(page: Any, service: Service) -> None:
    url = service.image_url("coffee.jpg")
    expected = service.predict(url, top=3).json()
    open_ui(page, service.base_url)
    set_value(page, "top", "3")
    submit_url(page, url)
    shown = shown_labels(page)
    assert shown[0][0] == expected["predictions"][0]["label"]
    assert shown == [(p["label"], percent(p["confidence"])) for p in expected["predictions"]]
    preview = element(page, "preview")
    assert preview.get_attribute("src") == url
    wait_until(page, lambda b: b.execute_script("return arguments[0].naturalWidth;", preview))
    assert console_errors(page) == []


def test_the_general_labels_switch_shows_cat_with_its_summed_confidence(
    page: Any, service: Service
) -> None:
    url = service.image_url("chelsea.jpg")
    expected = service.predict(url, top=3, labels="general").json()["general"]
    open_ui(page, service.base_url)
    set_value(page, "top", "3")
    element(page, "general").click()
    submit_url(page, url)
    shown = shown_labels(page)
    assert shown == [(label["label"], percent(label["confidence"])) for label in expected]
    assert "cat" in [name for name, _ in shown]
    assert console_errors(page) == []


def test_a_forbidden_url_shows_the_forbidden_message(page: Any, service: Service) -> None:
    forbidden = f"http://127.0.0.1:{service.images.port}/coffee.jpg"  # outside allowed_networks
    answer = service.predict(forbidden)
    assert answer.status_code == 403
    open_ui(page, service.base_url)
    submit_url(page, forbidden)
    title, detail = shown_error(page)
    assert title == FORBIDDEN_MESSAGE
    assert detail == answer.json()["error"]["detail"]
    assert not element(page, "result").is_displayed()


def test_invalid_parameters_show_the_validation_issues(page: Any, service: Service) -> None:
    open_ui(page, service.base_url)
    set_value(page, "top", "0")
    set_value(page, "minconf", "2")
    submit_url(page, service.image_url("coffee.jpg"))
    title, detail = shown_error(page)
    assert title == "The request was not valid."
    assert detail.splitlines() == [
        "top: Input should be greater than or equal to 1",
        "minconf: Input should be less than or equal to 1",
    ]


def test_an_image_the_service_cannot_read_shows_invalid_image(page: Any, service: Service) -> None:
    open_ui(page, service.base_url)
    submit_url(page, service.image_url("text.txt"))
    title, detail = shown_error(page)
    assert title == "That is not an image the service can read."
    assert detail == "Url is not pointing to a valid image format."


# The errors the session's service cannot be made to answer on demand, answered the way
# the ingress answers them (imagetagger.api.errors.error_response), by a small local app.
CANNED_ERRORS: dict[str, ImageTaggerError] = {
    "UnreachableURL": UnreachableURL(),
    "ImageTooLarge": ImageTooLarge(),
    "Overloaded": Overloaded(),
    "RateLimited": RateLimited(retry_after_s=7),
}


@pytest.fixture(scope="module")
def canned_errors() -> Iterator[str]:
    """The page's routes and a ``/predictions`` that answers the error its URL names."""
    import uvicorn

    app = FastAPI()
    app.include_router(ui_router)

    @app.get("/predictions")
    async def predictions(url: str) -> Response:
        name = urlsplit(url).path.strip("/")
        if name not in CANNED_ERRORS:
            return PlainTextResponse("Bad Gateway", status_code=502)  # a proxy's answer
        error = CANNED_ERRORS[name]
        return error_response(error)

    port = servers.unused_port("127.0.0.1")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT_S
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the canned-error server did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=WAIT_S)


CANNED_CASES = [
    (
        "UnreachableURL",
        "The image could not be downloaded: the URL cannot be reached.",
        "Url cannot be reached.",
    ),
    (
        "ImageTooLarge",
        "The image is larger than this service accepts.",
        "Image is larger than this service accepts.",
    ),
    (
        "Overloaded",
        "The service is busy right now; try again in a moment.",
        "The service is overloaded; retry later.",
    ),
    ("RateLimited", "Too many requests. Retry in 7 s.", "Too many requests; retry later."),
    ("bad-gateway", "The service answered HTTP 502.", ""),
]


@pytest.mark.parametrize(
    ("name", "title", "detail"), CANNED_CASES, ids=[case[0] for case in CANNED_CASES]
)
def test_each_error_answer_shows_its_message(
    page: Any, canned_errors: str, name: str, title: str, detail: str
) -> None:
    open_ui(page, canned_errors)
    submit_url(page, f"http://127.0.0.2:9/{name}")
    assert shown_error(page) == (title, detail)
    assert not element(page, "result").is_displayed()


@pytest.fixture(scope="module")
def keyed_url(service: Service) -> Iterator[str]:
    """A keys-on app beside the session's (the test_security builder, with this module's key)."""
    port = service.base_url.rsplit(":", 1)[1]
    allowed = [f"{IMAGE_HOST}/32"]
    main = test_serve_config(int(port), allowed)["applications"][0]
    app = secure_app_config(main, allowed)
    app.update(name=KEYED_APP, route_prefix=KEYED_PREFIX)
    app["runtime_env"]["env_vars"]["IMAGETAGGER_API_KEY_HASHES"] = hash_key(KEY)
    with beside_the_session_app(service, app) as url:
        yield url


@pytest.fixture
def keyed_page(keyed_url: str, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A browser of its own, started after the keys-on app was deployed.

    In the serving mode a new app makes HAProxy reload its configuration, and a
    connection kept alive from before the reload gets one more answer from the old
    process, which does not know the new prefix (a 404): the module's browser holds
    such a connection, a new browser does not.
    """
    with chromium() as driver:
        yield driver
        save_screenshot(driver, request)


def test_with_keys_on_a_missing_key_shows_the_key_prompt(
    keyed_page: Any, service: Service, keyed_url: str
) -> None:
    page = keyed_page
    url = service.image_url("coffee.jpg")
    assert requests.get(keyed_url + "/ui", timeout=30).status_code == 200  # the page: no key
    open_ui(page, keyed_url)
    assert not element(page, "key-form").is_displayed()
    submit_url(page, url)
    wait_until(page, lambda b: element(b, "key-form").is_displayed())
    assert element(page, "key-prompt").text.startswith("This service needs an API key.")
    assert not element(page, "error").is_displayed()  # a prompt, not an error, the first time
    assert page.save_screenshot(str(RESULTS / "key_prompt.png"))

    set_value(page, "key", "it-e2e-ui-wrong-key")
    element(page, "key-submit").click()
    title, detail = shown_error(page)
    assert title == "The API key was not accepted."
    assert detail == INVALID_KEY

    expected = requests.get(
        keyed_url + "/predictions",
        params={"url": url, "top": 5},
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=60,
    ).json()
    set_value(page, "key", KEY)
    element(page, "key-submit").click()
    wait_until(page, lambda b: not element(b, "error").is_displayed())
    shown = shown_labels(page)
    assert shown == [(p["label"], percent(p["confidence"])) for p in expected["predictions"]]
    # Relative URLs: the page at /ui-keys/ui called /ui-keys/predictions, not /predictions.
    assert page.current_url == keyed_url + "/ui"
