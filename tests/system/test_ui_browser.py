"""The web UI in a real browser: Debian's chromium driven by Playwright against a real `vigil server`
on 127.0.0.1 holding ~20 synthetic node_exporter-shaped hosts (bench/ui_fleet.py, remote write).

Each page at 1280 px and at phone width, light and dark: no console errors, every chart drew (its
canvas has painted pixels), the theme applies, and no request leaves the server's origin (all
requests are intercepted; anything else is aborted and fails the test). The time picker, a
drag-zoom on a chart, the time-zone switch, auto-refresh and the theme switch change the URL and the
queries. Screenshots go to test-artifacts/ui/. Skipped only when chromium or Playwright is missing.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest
from bench.ui_fleet import HEADERS, XSS, fleet, instance, send
from playwright import sync_api

from tests.conftest import VigilProcess
from vigil.model.event import Event

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parents[2] / "test-artifacts" / "ui"
HOSTS = 20
SIZES = {"desktop": (1280, 900), "phone": (390, 844)}
PAGES = {
    "overview": "/",
    "hosts": "/hosts",
    "host": "/hosts/" + quote(instance(3), safe=""),
    "xss": "/hosts/" + quote(XSS, safe=""),
    "events": "/events",
    "security": "/security",
}
MAX_ASSET_BYTES = 300 * 1024  # the page-weight budget (JS+CSS, uncompressed)

if shutil.which(CHROMIUM) is None:
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is missing; `make test` installs Debian's chromium", pytrace=False)
    pytest.skip(f"{CHROMIUM} is missing (`make peers` installs Debian's chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VigilProcess]:
    v = VigilProcess(tmp_path_factory.mktemp("ui") / "data").start()
    with httpx.Client(timeout=60) as c:
        send(
            fleet(HOSTS, 240, int(time.time() * 1000)),
            lambda p: c.post(v.url + "/api/v1/write", content=p, headers=HEADERS).status_code,
        )
        evil = Event(
            int(time.time() * 1000) - 60_000,
            "auth",
            "Failed password for <script>alert(2)</script>",
            {"user": "<b>root</b>"},
            {"instance": XSS},
            "e1",
        )
        r = c.post(
            v.url + "/api/v1/events",
            content=evil.to_json() + "\n",
            headers={"Content-Type": "application/x-ndjson"},
        )
        assert r.status_code == 200, r.text
    yield v
    v.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield b
        b.close()


class Session:
    """One browser context on the server: every request recorded, any to another origin aborted."""

    def __init__(self, browser: Any, server: VigilProcess, size: str, scheme: str) -> None:
        w, h = SIZES[size]
        self.origin = server.url
        self.context = browser.new_context(viewport={"width": w, "height": h}, color_scheme=scheme)
        self.requests: list[str] = []
        self.foreign: list[str] = []
        self.ranges: list[dict[str, list[str]]] = []
        self.errors: list[str] = []
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("response", self._response)

    def _route(self, route: Any) -> None:
        url = route.request.url
        self.requests.append(url)
        if url.startswith(self.origin + "/"):
            route.continue_()
        else:
            self.foreign.append(url)
            route.abort()

    def _response(self, response: Any) -> None:
        req = response.request
        if urlsplit(req.url).path == "/api/v1/query_range":
            self.ranges.append(parse_qs(req.post_data or ""))

    def open(self, path: str) -> None:
        self.page.goto(self.origin + path)
        self.wait_charts()

    def wait_charts(self) -> None:
        self.page.wait_for_function(
            "() => [...document.querySelectorAll('.chart')].every(e => e.hasAttribute('data-drawn')"
            " || e.querySelector('.chart-msg'))",
            timeout=60_000,
        )

    def painted(self) -> list[int]:
        """Per chart: its canvas' pixels that are not the (transparent) background."""
        return self.page.evaluate(
            """() => [...document.querySelectorAll('.chart')].map(el => {
                 const c = el.querySelector('canvas'); if (!c) return 0;
                 const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                 let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; })"""
        )

    def assets(self) -> int:
        """Bytes of JS and CSS the page loaded (uncompressed), from the Resource Timing API."""
        return int(
            self.page.evaluate(
                """() => performance.getEntriesByType('resource')
                     .filter(e => /[.](js|css)$/.test(new URL(e.name).pathname))
                     .reduce((n, e) => n + e.decodedBodySize, 0)"""
            )
        )

    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.page.url).query)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def session(browser: Any, server: VigilProcess) -> Iterator[Session]:
    s = Session(browser, server, "desktop", "light")
    yield s
    assert not s.foreign, s.foreign
    s.close()


def luminance(rgb: str) -> float:
    r, g, b = (int(x) for x in rgb[rgb.index("(") + 1 : rgb.index(")")].split(",")[:3])
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("name", list(PAGES))
def test_page_renders(browser: Any, server: VigilProcess, name: str, size: str, scheme: str) -> None:
    s = Session(browser, server, size, scheme)
    try:
        s.open(PAGES[name])
        charts = s.page.locator(".chart").count()
        painted = s.painted()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        s.page.screenshot(path=str(ARTIFACTS / f"{name}-{size}-{scheme}.png"), full_page=True)
        assert s.errors == [], s.errors
        assert not s.foreign, s.foreign
        assert all(u.startswith(server.url + "/") for u in s.requests)
        if name not in ("hosts", "events"):
            assert charts >= 3 and len(painted) == charts
            assert all(n > 500 for n in painted), painted  # every chart drew lines, axes and grid
        bg = luminance(s.page.evaluate("getComputedStyle(document.body).backgroundColor"))
        assert (bg < 0.3) if scheme == "dark" else (bg > 0.8), bg
        # The hostile instance is text: no element was made from it.
        assert s.page.locator("img[src=x], main script, main b").count() == 0
        # The page fits the viewport's width (the phone layout wraps instead of scrolling sideways).
        overflow = s.page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, overflow
        assets = s.assets()
        assert 50_000 < assets <= MAX_ASSET_BYTES, assets  # uPlot alone is 51 KB: all were counted
        print(f"{name} {size} {scheme}: {charts} charts, JS+CSS {assets / 1024:.1f} KB")
    finally:
        s.close()


def span_s(q: dict[str, list[str]]) -> float:
    return float(q["end"][0]) - float(q["start"][0])


def test_time_picker_changes_the_url_and_the_queries(session: Session) -> None:
    session.open("/")
    assert session.ranges and all(span_s(q) <= 3600 for q in session.ranges)
    session.ranges.clear()
    with session.page.expect_navigation():
        session.page.select_option("#range", "6h")
    session.wait_charts()
    assert session.query()["range"] == ["6h"]
    assert session.ranges and all(5.9 * 3600 <= span_s(q) <= 6 * 3600 for q in session.ranges)
    # The step follows the range and the chart's width (a point per pixel or fewer, not below the
    # scrape interval); rates use max(step + scrape, 4 x scrape).
    width = session.page.locator(".chart").first.bounding_box()["width"]
    for q in session.ranges:
        step = float(q["step"][0])
        assert step >= 15 and span_s(q) / step <= width, (step, width)
        assert "$" not in q["query"][0]
        if "rate(" in q["query"][0]:
            assert f"[{int(max(step + 15, 60))}s]" in q["query"][0], q["query"][0]
    # A custom range: the inputs show the view's bounds (here in UTC); Apply sets from/to.
    with session.page.expect_navigation():
        session.page.select_option("#tz", "utc")
    session.page.select_option("#range", "custom")
    assert session.page.locator("#from-input").is_visible()
    assert session.page.locator("button.apply").is_visible()
    session.page.fill("#from-input", "2026-01-02T03:04:05")
    session.page.fill("#to-input", "2026-01-02T05:04:05")
    with session.page.expect_navigation():
        session.page.click("button.apply")
    q = session.query()
    assert "range" not in q and q["from"] == ["1767323045"] and q["to"] == ["1767330245"], q
    assert session.page.input_value("#from-input") == "2026-01-02T03:04:05"  # shown back as given


def test_drag_zoom_sets_the_range_in_the_url(session: Session) -> None:
    session.open("/")
    over = session.page.locator(".chart .u-over").first
    box = over.bounding_box()
    assert box is not None
    y = box["y"] + box["height"] / 2
    with session.page.expect_navigation():
        session.page.mouse.move(box["x"] + box["width"] * 0.3, y)
        session.page.mouse.down()
        session.page.mouse.move(box["x"] + box["width"] * 0.5, y, steps=5)
        session.page.mouse.move(box["x"] + box["width"] * 0.6, y, steps=5)
        session.page.mouse.up()
    q = session.query()
    width = float(q["to"][0]) - float(q["from"][0])
    assert "range" not in q and 0.2 * 3600 < width < 0.4 * 3600, q  # about 30 % of the hour
    session.ranges.clear()
    session.wait_charts()
    assert session.ranges and all(span_s(r) <= width for r in session.ranges)
    assert session.errors == []


def test_time_zone_refresh_and_theme_switches(session: Session) -> None:
    session.open("/hosts")
    with session.page.expect_navigation():
        session.page.select_option("#tz", "utc")
    assert session.query()["tz"] == ["utc"]
    assert session.page.locator("time").first.inner_text().endswith("UTC")
    with session.page.expect_navigation():
        session.page.select_option("#refresh", "10s")
    assert session.query()["refresh"] == ["10s"]
    with session.page.expect_navigation(timeout=60_000):  # the page reloads itself
        pass
    assert session.query()["refresh"] == ["10s"] and session.query()["tz"] == ["utc"]
    # Theme: system -> light -> dark; stored, and in the URL (so the link shows the same).
    root = session.page.locator("html")
    session.page.click("#theme-toggle")
    assert root.get_attribute("data-theme") == "light" and session.query()["theme"] == ["light"]
    session.page.click("#theme-toggle")
    assert root.get_attribute("data-theme") == "dark" and session.query()["theme"] == ["dark"]
    assert session.page.evaluate("localStorage.getItem('vigil.theme')") == "dark"
    assert "theme=dark" in (session.page.locator("a.brand").get_attribute("href") or "")
    session.page.goto(session.origin + "/hosts")  # no theme in the URL: the stored one applies
    assert root.get_attribute("data-theme") == "dark"
    assert session.errors == []


def test_keyboard_reaches_the_controls_and_the_data_tables(session: Session) -> None:
    session.open(PAGES["host"])
    session.page.keyboard.press("Tab")
    assert session.page.evaluate("document.activeElement.className") == "skip"
    summary = session.page.locator(".chart-table summary").first
    summary.focus()
    session.page.keyboard.press("Enter")
    rows = session.page.locator(".chart-table").first.locator("tbody tr")
    assert rows.count() >= 1 and "%" in rows.first.inner_text()
