"""`/-/ready` follows the write path: 503 naming the error while the last write failed, 200 once one
is stored again. The WAL's write fails as on a full disk (tests/system/test_disk_full.py fills a real one)."""

from __future__ import annotations

import errno
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.web.asgi import Client
from tests.web.test_write_api import HEADERS, rw
from vigil.cmd.server import build_app, new_registry, open_events
from vigil.config import config_from_dict
from vigil.tsdb.db import DB, Options


class DiskFull:
    """Makes a DB's WAL write fail with ENOSPC while `full` is set."""

    def __init__(self, db: DB, monkeypatch: pytest.MonkeyPatch) -> None:
        self.full = False
        wal = db._wal
        write = wal.write

        def maybe_fail(records: Any) -> None:
            if self.full:
                raise OSError(errno.ENOSPC, "No space left on device")
            write(records)

        monkeypatch.setattr(wal, "write", maybe_fail)


T0 = int(time.time() * 1000) - 60_000  # sample times near the store's (wall) clock


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Client, DiskFull]]:
    cfg = config_from_dict({"storage": {"path": str(tmp_path / "data")}})
    registry = new_registry()
    db = DB(cfg.storage.path, Options(fsync=False), registry=registry)
    events = open_events(cfg)
    yield Client(build_app(cfg, db, registry, events)), DiskFull(db, monkeypatch)
    events.close()
    db.close()


def test_not_ready_while_writes_fail_and_ready_after_one_succeeds(app: tuple[Client, DiskFull]) -> None:
    c, disk = app
    assert (
        c.post("/api/v1/write", content=rw([("__name__", "up")], ts=T0 + 1000), headers=HEADERS).status_code
        == 204
    )
    assert c.get("/-/ready").status_code == 200
    disk.full = True
    r = c.post("/api/v1/write", content=rw([("__name__", "up")], ts=T0 + 2000), headers=HEADERS)
    assert r.status_code == 503
    for _ in range(2):  # it stays so while nothing is written, and HEAD says the same
        r = c.get("/-/ready")
        assert r.status_code == 503
        assert r.text.startswith("not ready: writes are failing: ") and "No space left on device" in r.text
        assert c.request("HEAD", "/-/ready").status_code == 503
    assert c.get("/-/healthy").status_code == 200  # alive: the process is fine, its disk is not
    disk.full = False
    assert (
        c.post("/api/v1/write", content=rw([("__name__", "up")], ts=T0 + 3000), headers=HEADERS).status_code
        == 204
    )
    r = c.get("/-/ready")
    assert r.status_code == 200 and r.text == "Vigil is Ready.\n"


def test_a_refused_request_does_not_clear_the_error(app: tuple[Client, DiskFull]) -> None:
    """Only a stored write says the disk takes writes again; a 400 never reached it."""
    c, disk = app
    disk.full = True
    assert c.post("/api/v1/write", content=rw([("__name__", "up")]), headers=HEADERS).status_code == 503
    assert c.post("/api/v1/write", content=b"garbage", headers=HEADERS).status_code == 400
    event = {"time_ms": 1, "kind": "auth", "labels": {}, "fields": {}, "message": "m"}
    assert c.post("/api/v1/events", content=json.dumps(event).encode()).status_code == 200
    assert c.get("/-/ready").status_code == 503  # the event store is fine, the TSDB is not
