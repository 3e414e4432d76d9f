"""A real `vigil server` on a real full disk (a small tmpfs mounted for the test, as root): writes get
503, `/-/ready` says why, and both come back once there is room again."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import VigilProcess
from tests.web.test_write_api import HEADERS, rw


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", str(mnt)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], check=True)


def fill(path: Path) -> None:
    """Write `path` until the file system has no byte left."""
    with path.open("wb", buffering=0) as f:
        for size in (1 << 16, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * size)


T0 = int(time.time() * 1000) - 60_000  # written through a real server: sample times near its clock


def series(n: int, ts: int) -> bytes:
    """A write of `n` series, several pages of WAL: more than the slack in a file's last page."""
    return rw(*[[("__name__", "disk_test"), ("i", str(i))] for i in range(n)], ts=T0 + ts)


def events(n: int, start: int) -> bytes:
    lines = [
        {"id": f"e{i}", "time_ms": 1000 + i, "kind": "auth", "labels": {}, "fields": {}, "message": "x" * 500}
        for i in range(start, start + n)
    ]
    return "\n".join(json.dumps(x) for x in lines).encode()


def test_full_disk_makes_the_server_not_ready_until_writes_succeed_again(small_disk: Path) -> None:
    vigil = VigilProcess(small_disk).start()
    try:
        c = httpx.Client(base_url=vigil.url, timeout=30)
        ndjson = {"Content-Type": "application/x-ndjson"}
        assert c.post("/api/v1/write", content=series(500, 1000), headers=HEADERS).status_code == 204
        assert c.post("/api/v1/events", content=events(20, 0), headers=ndjson).status_code == 200
        assert c.get("/-/ready").status_code == 200

        filler = small_disk / "filler"
        fill(filler)
        r = c.post("/api/v1/write", content=series(500, 2000), headers=HEADERS)
        assert r.status_code == 503 and "No space left on device" in r.text, r.text
        r = c.get("/-/ready")
        assert r.status_code == 503, r.text
        assert r.text.startswith("not ready: writes are failing: ") and "No space left on device" in r.text
        assert c.post("/api/v1/events", content=events(20, 100), headers=ndjson).status_code == 503
        assert c.get("/-/healthy").status_code == 200

        filler.unlink()
        assert c.post("/api/v1/write", content=series(500, 3000), headers=HEADERS).status_code == 204
        r = c.get("/-/ready")
        assert r.status_code == 503 and "events.db" in r.text  # the event store's last write still failed
        assert c.post("/api/v1/events", content=events(20, 100), headers=ndjson).status_code == 200
        r = c.get("/-/ready")
        assert r.status_code == 200, r.text

        # What was acknowledged is there; the refused write (t = 2 s) is not.
        q = c.get(
            "/api/v1/query",
            params={"query": 'count_over_time(disk_test{i="7"}[5s])', "time": str((T0 + 3500) / 1000)},
        )
        assert q.json()["data"]["result"][0]["value"][1] == "2"
        assert (
            c.get(
                "/api/v1/query", params={"query": "count(disk_test)", "time": str((T0 + 3000) / 1000)}
            ).json()["data"]["result"][0]["value"][1]
            == "500"
        )
    finally:
        vigil.stop()
