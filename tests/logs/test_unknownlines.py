"""Unknown log lines: template learning, detection, baseline persistence, the CLI, bounds.

Fixtures in `fixtures/templates/`: `syslog-normal.log` (a Debian host's syslog/auth mixture made
with `syslog_lines` below, seed 1), `syslog-novel.log` (hand-written lines of shapes the normal log
never has), and CrowdSec hub sshd/PAM logs (MIT, see LICENSE and SOURCE.md there).
"""

from __future__ import annotations

import json
import random
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from drain3.masking import LogMasker, MaskingInstruction

from vigil.cmd import templates as templates_cmd
from vigil.logs.baseline import ACCEPTED, LEARNED, PENDING, TemplateBaseline, load_baselines
from vigil.logs.processor import LogLine
from vigil.logs.unknownlines import MASKS, DetectorSettings, UnknownLineDetector, mined_text, normalise
from vigil.model.event import Event

FIXTURES = Path(__file__).parent / "fixtures" / "templates"
T0 = 1_714_560_000_000  # 2024-05-01T10:40:00Z
HOUR = 3_600_000

_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_USERS = ["alice", "bob", "deploy", "backup", "carol"]
_BAD_USERS = [
    "admin",
    "test",
    "oracle",
    "ubuntu",
    "guest",
    "pi",
    "user",
    "ftpuser",
    "postgres",
    "git",
    "support",
]
_UNITS = [
    ("apt-daily.service", "Daily apt download activities"),
    ("logrotate.service", "Rotate log files"),
    ("man-db.service", "Daily man-db regeneration"),
    ("sysstat-collect.service", "system activity accounting tool"),
    ("phpsessionclean.service", "Clean php session files"),
]
_FP = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def syslog_lines(n: int, seed: int, host: str = "web-01") -> Iterator[str]:
    """A realistic syslog/auth.log stream: sshd, CRON, systemd, sudo, kernel UFW, dhclient, postfix."""
    rnd = random.Random(seed)
    t = 1_714_500_000 + rnd.randrange(86_400)

    # One key per user and the host's own and its gateway's MAC, as on a real host.
    keys = {u: "".join(rnd.choice(_FP) for _ in range(43)) for u in _USERS}
    macs = [
        f"52:54:00:{rnd.randrange(256):02x}:{rnd.randrange(256):02x}:{rnd.randrange(256):02x}:"
        f"fe:ff:ff:ff:ff:{rnd.randrange(256):02x}:08:00"
        for _ in range(2)
    ]

    def ip() -> str:
        return f"{rnd.randrange(1, 224)}.{rnd.randrange(256)}.{rnd.randrange(256)}.{rnd.randrange(1, 255)}"

    def pid() -> int:
        return rnd.randrange(300, 4_000_000)

    def port() -> int:
        return rnd.randrange(1024, 65536)

    messages = [
        lambda: (
            lambda u: (
                f"sshd[{pid()}]: Accepted publickey for {u} from {ip()} port {port()} ssh2: "
                f"ED25519 SHA256:{keys[u]}"
            )
        )(rnd.choice(_USERS)),
        lambda: f"sshd[{pid()}]: Accepted password for {rnd.choice(_USERS)} from {ip()} port {port()} ssh2",
        lambda: (
            f"sshd[{pid()}]: pam_unix(sshd:session): session opened for user {rnd.choice(_USERS)}"
            f"(uid={rnd.randrange(1000, 1010)}) by (uid=0)"
        ),
        lambda: f"sshd[{pid()}]: pam_unix(sshd:session): session closed for user {rnd.choice(_USERS)}",
        lambda: f"sshd[{pid()}]: Received disconnect from {ip()} port {port()}:11: disconnected by user",
        lambda: f"sshd[{pid()}]: Disconnected from user {rnd.choice(_USERS)} {ip()} port {port()}",
        lambda: f"sshd[{pid()}]: Invalid user {rnd.choice(_BAD_USERS)} from {ip()} port {port()}",
        lambda: (
            f"sshd[{pid()}]: Failed password for invalid user {rnd.choice(_BAD_USERS)} from {ip()} "
            f"port {port()} ssh2"
        ),
        lambda: f"sshd[{pid()}]: Failed password for root from {ip()} port {port()} ssh2",
        lambda: (
            f"sshd[{pid()}]: Connection closed by invalid user {rnd.choice(_BAD_USERS)} {ip()} "
            f"port {port()} [preauth]"
        ),
        lambda: f"sshd[{pid()}]: Received disconnect from {ip()} port {port()}:11: Bye Bye [preauth]",
        lambda: f"CRON[{pid()}]: pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)",
        lambda: f"CRON[{pid()}]: (root) CMD (command -v debian-sa1 > /dev/null && debian-sa1 1 1)",
        lambda: f"CRON[{pid()}]: (root) CMD (   cd / && run-parts --report /etc/cron.hourly)",
        lambda: f"CRON[{pid()}]: pam_unix(cron:session): session closed for user root",
        lambda: "systemd[1]: Starting {} - {}...".format(*rnd.choice(_UNITS)),
        lambda: f"systemd[1]: {rnd.choice(_UNITS)[0]}: Deactivated successfully.",
        lambda: "systemd[1]: Finished {} - {}.".format(*rnd.choice(_UNITS)),
        lambda: (lambda s, u: f"systemd[1]: Started session-{s}.scope - Session {s} of User {u}.")(
            rnd.randrange(1, 900), rnd.choice(_USERS)
        ),
        lambda: f"systemd-logind[{pid()}]: New session {rnd.randrange(1, 900)} of user {rnd.choice(_USERS)}.",
        lambda: (
            f"systemd-logind[{pid()}]: Session {rnd.randrange(1, 900)} logged out. Waiting for processes "
            "to exit."
        ),
        lambda: f"systemd-logind[{pid()}]: Removed session {rnd.randrange(1, 900)}.",
        lambda: (
            lambda u: (
                f"sudo:    {u} : TTY=pts/{rnd.randrange(9)} ; PWD=/home/{u} ; USER=root ; "
                f"COMMAND=/usr/bin/apt {rnd.choice(['update', 'upgrade', 'list --upgradable'])}"
            )
        )(rnd.choice(_USERS)),
        lambda: (
            f"sudo: pam_unix(sudo:session): session opened for user root(uid=0) by "
            f"{rnd.choice(_USERS)}(uid={rnd.randrange(1000, 1010)})"
        ),
        lambda: "sudo: pam_unix(sudo:session): session closed for user root",
        lambda: (
            f"kernel: [{rnd.randrange(10**6)}.{rnd.randrange(10**6):06d}] [UFW BLOCK] IN=eth0 OUT= "
            f"MAC={rnd.choice(macs)} SRC={ip()} DST=10.0.0.5 LEN={rnd.randrange(40, 80)} TOS=0x00 PREC=0x00 "
            f"TTL={rnd.randrange(30, 250)} ID={rnd.randrange(65536)} PROTO=TCP SPT={port()} "
            f"DPT={rnd.choice([22, 23, 80, 443, 3389, 8080])} WINDOW={rnd.randrange(1024, 65536)} "
            "RES=0x00 SYN URGP=0"
        ),
        lambda: f"dhclient[{pid()}]: DHCPREQUEST for 10.0.0.5 on eth0 to 10.0.0.1 port 67",
        lambda: f"dhclient[{pid()}]: DHCPACK of 10.0.0.5 from 10.0.0.1",
        lambda: f"dhclient[{pid()}]: bound to 10.0.0.5 -- renewal in {rnd.randrange(600, 4000)} seconds.",
        lambda: (
            f"systemd-timesyncd[{pid()}]: Initial synchronization to time server {ip()}:123 (ntp.ubuntu.com)."
        ),
        lambda: f"postfix/smtpd[{pid()}]: connect from unknown[{ip()}]",
        lambda: (
            f"postfix/smtpd[{pid()}]: disconnect from unknown[{ip()}] ehlo=1 auth=0/1 quit=1 commands=2/3"
        ),
        lambda: f"postfix/smtpd[{pid()}]: lost connection after AUTH from unknown[{ip()}]",
    ]
    # Skewed like real logs: a few messages dominate.
    weights = [
        3,
        1,
        4,
        4,
        3,
        3,
        8,
        8,
        5,
        6,
        4,
        6,
        3,
        3,
        6,
        2,
        2,
        2,
        2,
        2,
        2,
        2,
        1,
        1,
        1,
        10,
        1,
        1,
        1,
        1,
        3,
        3,
        2,
    ]
    for _ in range(n):
        t += rnd.randrange(3)
        month = _MONTHS[(t // 2_592_000) % 12]
        day, rest = (t // 86_400) % 28 + 1, t % 86_400
        stamp = f"{month} {day:2d} {rest // 3600:02d}:{rest // 60 % 60:02d}:{rest % 60:02d}"
        yield f"{stamp} {host} {rnd.choices(messages, weights)[0]()}"


# ---------------------------------------------------------------------------------------------
# Helpers


class Clock:
    """The detector's clock seam (seconds): paces saving and re-reading the baseline files."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def read(name: str) -> list[str]:
    return (FIXTURES / name).read_text(encoding="utf-8").splitlines()


def feed(d: UnknownLineDetector, lines: list[str], t_ms: int, source: str = "syslog") -> list[Event]:
    out: list[Event] = []
    for i, text in enumerate(lines):
        out.extend(d.process(LogLine(source, text, t_ms + i, f"/var/log/{source}@1:2:{i}")))
    return out


def samples(d: UnknownLineDetector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for m in d.collect() for s in m.samples}


def value(d: UnknownLineDetector, name: str, **labels: str) -> float:
    return samples(d)[(name, tuple(sorted(labels.items())))]


def renumber(lines: list[str], seed: int) -> list[str]:
    """The same lines with every number (pids, IPs, ports, times) replaced by another one."""
    rnd = random.Random(seed)
    out = []
    for line in lines:
        chars = [rnd.choice("123456789") if c.isdigit() else c for c in line]
        out.append("".join(chars))
    return out


def learned(
    directory: Path | None = None, clock: Clock | None = None, **settings: object
) -> UnknownLineDetector:
    """A detector that learned syslog-normal.log (1 hour learning period) and is now detecting."""
    s = DetectorSettings(learning_period_s=3600, **settings)  # type: ignore[arg-type]
    d = UnknownLineDetector(directory, sources=["syslog"], settings=s, clock=clock or Clock())
    assert feed(d, read("syslog-normal.log"), T0) == []
    assert d.learning("syslog")
    return d


AFTER = T0 + 2 * HOUR  # learning is over for lines read from then on
NOVEL = read("syslog-novel.log")


# ---------------------------------------------------------------------------------------------
# Learning and detection


def test_new_kind_of_line_is_reported_once_and_counted() -> None:
    d = learned()
    known = renumber(read("syslog-normal.log"), seed=5)
    assert feed(d, known, AFTER) == []  # same shapes, other IPs/pids/ports/times: nothing to report
    assert not d.learning("syslog")

    events = feed(d, NOVEL[:1], AFTER + HOUR)
    assert len(events) == 1
    ev = events[0]
    assert ev.kind == "log_unknown"
    assert ev.fields["source"] == "syslog"
    assert ev.fields["line"] == NOVEL[0]
    assert ev.fields["template"] == (
        "useradd: new user: name=backdoor, UID=<NUM>, GID=<NUM>, home=/home/backdoor, shell=/bin/bash, "
        "from=/dev/pts/<NUM>"
    )
    assert value(d, "vigil_log_unknown_lines_total", source="syslog") == 1
    n = len(read("syslog-normal.log")) * 2 + 1
    assert value(d, "vigil_log_lines_total", source="syslog") == n
    assert value(d, "vigil_log_templates", source="syslog", status=PENDING) == 1
    assert value(d, "vigil_log_templates_learning", source="syslog") == 0

    # Every novel line is its own new template; known lines stay quiet.
    events = feed(d, NOVEL[1:] + known[:50], AFTER + 2 * HOUR)
    assert [e.fields["line"] for e in events] == NOVEL[1:]
    assert len({e.fields["template_id"] for e in events}) == len(NOVEL) - 1
    assert value(d, "vigil_log_unknown_lines_total", source="syslog") == len(NOVEL)


def test_real_sshd_logs_known_shapes_quiet_new_shapes_reported() -> None:
    d = learned()
    # CrowdSec's brute-force log: "Invalid user X from IP port N", learned from the normal log.
    assert feed(d, read("ssh-slow-bf.log"), AFTER) == []
    events = feed(d, read("sshd-logs.log"), AFTER + HOUR)
    lines = [str(e.fields["line"]) for e in events]
    assert any("Unable to negotiate" in x for x in lines)
    assert any("Magic value check failed" in x for x in lines)
    assert not any("Invalid user pascal from" in x for x in lines)  # a known shape
    # Repeated new shapes are one pending template each, not one per line.
    b = d.baseline("syslog")
    assert b is not None
    pending = [t for t in b.templates.values() if t.status == PENDING]
    assert len(pending) < len(read("sshd-logs.log")) - 3


def test_known_line_with_other_header_formats_is_known() -> None:
    d = learned()
    lines = [
        # RFC 3339 (rsyslog high precision), RFC 3164 with PRI, RFC 5424: same message as learned.
        "2024-05-02T07:01:02.123456+02:00 db-7 sshd[99]: Invalid user admin from 10.1.2.3 port 2222",
        "<38>May  2 07:01:02 db-7 sshd[99]: Invalid user admin from 10.1.2.3 port 2222",
        "<38>1 2024-05-02T07:01:02.1Z db-7 sshd 99 - - Invalid user admin from 10.1.2.3 port 2222",
    ]
    assert feed(d, lines, AFTER) == []


def test_event_suppression_per_template_and_window() -> None:
    d = learned(events_per_template=10)
    flood = renumber([NOVEL[2]] * 50, seed=1)  # one new message, 50 times with other pids
    events = feed(d, flood, AFTER)
    assert len(events) == 10
    assert value(d, "vigil_log_unknown_lines_total", source="syslog") == 50
    assert value(d, "vigil_log_unknown_events_suppressed_total", source="syslog", limit="template") == 40
    assert value(d, "vigil_log_unknown_events_suppressed_total", source="syslog", limit="source") == 0
    assert value(d, "vigil_log_templates", source="syslog", status=PENDING) == 1
    # Another new template still gets its events; the flooding one again after the window.
    assert len(feed(d, NOVEL[:1], AFTER + 100)) == 1
    assert len(feed(d, flood, AFTER + HOUR + 1000)) == 10


def test_event_limit_per_source_is_counted_and_said_in_the_event_stream() -> None:
    # The report: the per-source cap held lines back silently, and was neither configurable nor
    # documented. Now it is `events_per_source`, counted under limit="source", and said as events.
    d = learned(events_per_source=3)
    events = feed(d, NOVEL, AFTER)
    assert [e.kind for e in events] == ["log_unknown"] * 3 + ["log_unknown_suppressed"]
    notice = events[3]
    assert notice.fields["source"] == "syslog" and notice.fields["limit"] == 3
    assert notice.fields["line"] == NOVEL[3]  # the first line held back
    assert notice.fields["window_end"] == "2024-05-01T13:40:00.000Z"
    assert "events_per_source" in notice.message
    held = len(NOVEL) - 3
    assert value(d, "vigil_log_unknown_events_suppressed_total", source="syslog", limit="source") == held
    assert value(d, "vigil_log_unknown_events_suppressed_total", source="syslog", limit="template") == 0
    # The first line of the source after the window (a known one here) carries the count held back.
    known = read("syslog-normal.log")[:1]
    [report] = feed(d, known, AFTER + HOUR)
    assert report.kind == "log_unknown_suppressed" and report.fields["suppressed"] == held
    assert feed(d, known, AFTER + HOUR + 1) == []  # said once
    # A new window keeps events again.
    assert [e.kind for e in feed(d, renumber(NOVEL[:1], seed=3), AFTER + HOUR + 2)] == ["log_unknown"]


def test_learning_period_follows_line_time() -> None:
    d = UnknownLineDetector(None, settings=DetectorSettings(learning_period_s=600), clock=Clock())
    normal = read("syslog-normal.log")
    assert feed(d, normal, T0) == []
    assert feed(d, NOVEL[:1], T0 + 599_000) == []  # still learning: a new shape is learned
    assert d.learning("syslog")
    assert value(d, "vigil_log_templates_learning", source="syslog") == 1
    assert feed(d, NOVEL[:1], T0 + 600_000) == []  # learned during the period: known now
    assert not d.learning("syslog")
    assert len(feed(d, NOVEL[1:2], T0 + 600_001)) == 1
    b = d.baseline("syslog")
    assert b is not None and b.learning_started_ms == T0 and b.learning_ended_ms == T0 + 600_000


def test_baseline_persisted_and_reloaded(tmp_path: Path) -> None:
    clock = Clock()
    d = learned(tmp_path, clock)
    feed(d, renumber(NOVEL[:1], 3), AFTER)  # ends learning, one pending template
    d.save()
    data = json.loads((tmp_path / "syslog.json").read_text())
    assert data["source"] == "syslog" and data["learning_ended"].endswith("Z")
    by_status = {t["status"] for t in data["templates"]}
    assert by_status == {LEARNED, PENDING}
    t = data["templates"][0]
    assert set(t) == {"id", "status", "count", "first_seen", "last_seen", "template"}

    # A restart: no learning again, the known shapes are known, the pending one still reported.
    d2 = UnknownLineDetector(tmp_path, sources=["syslog"], settings=d.settings, clock=clock)
    assert not d2.learning("syslog")
    assert feed(d2, renumber(read("syslog-normal.log"), 9), AFTER + HOUR) == []
    events = feed(d2, NOVEL[:2], AFTER + HOUR)
    assert [e.fields["line"] for e in events] == NOVEL[:2]
    b1, b2 = d.baseline("syslog"), d2.baseline("syslog")
    assert b1 is not None and b2 is not None
    assert events[0].fields["template_id"] in b1.templates  # the same pending template as before


def test_restart_during_learning_continues_the_period(tmp_path: Path) -> None:
    clock = Clock()
    s = DetectorSettings(learning_period_s=3600)
    d = UnknownLineDetector(tmp_path, settings=s, clock=clock)
    feed(d, read("syslog-normal.log")[:200], T0)
    d.save()
    d2 = UnknownLineDetector(tmp_path, settings=s, clock=clock)
    assert feed(d2, read("syslog-normal.log")[200:], T0 + 1000) == []
    assert d2.learning("syslog")
    assert feed(d2, NOVEL[:1], T0 + HOUR - 1) == []  # still learning: 1 h from the first line
    assert len(feed(d2, NOVEL[1:2], T0 + HOUR)) == 1  # over: reported
    assert not d2.learning("syslog")
    # The end of learning is saved at the next tick, without waiting for the save interval.
    for _ in range(300):
        d2.process(LogLine("syslog", read("syslog-normal.log")[0], T0 + HOUR, "x"))
    assert json.loads((tmp_path / "syslog.json").read_text())["learning_ended"] is not None


def test_corrupt_baseline_is_relearned(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "syslog.json").write_text("{not json")
    d = UnknownLineDetector(tmp_path, sources=["syslog"], clock=Clock())
    assert d.learning("syslog")
    assert "not JSON" in caplog.text


# ---------------------------------------------------------------------------------------------
# Review: accept / reject through the CLI, picked up by a running detector


def _cli(argv: list[str]) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="vigil")
    templates_cmd.add_parser(p.add_subparsers(dest="command", required=True))
    return templates_cmd.run(p.parse_args(argv))


def test_accept_via_cli_makes_the_line_known(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clock = Clock()
    d = learned(tmp_path, clock)
    first = feed(d, NOVEL[:2], AFTER)
    assert len(first) == 2
    d.save()
    accept_id, reject_id = (int(e.fields["template_id"]) for e in first)  # type: ignore[arg-type]

    assert _cli(["logs", "templates", "list", "--dir", str(tmp_path), "--status", "pending"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["ID", "SOURCE", "STATUS", "COUNT", "LAST", "SEEN", "TEMPLATE"]
    assert "useradd: new user:" in out and "learned" not in out

    assert _cli(["logs", "templates", "accept", "syslog", str(accept_id), "--dir", str(tmp_path)]) == 0
    assert _cli(["logs", "templates", "reject", "syslog", str(reject_id), "--dir", str(tmp_path)]) == 0
    assert "1 template(s) rejected" in capsys.readouterr().out

    clock.now += 10  # the detector notices the changed file at its next sync
    d.sync()
    assert feed(d, renumber(NOVEL[:1], 4), AFTER + 1000) == []  # accepted: known now
    again = feed(d, NOVEL[1:2], AFTER + 1000)  # rejected: forgotten, so new (and reported) again
    assert len(again) == 1 and again[0].fields["template_id"] != reject_id
    d.save()
    b = TemplateBaseline.load(tmp_path, "syslog")
    assert b is not None
    assert b.templates[accept_id].status == ACCEPTED
    assert reject_id not in b.templates

    # The accepted template survives a restart as accepted.
    d2 = UnknownLineDetector(tmp_path, sources=["syslog"], clock=clock)
    assert feed(d2, NOVEL[:1], AFTER + HOUR) == []


def test_cli_accept_all_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = learned(tmp_path)
    feed(d, NOVEL, AFTER)
    d.save()
    base = ["--dir", str(tmp_path)]
    assert _cli(["logs", "templates", "accept", "syslog", "999", *base]) == 1
    assert "no template 999" in capsys.readouterr().err
    assert _cli(["logs", "templates", "reject", "syslog", "1", *base]) == 1  # learned, not pending
    assert "not pending" in capsys.readouterr().err
    assert _cli(["logs", "templates", "accept", "nosuch", "--all", *base]) == 1
    assert _cli(["logs", "templates", "accept", "syslog", *base]) == 1  # neither ids nor --all
    capsys.readouterr()
    assert _cli(["logs", "templates", "accept", "syslog", "--all", *base]) == 0
    assert f"{len(NOVEL)} template(s) accepted" in capsys.readouterr().out
    assert all(t.status != PENDING for b in load_baselines(tmp_path) for t in b.templates.values())


def test_cli_finds_directory_from_config_and_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "agent-data"
    d = learned(data / "templates")
    feed(d, NOVEL[:1], AFTER)
    d.save()
    cfg = tmp_path / "vigil.yml"
    cfg.write_text(f"agent:\n  data_dir: {data}\n")
    assert _cli(["logs", "templates", "list", "--config", str(cfg), "--source", "syslog"]) == 0
    assert "useradd" in capsys.readouterr().out
    assert _cli(["logs", "templates", "list", "--data-dir", str(data), "--status", "accepted"]) == 0
    assert capsys.readouterr().out.strip() == "no templates"
    monkeypatch.chdir(tmp_path)  # ./vigil.yml is the default, as for the other commands
    assert _cli(["logs", "templates", "list"]) == 0
    assert "useradd" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# Bounds, performance shape, checkpoints


def _tree_size(node: Any) -> int:
    """Nodes plus the cluster ids their leaves hold, of a drain3 prefix tree."""
    n: int = 1 + len(node.cluster_ids)
    return n + sum(_tree_size(c) for c in node.key_to_child_node.values())


@pytest.mark.slow
def test_distinct_never_seen_lines_stay_bounded() -> None:
    d = learned(max_pending=50, cache_size=1000, events_per_source=5)
    rnd = random.Random(0)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = ["".join(rnd.choice(letters) for _ in range(rnd.randrange(3, 9))) for _ in range(2000)]
    st = d._sources["syslog"]
    sizes = []
    for i in range(100_000):
        text = " ".join(rnd.choice(words) for _ in range(rnd.randrange(2, 9)))
        d.process(LogLine("syslog", f"Feb 21 06:30:01 web-01 app[1]: {text}", AFTER + i, "x"))
        if i % 25_000 == 0:
            sizes.append(_tree_size(st.pending.root_node))
    assert len(st.pending.id_to_cluster) <= 50
    assert sum(t.status == PENDING for t in st.templates.values()) <= 50
    assert len(st.windows) <= 50 and len(st.pending_lru) <= 50
    assert len(st.cache) + len(st.cache_old) <= 1000
    assert max(sizes) < 50 * 40  # tree nodes and leaf entries, rebuilt now and then
    assert value(d, "vigil_log_unknown_lines_total", source="syslog") == 100_000
    assert (
        value(d, "vigil_log_unknown_events_suppressed_total", source="syslog", limit="source") == 100_000 - 5
    )
    series = samples(d)
    assert sum(1 for name, _ in series if name == "vigil_log_unknown_lines_total") == 1
    assert sum(1 for name, _ in series if name == "vigil_log_templates") == 3  # one per status


def test_unconfigured_source_is_ignored() -> None:
    d = UnknownLineDetector(None, sources=["auth"], clock=Clock())
    assert list(d.process(LogLine("other", "x", T0, "o"))) == []
    assert {labels for _, labels in samples(d)} <= {(("source", "auth"),)} | {
        (("source", "auth"), ("status", s)) for s in (LEARNED, ACCEPTED, PENDING)
    } | {(("limit", lim), ("source", "auth")) for lim in ("template", "source")}


def test_snapshot_and_restore() -> None:
    d = learned(events_per_template=1)
    feed(d, [NOVEL[0]] * 3, AFTER)
    snap = json.loads(json.dumps(d.snapshot()))
    assert snap == {
        "sources": {"syslog": {"lines": 403, "unknown": 3, "suppressed": 2, "suppressed_by_source": 0}}
    }

    d2 = UnknownLineDetector(None, sources=["syslog"], clock=Clock())
    d2.restore(snap)
    assert value(d2, "vigil_log_lines_total", source="syslog") == 403
    assert value(d2, "vigil_log_unknown_lines_total", source="syslog") == 3
    assert value(d2, "vigil_log_unknown_events_suppressed_total", source="syslog", limit="template") == 2
    d2.process(LogLine("syslog", NOVEL[0], AFTER, "x"))
    assert value(d2, "vigil_log_lines_total", source="syslog") == 404


def test_memory_of_a_known_stream_does_not_grow() -> None:
    d = learned()
    lines = list(syslog_lines(20_000, seed=3))
    feed(d, lines[:5000], AFTER)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        feed(d, lines[5000:], AFTER + 10_000)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 2_000_000


@pytest.mark.parametrize(
    ("line", "content"),
    [
        (
            "Feb 21 06:30:01 web-01 sshd[123]: Received disconnect from 10.0.0.1 port 48310:11: Bye",
            "sshd: Received disconnect from <IP> port <NUM>:<NUM>: Bye",
        ),
        ("Feb 21 06:30:01 h app: from fe80::1 and ::1", "app: from <IP> and <IP>"),
        ("Feb 21 06:30:01 h kernel: [    5.123456] MAC=00:08:a2:0c:1f:12:00:c8", "kernel: [<NUM>] MAC=<IP>"),
        (
            "2024-05-01T12:00:00.123+02:00 h app[9]: id 550e8400-e29b-41d4-a716-446655440000 at 12:00:01 "
            "sum d41d8cd98f00b204e9800998ecf8427e took 1.5s, 20%",
            "app: id <UUID> at <TIME> sum <HEX> took <NUM>, <NUM>",
        ),
        ("<34>1 2003-10-11T22:14:15.003Z host su - ID47 - 'su root' failed", "su: 'su root' failed"),
        ("no header at all, 42 times", "no header at all, <NUM> times"),
    ],
)
def test_normalisation_and_masks(line: str, content: str) -> None:
    masker = LogMasker([MaskingInstruction(p, m) for p, m in MASKS], "<", ">")
    assert masker.mask(mined_text(normalise(line))) == content


# Each timestamp shape, as written on two different days (weekday, month, day, time and year all
# differ): both lines must mask to one content, with the whole stamp one token.
TIMESTAMP_PAIRS = {
    "rfc3164": ("Dec  5 14:03:11 backup started", "Jan 16 09:59:01 backup started"),  # (headers: stripped)
    "rfc3164_in_message": ("backup of Dec  5 14:03:11 done", "backup of Mar 30 01:00:00 done"),
    "ctime": ("Mon Dec  5 14:03:11 2022 backup done", "Tue Jan 16 09:59:01 2024 backup done"),
    "date1": ("Mon Dec  5 14:03:11 UTC 2022 backup done", "Sat Mar 30 09:59:01 CEST 2024 backup done"),
    "apache_error": (
        "[Mon Dec 05 14:03:11.123456 2022] [core:error] [pid 1234:tid 5678] [client 1.2.3.4:5678] AH00126: "
        "Invalid URI in request",
        "[Tue Jan 16 09:59:01.000001 2024] [core:error] [pid 9:tid 8] [client 10.9.8.7:1] AH00126: "
        "Invalid URI in request",
    ),
    "nginx_error": (
        "2022/12/05 14:03:11 [error] 1234#1234: *5 open() failed",
        "2024/01/16 09:59:01 [error] 77#77: *123 open() failed",
    ),
    "access_clf": (
        '1.2.3.4 - - [05/Dec/2022:14:03:11 +0000] "GET / HTTP/1.1" 200 612',
        '5.6.7.8 - - [16/Jan/2024:09:59:01 -0500] "GET / HTTP/1.1" 404 1',
    ),
    "iso8601": ("2022-12-05T14:03:11.123Z app started", "2024-01-16T09:59:01+01:00 app started"),
    "iso8601_space_zone": (
        "2022-12-05 14:03:11,123 UTC INFO app started",
        "2024-01-16 09:59:01 GMT INFO app started",
    ),
    "iso8601_weekday": ("Mon 2022-12-05 14:03:11 UTC app started", "Tue 2024-01-16 09:59:01 UTC app started"),
    "iso8601_basic": ("20221205T140311Z build started", "20240116T095901Z build started"),
    "rfc1123": ("Date: Mon, 05 Dec 2022 14:03:11 GMT", "Date: Tue, 16 Jan 2024 09:59:01 GMT"),
    "rfc850": ("expires Monday, 05-Dec-22 14:03:11 GMT", "expires Tuesday, 16-Jan-24 09:59:01 GMT"),
    "tomcat": ("05-Dec-2022 14:03:11.123 INFO [main] started", "16-Jan-2024 09:59:01.9 INFO [main] started"),
    "java_util_logging": ("Dec 05, 2022 2:03:11 PM Catalina start", "Jan 16, 2024 9:59:01 AM Catalina start"),
    "epoch": ("ts=1670249191 level=info msg=ok", "ts=1705395541 level=info msg=ok"),
    "epoch_ms": ("[1670249191123] job ok", "[1705395541000] job ok"),
}


@pytest.mark.parametrize("shape", sorted(TIMESTAMP_PAIRS))
def test_every_timestamp_shape_is_masked(shape: str) -> None:
    masker = LogMasker([MaskingInstruction(p, m) for p, m in MASKS], "<", ">")
    first, second = (masker.mask(mined_text(normalise(line))) for line in TIMESTAMP_PAIRS[shape])
    assert first == second
    assert not any(day in first for day in ("Mon", "Tue", "Sat", "Dec", "Jan", "Mar"))
    assert ("<NUM>" if shape.startswith("epoch") else "<TS>") in first


def test_known_apache_error_line_stays_known_on_the_next_weekday() -> None:
    # The report: "[Mon Dec 05 …]" kept the weekday, so every template was new again on Tuesday.
    s = DetectorSettings(learning_period_s=3600)
    d = UnknownLineDetector(None, sources=["apache"], settings=s, clock=Clock())
    monday = [
        f"[Mon Dec 05 14:{m:02d}:11.123456 2022] [authz_core:error] [pid {m}] [client 10.0.0.{m}:5{m}] "
        "AH01630: client denied by server configuration: /var/www/private"
        for m in range(30)
    ]
    assert feed(d, monday, T0, source="apache") == []
    tuesday = [line.replace("Mon Dec 05", "Tue Dec 06") for line in monday]
    january = [line.replace("Mon Dec 05", "Sun Jan 01").replace("2022", "2023") for line in monday]
    assert feed(d, tuesday + january, AFTER, source="apache") == []
    assert not d.learning("apache")
    assert value(d, "vigil_log_unknown_lines_total", source="apache") == 0
