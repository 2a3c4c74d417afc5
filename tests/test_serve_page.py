"""The draw-a-digit page in a real headless Chromium: digits drawn with mouse events, an upload, offline.

Chromium runs with a proxy that does not exist for everything but loopback addresses, so
the page works only if it needs nothing from the network; every URL the browser requested
is checked afterwards to be the server's own (or a data:/blob: URL). Screenshots are saved
to ``runs/test_artifacts/`` (``$TEST_ARTIFACTS_DIR`` elsewhere) to look at.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from conftest import REPO, chromedriver, chromium

pytestmark = pytest.mark.browser

ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS_DIR") or REPO / "runs" / "test_artifacts")
WAIT = 30  # seconds for the page to show an answer

# Digits as strokes in a unit box (x right, y down), the way people draw them.
SEVEN = [[(0.15, 0.1), (0.85, 0.1), (0.45, 0.95)]]
FOUR = [[(0.55, 0.05), (0.12, 0.62), (0.9, 0.62)], [(0.62, 0.3), (0.62, 1.0)]]
TWO = [[(0.15, 0.3), (0.3, 0.08), (0.62, 0.05), (0.8, 0.25), (0.65, 0.52), (0.15, 0.95), (0.88, 0.95)]]
THREE = [[(0.2, 0.15), (0.45, 0.03), (0.75, 0.1), (0.8, 0.28), (0.5, 0.47), (0.82, 0.6), (0.84, 0.82),
          (0.55, 0.97), (0.18, 0.88)]]
ZERO = [[(0.5 + 0.35 * math.sin(t / 16 * 2 * math.pi), 0.5 - 0.47 * math.cos(t / 16 * 2 * math.pi))
         for t in range(17)]]


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1000,800",
                     "--no-first-run", "--disable-background-networking", "--disable-component-update",
                     "--proxy-server=127.0.0.1:9",  # nothing listens there: every non-loopback request fails
                     "--force-prefers-reduced-motion",  # the bars take their width at once, no animation to wait for
                     "--disable-features=Translate,OptimizationHints,MediaRouter"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(chromedriver()))
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def page(browser, served):
    """The page, freshly loaded; afterwards: no request left this machine, no error in the console."""
    browser.get_log("performance")  # drop what came before
    browser.get(f"{served.url}/")
    yield browser
    urls = [json.loads(entry["message"])["message"]["params"]["request"]["url"]
            for entry in browser.get_log("performance")
            if json.loads(entry["message"])["message"]["method"] == "Network.requestWillBeSent"]
    assert urls, "the performance log recorded no request"
    elsewhere = [url for url in urls if not url.startswith((served.url + "/", "data:", "blob:"))]
    assert not elsewhere, f"the page requested {elsewhere}"
    errors = [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"
              and "/predict - Failed to load resource: the server responded with a status of 4" not in entry["message"]]
    assert not errors, errors  # (a refused upload's 4xx is logged by Chromium itself, and expected)


def draw(driver, strokes, box=(0.1, 0.1, 0.8), pointer: str = "mouse"):
    """Draw ``strokes`` with mouse (or touch) events, scaled into ``box`` = (left, top, side), pad fractions."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.actions import interaction
    from selenium.webdriver.common.actions.pointer_input import PointerInput

    pad = driver.find_element("id", "pad")
    side = pad.size["width"]
    left, top, scale = box

    def offset(point):  # Selenium offsets are from the element's centre
        return round((left + point[0] * scale - 0.5) * side), round((top + point[1] * scale - 0.5) * side)

    for stroke in strokes:
        device = PointerInput(interaction.POINTER_TOUCH if pointer == "touch" else interaction.POINTER_MOUSE, pointer)
        actions = ActionChains(driver, duration=5, devices=[device])
        actions.move_to_element_with_offset(pad, *offset(stroke[0])).click_and_hold()
        for (x0, y0), (x1, y1) in zip(stroke, stroke[1:]):
            steps = max(1, round(math.dist((x0, y0), (x1, y1)) * scale * side / 12))  # a move every ~12 px
            for k in range(1, steps + 1):
                actions.move_to_element_with_offset(pad, *offset((x0 + (x1 - x0) * k / steps,
                                                                  y0 + (y1 - y0) * k / steps)))
        actions.release().perform()


def answer_shown(driver, requests_before: int) -> dict:
    """What the page shows once the answer to its next ``/predict`` request is in (``requests_before`` were sent)."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, WAIT).until(lambda d: _sent(d) > requests_before and d.execute_script(
        "return ['done', 'error'].includes(document.body.dataset.state)"))
    return shown(driver)


def _sent(driver) -> int:
    return driver.execute_script("return performance.getEntriesByType('resource')"
                                 ".filter(e => e.name.endsWith('/predict')).length")


def shown(driver) -> dict:
    """What the page shows: the digit, the agreement line, each backend's bar widths (fractions), the error."""
    return driver.execute_script("""
        const bars = (backend) => [...document.querySelectorAll(`#bars .bar.${backend}`)].map(
            (bar) => bar.getBoundingClientRect().width / bar.parentElement.getBoundingClientRect().width);
        const seen = document.getElementById('seen');
        return {state: document.body.dataset.state, digit: document.getElementById('digit').textContent,
                agreement: document.getElementById('agreement').textContent,
                error: document.getElementById('error').textContent,
                torch: bars('torch'), keras: bars('keras'), onnx: bars('onnx'),
                seen: seen.hidden ? null : [seen.src.slice(0, 22), seen.naturalWidth, seen.naturalHeight],
                input: seen.hidden ? null : seen.src,
                undo: !document.getElementById('undo').disabled};
    """)


def assert_digit_shown(view: dict, digit: int) -> None:
    """``digit`` shown, the three backends' bars drawn (the digit's the longest), agreement said, the 28x28 input
    shown."""
    assert view["state"] == "done" and view["error"] == "", view
    assert view["digit"] == str(digit), view
    for backend in ("torch", "keras", "onnx"):
        widths = view[backend]
        assert len(widths) == 10 and max(range(10), key=widths.__getitem__) == digit, (backend, widths)
        assert widths[digit] > 0.5, (backend, widths)
    assert view["agreement"].startswith("PyTorch, Keras and ONNX Runtime agree"), view
    assert view["seen"] == ["data:image/png;base64,", 28, 28], view


def save_screenshot(driver, name: str) -> Path:
    from PIL import Image

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"serve_page_{name}.png"
    assert driver.save_screenshot(str(path))
    assert Image.open(path).size[0] >= 800
    return path


def test_a_drawn_digit_is_recognised_by_both_backends_and_undo_and_clear_work(page):
    draw(page, SEVEN, box=(0.15, 0.1, 0.75))
    view = answer_shown(page, 0)
    assert_digit_shown(view, 7)
    assert view["undo"]
    save_screenshot(page, "seven")
    draw(page, [[(0.1, 0.5), (0.9, 0.5)]], box=(0.15, 0.1, 0.75))  # a bar across the 7
    crossed = answer_shown(page, 1)
    assert crossed["input"] != view["input"]  # the model saw the extra stroke
    page.find_element("id", "undo").click()  # back to the plain 7, pixel for pixel
    undone = answer_shown(page, 2)
    assert_digit_shown(undone, 7)
    assert undone["input"] == view["input"]
    page.find_element("id", "clear").click()
    cleared = shown(page)
    assert cleared["digit"] == "–" and cleared["seen"] is None and not cleared["undo"]
    assert max(cleared["torch"] + cleared["keras"] + cleared["onnx"]) == 0


@pytest.mark.parametrize("name, strokes, digit, box, thick, pointer", [
    ("small", THREE, 3, (0.66, 0.62, 0.22), False, "mouse"),  # about 60 px tall, in the bottom-right corner
    ("off_centre", FOUR, 4, (0.03, 0.03, 0.45), False, "mouse"),  # in the top-left quarter
    ("thick", TWO, 2, (0.12, 0.1, 0.78), True, "mouse"),  # the widest pen
    ("thick_small", ZERO, 0, (0.05, 0.55, 0.35), True, "mouse"),
    ("touch", SEVEN, 7, (0.3, 0.2, 0.6), False, "touch"),  # a finger on a touch screen
])
def test_digits_drawn_small_off_centre_thick_or_by_touch(page, name, strokes, digit, box, thick, pointer):
    from selenium.webdriver.common.keys import Keys

    if thick:
        page.find_element("id", "pen").send_keys(Keys.END)  # the slider to its widest
    draw(page, strokes, box=box, pointer=pointer)
    assert_digit_shown(answer_shown(page, 0), digit)
    save_screenshot(page, name)


def test_an_uploaded_picture_is_predicted(page, seed_png):
    page.find_element("id", "file").send_keys(str(seed_png))
    view = answer_shown(page, 0)
    assert_digit_shown(view, 4)
    assert view["undo"]  # the picture is on the pad, and can be taken off
    save_screenshot(page, "upload")


def test_an_unusable_upload_shows_the_servers_reason(page, tmp_path):
    blank = tmp_path / "blank.png"
    from PIL import Image

    Image.new("RGB", (200, 200), "white").save(blank)
    page.find_element("id", "file").send_keys(str(blank))
    view = answer_shown(page, 0)
    assert view["state"] == "error" and "nothing is drawn on it" in view["error"], view


def test_a_disagreement_is_shown(page, seed_png):
    """Two different models may disagree: the page says so (an answer of the server, with Keras' digit changed)."""
    import requests

    answer = requests.post(page.current_url.rstrip("/") + "/predict", data=seed_png.read_bytes(),
                           headers={"Content-Type": "image/png"}, timeout=WAIT).json()
    answer["keras"]["probabilities"] = answer["keras"]["probabilities"][::-1]  # its 4 becomes a 5
    answer["keras"]["digit"], answer["agree"] = 5, False
    page.execute_script("show(arguments[0])", answer)
    view = shown(page)
    assert view["agreement"] == "PyTorch says 4, Keras says 5, ONNX Runtime says 4", view
    assert page.find_element("id", "agreement").get_attribute("class") == "disagree"
    assert max(range(10), key=view["torch"].__getitem__) == 4 and max(range(10), key=view["keras"].__getitem__) == 5
