"""The hostile table and a short fuzz run against a real `vigil server` (bench/hostile.py).

Every finding of the hostile-input audit is one request of the table with the answer it must get;
the fuzz phase sends a few hundred random and mutated payloads to every endpoint. Throughout, a
second client polls `/-/ready` (each poll must be answered) and the server's RSS is sampled.
The longer run is `python -m bench.hostile --fuzz 50000`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from bench.hostile import CONFIG, attack
from bench.peers import running

pytestmark = pytest.mark.slow


def test_hostile_table_and_fuzz(tmp_path: Path) -> None:
    cfg = tmp_path / "vigil.yml"
    cfg.write_text(CONFIG)
    with running("vigil", extra_args=["--config", str(cfg)], tmp_dir=tmp_path) as peer:
        report = attack(peer.url, peer.pid, fuzz=300, seed=11)
        print(report.line())
        assert report.outcome.failures == []
        assert report.outcome.server_errors == []
        assert report.ready.polls > 0 and report.ready.unanswered == 0
        assert peer.process is not None and peer.process.poll() is None, "the server died"
    assert report.peak_rss < 1 << 30, f"peak RSS {report.peak_rss / 2**20:.0f} MiB"
