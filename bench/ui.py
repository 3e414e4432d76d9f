"""The web UI's cost: server time per page, first and last chart drawn in Chromium, JS+CSS weight.

Starts a fresh `vigil server` (bench.peers), remote-writes `--hosts` synthetic hosts (one hour at
15 s, bench/ui_fleet.py), then per page: the median wall time of `--repeat` GETs over loopback
(the server's time, the client's is negligible), and in Debian's chromium (Playwright, 1280 px)
the time from navigation start to the first and the last chart drawn (`performance.mark` in
charts.js) and the JS+CSS bytes loaded (Resource Timing, uncompressed). One line per page.
"""

from __future__ import annotations

import argparse
import statistics
import time
from urllib.parse import quote

import httpx

from bench.peers import running
from bench.ui_fleet import HEADERS, fleet, instance, send

CHROMIUM = "/usr/bin/chromium"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    pages = {"overview": "/", "hosts": "/hosts", "host": "/hosts/" + quote(instance(3), safe="")}
    with running("vigil") as peer, httpx.Client(timeout=120) as c:
        n = send(
            fleet(args.hosts, 240, int(time.time() * 1000)),
            lambda p: c.post(peer.url + "/api/v1/write", content=p, headers=HEADERS).status_code,
        )
        print(f"# {args.hosts} hosts, {n:,} samples written")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
            for name, path in pages.items():
                walls = []
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    r = c.get(peer.url + path)
                    walls.append(time.perf_counter() - t0)
                    r.raise_for_status()
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(peer.url + path)
                charts = page.locator(".chart").count()
                if charts:
                    page.wait_for_function(
                        f"performance.getEntriesByName('vigil-chart-drawn').length >= {charts}",
                        timeout=120_000,
                    )
                marks = page.evaluate(
                    "performance.getEntriesByName('vigil-chart-drawn').map(m => m.startTime)"
                )
                weight = page.evaluate(
                    """() => performance.getEntriesByType('resource')
                         .filter(e => /[.](js|css)$/.test(new URL(e.name).pathname))
                         .reduce((n, e) => n + e.decodedBodySize, 0)"""
                )
                drawn = f"first chart {min(marks):.0f} ms, last {max(marks):.0f} ms" if marks else "no charts"
                print(
                    f"ui {name}: server {statistics.median(walls) * 1000:.0f} ms (median of {args.repeat}),"
                    f" {charts} charts, {drawn}, JS+CSS {weight / 1024:.1f} KB,"
                    f" HTML {len(r.content) / 1024:.1f} KB"
                )
                page.close()
            browser.close()


if __name__ == "__main__":
    main()
