"""The drawing page in a real Chromium: draw real MNIST digits with the mouse.

Needs Debian's Chromium (``apt-get install chromium``) at /usr/bin/chromium
and the ``playwright`` Python package (its own browser downloads are never
used).  Without them the test is skipped, unless ``DIGITNET_REQUIRE_BROWSER=1``
(CI), where that is a failure.  A screenshot of the page is saved in the
test's temporary folder and, when ``DIGITNET_SCREENSHOT_DIR`` is set, there too.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from digitnet import Network
from digitnet.data import load_mnist
from digitnet.files.modelfile import load_model

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

#: MNIST test digits whose mouse-traced version the test model reads right,
#: with clear margins (chosen by tracing the first 30; 28 of them are read
#: right): a 7, a 5, a 6 and a 3, of 1 to 6 strokes.
TRACED_DIGITS = (0, 23, 22, 18)


def _require(condition: bool, reason: str) -> None:
    if condition:
        return
    if os.environ.get("DIGITNET_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (DIGITNET_REQUIRE_BROWSER=1, so this is a failure)")
    pytest.skip(reason)


# ---------------------------------------------------------------------------
# turning an MNIST digit into mouse strokes

_NEIGHBOURS = [(-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1)]  # clockwise from north


def thin(ink: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning of a boolean image ``(H, W)``: a one-pixel-wide skeleton."""
    img = np.pad(ink.astype(bool), 1)
    changed = True
    while changed:
        changed = False
        for phase in (0, 1):
            remove = []
            for r, c in zip(*np.nonzero(img)):
                ring = [img[r + dr, c + dc] for dr, dc in _NEIGHBOURS]
                filled = sum(ring)
                transitions = sum(not ring[k] and ring[(k + 1) % 8] for k in range(8))
                north, east, south, west = ring[0], ring[2], ring[4], ring[6]
                if phase == 0:
                    ok = not (north and east and south) and not (east and south and west)
                else:
                    ok = not (north and east and west) and not (north and south and west)
                if 2 <= filled <= 6 and transitions == 1 and ok:
                    remove.append((r, c))
            for r, c in remove:
                img[r, c] = False
            changed = changed or bool(remove)
    return img[1:-1, 1:-1]


def trace_strokes(x: np.ndarray, level: float = 0.35) -> list[list[tuple[int, int]]]:
    """Pen strokes ``[[(row, col), ...], ...]`` that retrace an MNIST digit ``(784,)``.

    The ink is thinned to a skeleton, which is then walked greedily: start at
    an end of a line (or the topmost pixel of a loop), keep stepping to an
    unvisited neighbouring skeleton pixel (straight on when possible), and
    lift the pen when there is none.
    """
    skeleton = thin(x.reshape(28, 28) > level)
    remaining = {(int(r), int(c)) for r, c in zip(*np.nonzero(skeleton))}

    def free_neighbours(p):
        return [(p[0] + dr, p[1] + dc) for dr, dc in _NEIGHBOURS if (p[0] + dr, p[1] + dc) in remaining]

    strokes = []
    while remaining:
        ends = [p for p in remaining if len(free_neighbours(p)) <= 1]
        point = min(ends or remaining)
        stroke = [point]
        remaining.discard(point)
        heading = None
        while True:
            options = free_neighbours(point)
            if not options:
                break
            if heading is not None:
                # Prefer going straight on: smallest turn from the current heading.
                options.sort(key=lambda q: -((q[0] - point[0]) * heading[0] + (q[1] - point[1]) * heading[1]))
            nxt = options[0]
            heading = (nxt[0] - point[0], nxt[1] - point[1])
            stroke.append(nxt)
            remaining.discard(nxt)
            point = nxt
        strokes.append(stroke)
    return strokes


# ---------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def network(small_model_path) -> Network:
    """The shared small model ([784, 64, 10], ~95%), loaded from its real model file."""
    return load_model(small_model_path)


@pytest.fixture(scope="module")
def server_url(network):
    """The real app on uvicorn, in a thread, on a free loopback port."""
    pytest.importorskip("fastapi")
    uvicorn = pytest.importorskip("uvicorn")
    from digitnet.app.web.app import create_app

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = uvicorn.Server(uvicorn.Config(create_app(network), log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture(scope="module")
def browser():
    _require(CHROMIUM.exists(), f"{CHROMIUM} is missing: apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _require(False, "the playwright Python package is missing: pip install playwright")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


# ---------------------------------------------------------------------------
# the test


class PageWatch:
    """Counts the page's requests, errors and concurrent /api/predict calls."""

    def __init__(self, page, origin: str):
        self.origin = origin
        self.foreign: list[str] = []
        self.errors: list[str] = []
        self.in_flight = 0
        self.most_in_flight = 0
        page.on("request", self._request)
        page.on("requestfinished", self._done)
        page.on("requestfailed", self._done)
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        page.on("console", lambda msg: msg.type == "error" and self.errors.append(f"console: {msg.text}"))

    def _request(self, request):
        if not request.url.startswith(self.origin):
            self.foreign.append(request.url)
        if request.url.endswith("/api/predict"):
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)

    def _done(self, request):
        if request.url.endswith("/api/predict"):
            self.in_flight -= 1


def wait_for(page, expression: str, timeout: float = 15.0) -> None:
    """Poll a JavaScript expression until it is true.

    Not ``page.wait_for_function``: that evaluates its predicate with
    ``eval``, which the page's Content-Security-Policy rightly forbids, and
    the test runs under the page's real policy.
    """
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {expression}")
        page.wait_for_timeout(25)


def state(page) -> str:
    return page.evaluate("document.body.dataset.state")


def wait_until_settled(page, requests_before: int) -> None:
    """Wait until a prediction asked for after ``requests_before`` requests is shown."""
    wait_for(page, "document.body.dataset.state !== 'pending' && "
                   f"+(document.body.dataset.requests || 0) > {int(requests_before)}")


def requests_sent(page) -> int:
    return int(page.evaluate("+(document.body.dataset.requests || 0)"))


def draw(page, strokes, *, pause_mid_stroke: bool = False) -> None:
    """Trace ``strokes`` (28x28 grid coordinates) on the 280x280 pad with the mouse."""
    box = page.locator("#pad").bounding_box()
    scale = box["width"] / 28

    def to_screen(point):
        row, col = point
        return box["x"] + (col + 0.5) * scale, box["y"] + (row + 0.5) * scale

    for k, stroke in enumerate(strokes):
        page.mouse.move(*to_screen(stroke[0]))
        page.mouse.down()
        for i, point in enumerate(stroke[1:], start=1):
            page.mouse.move(*to_screen(point))
            if pause_mid_stroke and k == 0 and i == len(stroke) // 2:
                # Still drawing: the page must already show a guess.
                wait_for(page, "document.body.dataset.state === 'predicted'")
                assert page.inner_text("#digit").strip() != ""
        page.mouse.up()


@pytest.mark.browser
def test_drawing_page_reads_traced_mnist_digits(browser, server_url, network, tmp_path):
    X, y = load_mnist("test")
    page = browser.new_page(viewport={"width": 1000, "height": 760})
    watch = PageWatch(page, server_url)
    page.goto(server_url + "/")
    wait_for(page, "document.querySelector('#model-info').textContent.includes('parameters')")

    # An empty pad asks for a digit, guesses nothing, and does not scroll when touched.
    assert state(page) == "empty"
    assert page.inner_text("#message") == "draw a digit" and page.inner_text("#digit") == ""
    assert page.evaluate("getComputedStyle(document.querySelector('#pad')).touchAction") == "none"
    assert page.locator("#bars li").count() == 10

    for n, index in enumerate(TRACED_DIGITS):
        strokes = trace_strokes(X[index])
        before = requests_sent(page)
        draw(page, strokes, pause_mid_stroke=(n == 0))
        wait_until_settled(page, before)
        assert state(page) == "predicted"
        shown = page.inner_text("#digit").strip()
        assert shown == str(y[index]), f"traced test digit {index} ({len(strokes)} strokes) read as {shown}"
        # The top bar is the one highlighted, and the 28x28 input view shows ink.
        assert page.inner_text("#bars li.top .label") == shown
        assert page.evaluate(
            "(() => { const c = document.querySelector('#input-view').getContext('2d');"
            " return Math.max(...c.getImageData(0, 0, 28, 28).data.filter((_, i) => i % 4 === 0)); })()"
        ) > 200
        assert page.locator("#layers canvas").count() == 1
        if n == len(TRACED_DIGITS) - 1:
            screenshot = tmp_path / "drawing-page.png"
            page.screenshot(path=str(screenshot), full_page=True)
            if os.environ.get("DIGITNET_SCREENSHOT_DIR"):
                target = Path(os.environ["DIGITNET_SCREENSHOT_DIR"])
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy(screenshot, target / screenshot.name)
        # Clear: the button, then Esc, each bring back "draw a digit".
        if n % 2 == 0:
            page.click("#clear")
        else:
            page.keyboard.press("Escape")
        assert state(page) == "empty"
        assert page.inner_text("#message") == "draw a digit" and page.inner_text("#digit") == ""
        assert page.locator("#bars li.top").count() == 0

    # The random test digit button: the page shows which one, and reads it as the network does.
    before = requests_sent(page)
    page.click("#sample")
    wait_until_settled(page, before)
    info = page.locator("#sample-info")
    assert info.is_visible()
    index = int(info.get_attribute("data-index"))
    assert int(info.get_attribute("data-label")) == y[index]
    assert page.inner_text("#digit").strip() == str(int(network.predict(X[index])[0]))
    page.keyboard.press("Escape")
    assert page.inner_text("#message") == "draw a digit" and not info.is_visible()

    assert screenshot.stat().st_size > 10_000
    assert watch.most_in_flight == 1, "more than one prediction request in flight"
    assert watch.foreign == [], f"the page loaded something from elsewhere: {watch.foreign}"
    assert watch.errors == []
    page.close()


@pytest.mark.browser
def test_touch_drawing_does_not_scroll_the_page(browser, server_url):
    """A finger dragged down the pad draws (a 1) instead of scrolling the page."""
    context = browser.new_context(viewport={"width": 390, "height": 700}, has_touch=True, is_mobile=True)
    page = context.new_page()
    page.goto(server_url + "/")
    wait_for(page, "document.querySelector('#model-info').textContent.includes('parameters')")
    assert page.evaluate("document.documentElement.scrollHeight > innerHeight + 200"), "page should scroll"
    cdp = context.new_cdp_session(page)

    def swipe(x, y0, y1, steps=24):
        points = [{"x": x, "y": y0 + (y1 - y0) * k / steps} for k in range(steps + 1)]
        cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [points[0]]})
        for point in points[1:]:
            cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [point]})
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})

    box = page.locator("#pad").bounding_box()
    before = requests_sent(page)
    swipe(box["x"] + box["width"] / 2, box["y"] + 30, box["y"] + box["height"] - 30)
    wait_until_settled(page, before)
    assert page.evaluate("scrollY") == 0
    assert page.inner_text("#digit").strip() == "1"
    # The same gesture outside the pad does scroll: the check above can fail.
    swipe(box["x"] + box["width"] / 2, 680, 300)
    wait_for(page, "scrollY > 100", timeout=5)
    context.close()
