"""The Train view in a real Chromium: train on real MNIST, watch it learn, then draw for the new network.

Against a real ``digitnet serve`` on 127.0.0.1, in Debian's Chromium driven
by Playwright (see test_browser.py for how, and when it is skipped).  The
test sets a 2,000-image subset and one epoch, presses Train, waits for the
curves and the accuracy, checks that the first layer's tiles changed (the
canvas's pixels when the first weights were drawn against the last), saves
the model, presses Try it, and traces a real MNIST test digit with the
mouse for the new network to read.  A screenshot of the Train view is saved
in the test's folder, and in ``$DIGITNET_SCREENSHOT_DIR`` when that is set.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from serving import serving
from test_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    PageWatch,
    _require,
    draw,
    requests_sent,
    trace_strokes,
    wait_for,
    wait_until_settled,
)

from digitnet.data import load_mnist

REPO = Path(__file__).resolve().parents[1]

#: A test digit (a 7) whose mouse-traced version the network this test trains reads right, with a margin.
TRACED = 0

#: Keeps the pixels of the weights canvas each time the page draws new tiles (it sets data-step
#: then); a MutationObserver runs before the next event is handled, so no frame is missed.
RECORD_WEIGHT_FRAMES = """
window.__weightFrames = [];
document.addEventListener("DOMContentLoaded", () => {
  const canvas = document.getElementById("t-weights");
  new MutationObserver(() => {
    const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    window.__weightFrames.push({ step: Number(canvas.dataset.step), pixels: Array.from(data) });
  }).observe(canvas, { attributes: true, attributeFilter: ["data-step"] });
});
"""


@pytest.fixture(scope="module")
def server_url(small_model_path):
    """``digitnet serve`` with the shared small model, on a free port of 127.0.0.1."""
    with serving(str(small_model_path)) as url:
        yield url


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


def text(page, selector: str) -> str:
    return page.inner_text(selector).strip()


@pytest.mark.browser
def test_train_watch_it_learn_then_draw_for_it(browser, server_url, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.add_init_script(RECORD_WEIGHT_FRAMES)
    watch = PageWatch(page, server_url)
    page.goto(server_url + "/#train")
    wait_for(page, "document.querySelectorAll('#t-preset option').length > 1")
    assert page.locator("#train-view").is_visible() and not page.locator("#draw-view").is_visible()
    # The controls come from the server's registries: valid output + loss pairs only.
    pairs = page.eval_on_selector_all("#t-output-loss option", "options => options.map(o => o.value)")
    assert "softmax|cross_entropy" in pairs and "relu|cross_entropy" not in pairs and "relu|mse" in pairs
    assert text(page, "#t-lr-value") == "0.1" and "too high" in text(page, "#t-lr-hint")

    page.fill("#t-subset", "2000")
    page.fill("#t-epochs", "1")
    page.click("#t-train")
    # The curves get their points and the accuracy a number.
    wait_for(page, "+(document.querySelector('#t-loss').dataset.points || 0) >= 5", timeout=60)
    wait_for(page, "/[0-9]/.test(document.querySelector('#t-accuracy').textContent)", timeout=60)
    wait_for(page, "['done', 'diverged', 'cancelled', 'error'].includes(document.body.dataset.train)", timeout=120)
    assert page.evaluate("document.body.dataset.train") == "done", text(page, "#t-status")
    accuracy = text(page, "#t-accuracy")
    assert re.fullmatch(r"\d+\.\d%", accuracy) and float(accuracy[:-1]) > 50, accuracy
    assert text(page, "#t-epoch") == "1 / 1"
    assert int(page.evaluate("document.querySelector('#t-loss').dataset.points")) >= 8

    # The first layer's tiles, as first drawn (the initial weights) and as last drawn, differ.
    frames = page.evaluate("window.__weightFrames.map(f => ({step: f.step, n: f.pixels.length}))")
    assert frames[0]["step"] == 0 and frames[-1]["step"] == 32 and frames[0]["n"] == frames[-1]["n"]
    changed = page.evaluate("""(() => {
        const a = window.__weightFrames[0].pixels, b = window.__weightFrames.at(-1).pixels;
        let n = 0;
        for (let i = 0; i < a.length; i += 4) if (a[i] !== b[i] || a[i + 1] !== b[i + 1] || a[i + 2] !== b[i + 2]) n++;
        return n; })()""")
    assert changed > 0.2 * frames[0]["n"] / 4, changed     # a good share of the tiles' pixels

    screenshot = tmp_path / "train-view.png"
    page.screenshot(path=str(screenshot), full_page=True)
    if os.environ.get("DIGITNET_SCREENSHOT_DIR"):
        target = Path(os.environ["DIGITNET_SCREENSHOT_DIR"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, target / screenshot.name)

    # Save: the server writes the model file and the page names it.
    page.click("#t-save")
    wait_for(page, "!!document.querySelector('#t-saved').dataset.name")
    name = page.get_attribute("#t-saved", "data-name")
    assert re.fullmatch(r"web-best-[0-9a-f]{12}\.npz", name), name

    # Try it: the Draw view now reads with the network just trained.
    page.click("#t-try")
    wait_for(page, "document.body.dataset.view === 'draw'")
    wait_for(page, "document.querySelector('#model-info').textContent.includes('784 \u2192 256 \u2192 128 \u2192 10')")
    X, y = load_mnist("test")
    before = requests_sent(page)
    draw(page, trace_strokes(X[TRACED]))
    wait_until_settled(page, before)
    assert page.evaluate("document.body.dataset.state") == "predicted"
    assert text(page, "#digit") == str(y[TRACED]), f"traced test digit {TRACED} read as {text(page, '#digit')}"
    assert page.locator("#layers canvas").count() == 2          # the new network's two hidden layers

    assert watch.foreign == [], f"the page loaded something from elsewhere: {watch.foreign}"
    assert watch.errors == []
    page.close()
