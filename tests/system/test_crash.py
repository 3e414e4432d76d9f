"""kill -9 while a writer sends continuously: every acknowledged sample survives, none is duplicated."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import cramjam
import httpx
import numpy as np
import pytest

from tests.conftest import VigilProcess
from vigil.model.matcher import Matcher
from vigil.prompb.encode import encode_write_request
from vigil.tsdb.db import DB, MAX_TIME, MIN_TIME

pytestmark = pytest.mark.slow

SERIES = 200
STEP_MS = 60_000  # one batch per simulated minute, so head flushes (10m) happen during the run
# A simulated minute is far faster than a real one: start a week back so the run stays in the past
# (the server refuses samples ahead of its clock) and inside retention.
BASE_MS = int(time.time() * 1000) - 7 * 86_400_000
HEADERS = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf"}


def batch(k: int) -> bytes:
    labels = [[("__name__", "crash_test"), ("i", str(i))] for i in range(SERIES)]
    t = BASE_MS + k * STEP_MS
    return bytes(
        cramjam.snappy.compress_raw(
            encode_write_request(labels, [[(t, float(k * 1000 + i))] for i in range(SERIES)])
        )
    )


def writer(url: str, start: int, acked: list[int], stop: threading.Event) -> None:
    k = start
    with httpx.Client(timeout=5) as c:
        while not stop.is_set():
            try:
                r = c.post(url + "/api/v1/write", content=batch(k), headers=HEADERS)
            except httpx.HTTPError:
                return  # the server died under us: this batch was never acknowledged
            if r.status_code == 204:
                acked.append(k)
                k += 1


def test_kill9_loses_nothing_acknowledged(tmp_path: Path) -> None:
    cfg = tmp_path / "vigil.yml"
    cfg.write_text("storage:\n  head_flush_interval: 10m\n")
    v = VigilProcess(tmp_path / "data", extra_args=["--config", str(cfg)])
    acked: list[int] = []
    rng = random.Random(7)
    for _round in range(3):
        v.start()
        stop = threading.Event()
        t = threading.Thread(target=writer, args=(v.url, (acked[-1] + 1) if acked else 0, acked, stop))
        t.start()
        time.sleep(rng.uniform(1.0, 2.5))
        v.kill9()
        stop.set()
        t.join()
    assert len(acked) > 20, "the writer should have been acknowledged many times"
    with DB(v.data_dir) as db:
        ss = db.select([Matcher.eq("__name__", "crash_test")], MIN_TIME, MAX_TIME)
        assert len(ss) == SERIES
        for labels, ts, vals in ss:
            i = int(labels.get("i"))
            stored = dict(zip(ts.tolist(), vals.tolist(), strict=True))
            assert len(stored) == ts.size  # unique timestamps: nothing duplicated
            for k in acked:
                assert stored.get(BASE_MS + k * STEP_MS) == float(k * 1000 + i), (i, k)
            # Anything beyond the acknowledged batches can only be the one in flight at the kill.
            sent = {BASE_MS + k * STEP_MS for k in acked}
            assert set(stored) - sent <= {BASE_MS + (k + 1) * STEP_MS for k in acked}
        assert np.all(np.diff(ss.series(0)[1]) > 0)
