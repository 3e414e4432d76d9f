"""Log-processing benchmark: Vigil's log pipeline against Debian's `mtail` on the same files.

Generates, from a fixed seed, into a work directory (reused when it already holds the same
`--lines`/`--seed`):

- `auth.log`: an internet-facing host's auth.log, RFC 3164 headers: sshd brute force from a
  skewed pool of 20,000 addresses (Failed password, Invalid user, [preauth] closes, PAM
  failures, "maximum authentication attempts"), a few real logins (publickey/password) and their
  sessions, sudo (commands and failures), su, CRON and systemd-logind sessions;
- `access.log`: nginx `$host $remote_addr - $remote_user [$time_local] "$request" $status
  $body_bytes_sent "$http_referer" "$http_user_agent" $request_time`, 5 vhosts, 100,000 client
  addresses, realistic method/status/size/duration mixes and a few TLS-garbage 400s;
- `syslog.log` and `syslog-sample.log` (200,000 lines, another seed): a Debian host's syslog
  (`syslog_lines` from tests/logs/test_unknownlines.py: sshd, CRON, systemd, sudo, kernel UFW,
  dhclient, postfix), with about one line in 5,000 of a shape the sample never has.

Vigil workloads, each in a fresh `python -m bench.logs --worker ...` process (so peak RSS is that
workload's own): the real path from file to processors, `LogPipeline` with one `FileSource`
(`start_at_end=False`, a fresh checkpoint file), events counted by a no-op `emit`;
`poll_once()` is called until it returns 0 (the file follower reads everything there is in one
poll, so the whole file is in memory at once, which is what peak RSS shows):

- `auth`: `AuthLogProcessor` over auth.log;
- `access`: `AccessLogProcessor` (RED metrics) over access.log;
- `unknown`: `UnknownLineDetector`, first learning on syslog-sample.log (its own worker, stderr
  only), then detecting on syslog.log from the saved baseline (a day and more later, so learning
  ends at the first line, as in the agent);
- `counting-rule`: a `LineRuleProcessor` with the one counter rule `match: 'Failed password'` over
  auth.log: the like-for-like comparison with mtail's `/Failed password/ { failed_password_total++ }`.

mtail (`--one_shot`: compile the programs, read the logs from the start to EOF, print the metrics,
exit) runs the counting program over auth.log and an access-log RED program (requests by vhost,
method, status class; bytes by vhost; a duration histogram by vhost with Vigil's buckets) over
access.log.  Its counts must equal Vigil's (a mismatch is reported and makes the exit code 1).

Prints one line per system and workload:

    logs vigil auth: 412,000 lines/s, 2.4 cpu-s/M lines, peak RSS 310 MiB (1,000,000 lines, ...)

then `ratio vigil/mtail <workload>` lines with the issue's target (lines/s >= mtail's).

What is measured:
- lines/s: lines / wall time.  Vigil: the `poll_once()` loop only (the pipeline is built and the
  modules imported before the clock starts; stderr has the whole process's figures too).  mtail:
  the whole process from exec to exit (its startup, program compilation included, is ~10 ms).
- cpu-s/M lines: user+sys CPU over the same span (Vigil: `time.process_time()`; mtail:
  `wait4()`'s rusage of the process, all its threads) per million lines.
- peak RSS: the process's VmHWM (Vigil's includes the interpreter and its imports).
- Each measurement runs once by default; `--repeat N` runs each N times (alternating systems)
  and reports the best (highest lines/s) run.  The files are just written, so both read them
  from the page cache.

Usage:
    python -m bench.logs                       # 1,000,000 lines per file, vigil and mtail
    python -m bench.logs --lines 20000 --only vigil --workloads auth,counting-rule
    python -m bench.logs --workdir /tmp/logs-bench --repeat 3 --mtail /usr/bin/mtail
    python -m bench.logs --workloads auth --only vigil --profile   # cProfile top functions
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import math
import os
import pstats
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.peers import REPO, _die_with_parent, install_sigterm_handler

SYSTEMS = ("vigil", "mtail")
WORKLOADS = ("auth", "access", "unknown", "counting-rule")
MTAIL_WORKLOADS = ("counting-rule", "access")
SAMPLE_LINES = 200_000
NOVEL_EVERY = 5_000  # about one syslog line in this many has a shape the sample never has
MIB = 1024 * 1024
T_LEARN = 1_714_500_000.0  # the learning run's clock (s); detection runs two days later
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
STD_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")

MTAIL_COUNTING = """\
counter failed_password_total
/Failed password/ {
  failed_password_total++
}
"""

# The access log's format exactly (a leading $host), as one writes an mtail program for one site.
_ACCESS_RE = (
    r'^(?P<vhost>\S+) \S+ \S+ \S+ \[[^\]]*\] "(?:(?P<method>[A-Za-z]+) )?[^"]*" '
    r'(?P<sc>\d)\d\d (?P<bytes>\d+) "[^"]*" "[^"]*" (?P<rt>\d+\.\d+)$'
)
MTAIL_ACCESS = f"""\
counter http_requests_total by vhost, method, sc
counter http_response_bytes_total by vhost
histogram http_request_duration_seconds by vhost buckets {", ".join(repr(b) for b in BUCKETS)}
/{_ACCESS_RE}/ {{
  http_requests_total[$vhost][$method][$sc]++
  http_response_bytes_total[$vhost] += $bytes
  http_request_duration_seconds[$vhost] = $rt
}}
"""


def log(msg: str) -> None:
    print(f"# {msg}", file=sys.stderr, flush=True)


# --- the generated logs ---------------------------------------------------------------------------

_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_REAL_USERS = ["alice", "bob", "deploy", "backup", "carol", "ansible"]
_BAD_USERS = [
    *("admin", "test", "oracle", "ubuntu", "guest", "pi", "user", "ftpuser", "postgres", "git", "support"),
    *("user1", "test1", "admin1", "mysql", "www", "www-data", "jenkins", "hadoop", "nagios", "tomcat"),
    *("dev", "devops", "minecraft", "ts3", "teamspeak", "steam", "server", "administrator", "root1"),
    *("centos", "ec2-user", "azureuser", "vagrant", "docker", "kafka", "elastic", "es", "redis", "mongo"),
    *("zabbix", "odoo", "sysadmin", "operator", "demo", "webmaster", "info", "mail", "ftp", "nobody"),
    *("sales", "backup1", "temp"),
]
_FP = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_SUDO_CMDS = [
    "/usr/bin/systemctl restart nginx",
    "/usr/bin/apt update",
    "/usr/bin/apt upgrade -y",
    "/usr/bin/journalctl -u nginx --since today",
    "/bin/bash",
    "/usr/bin/tail -n 100 /var/log/auth.log",
    "/usr/sbin/ufw status",
]


def _ip(rnd: random.Random) -> str:
    return f"{rnd.randrange(1, 224)}.{rnd.randrange(256)}.{rnd.randrange(256)}.{rnd.randrange(1, 255)}"


def _rfc3164(t: int) -> str:
    lt = time.gmtime(t)
    return f"{_MONTHS[lt.tm_mon - 1]} {lt.tm_mday:2d} {lt.tm_hour:02d}:{lt.tm_min:02d}:{lt.tm_sec:02d}"


# (weight, message template): {pid} {port} {bad} (a guessed user name) {atk} (an attacker's address),
# {user} {uid} {key} (a real account, its uid and key), {client} (a real user's address), {tty} {n} {cmd}.
_AUTH_MESSAGES: list[tuple[float, str]] = [
    (14, "sshd[{pid}]: Failed password for invalid user {bad} from {atk} port {port} ssh2"),
    (9, "sshd[{pid}]: Failed password for root from {atk} port {port} ssh2"),
    (12, "sshd[{pid}]: Invalid user {bad} from {atk} port {port}"),
    (8, "sshd[{pid}]: pam_unix(sshd:auth): check pass; user unknown"),
    (
        5,
        "sshd[{pid}]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= "
        "rhost={atk}  user=root",
    ),
    (
        3,
        "sshd[{pid}]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= "
        "rhost={atk}",
    ),
    (10, "sshd[{pid}]: Connection closed by invalid user {bad} {atk} port {port} [preauth]"),
    (4, "sshd[{pid}]: Disconnected from invalid user {bad} {atk} port {port} [preauth]"),
    (5, "sshd[{pid}]: Connection closed by authenticating user root {atk} port {port} [preauth]"),
    (6, "sshd[{pid}]: Received disconnect from {atk} port {port}:11: Bye Bye [preauth]"),
    (3, "sshd[{pid}]: Connection closed by {atk} port {port} [preauth]"),
    (
        2,
        "sshd[{pid}]: PAM 2 more authentication failures; logname= uid=0 euid=0 tty=ssh ruser= "
        "rhost={atk}  user=root",
    ),
    (
        1,
        "sshd[{pid}]: error: maximum authentication attempts exceeded for root from {atk} port {port} ssh2 "
        "[preauth]",
    ),
    (1, "sshd[{pid}]: Timeout before authentication for {atk} port {port}"),
    (1, "sshd[{pid}]: error: kex_exchange_identification: Connection closed by remote host"),
    (1.5, "sshd[{pid}]: Accepted publickey for {user} from {client} port {port} ssh2: ED25519 SHA256:{key}"),
    (0.3, "sshd[{pid}]: Accepted password for {user} from {client} port {port} ssh2"),
    (0.2, "sshd[{pid}]: Failed password for {user} from {client} port {port} ssh2"),
    (2, "sshd[{pid}]: pam_unix(sshd:session): session opened for user {user}(uid={uid}) by (uid=0)"),
    (2, "sshd[{pid}]: pam_unix(sshd:session): session closed for user {user}"),
    (1.5, "systemd-logind[{pid}]: New session {n} of user {user}."),
    (1.5, "systemd-logind[{pid}]: Removed session {n}."),
    (1.2, "sudo:    {user} : TTY=pts/{tty} ; PWD=/home/{user} ; USER=root ; COMMAND={cmd}"),
    (1.2, "sudo: pam_unix(sudo:session): session opened for user root(uid=0) by {user}(uid={uid})"),
    (1.2, "sudo: pam_unix(sudo:session): session closed for user root"),
    (
        0.1,
        "sudo: pam_unix(sudo:auth): authentication failure; logname={user} uid={uid} euid=0 "
        "tty=/dev/pts/{tty} ruser={user} rhost=  user={user}",
    ),
    (
        0.05,
        "sudo:    {user} : 3 incorrect password attempts ; TTY=pts/{tty} ; PWD=/home/{user} ; USER=root ; "
        "COMMAND=/bin/bash",
    ),
    (
        0.02,
        "sudo:   www-data : user NOT in sudoers ; TTY=unknown ; PWD=/var/www ; USER=root ; COMMAND=/bin/sh",
    ),
    (0.2, "su[{pid}]: (to root) {user} on pts/{tty}"),
    (0.2, "su[{pid}]: pam_unix(su:session): session opened for user root(uid=0) by {user}(uid={uid})"),
    (4, "CRON[{pid}]: pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)"),
    (4, "CRON[{pid}]: pam_unix(cron:session): session closed for user root"),
]


def auth_lines(n: int, seed: int, host: str = "web-01") -> Iterator[str]:
    """An internet-facing host's auth.log: mostly sshd brute force, some real logins, sudo, cron."""
    rnd = random.Random(seed)
    attackers = [_ip(rnd) for _ in range(20_000)]
    clients = [_ip(rnd) for _ in range(40)]
    keys = {u: "".join(rnd.choice(_FP) for _ in range(43)) for u in _REAL_USERS}
    uids = {u: str(1000 + i) for i, u in enumerate(_REAL_USERS)}

    class Fields(dict[str, str]):
        """The values of one message, drawn when the template asks for them."""

        def __missing__(self, k: str) -> str:
            if k == "pid":
                v = str(rnd.randrange(300, 4_000_000))
            elif k == "port":
                v = str(rnd.randrange(1024, 65536))
            elif k == "bad":
                v = rnd.choice(_BAD_USERS)
            elif k == "atk":  # a few addresses send most of the attempts
                v = attackers[int(len(attackers) * rnd.random() ** 3)]
            elif k == "user":
                v = rnd.choice(_REAL_USERS)
            elif k == "uid":
                v = uids[self["user"]]
            elif k == "key":
                v = keys[self["user"]]
            elif k == "client":
                v = rnd.choice(clients)
            elif k == "tty":
                v = str(rnd.randrange(6))
            elif k == "n":
                v = str(rnd.randrange(1, 9000))
            elif k == "cmd":
                v = rnd.choice(_SUDO_CMDS)
            else:
                raise KeyError(k)
            self[k] = v
            return v

    weights = [w for w, _ in _AUTH_MESSAGES]
    templates = [m for _, m in _AUTH_MESSAGES]
    t = 1_714_500_000
    stamp = _rfc3164(t)
    for _ in range(n):
        if rnd.random() < 0.3:
            t += 1
            stamp = _rfc3164(t)
        yield f"{stamp} {host} {rnd.choices(templates, weights)[0].format_map(Fields())}"


# Weighted choices: value -> weight.
_VHOSTS: dict[str, float] = {"example.com": 50, "www.example.com": 20, "api.example.com": 20}
_VHOSTS |= {"static.example.com": 8, "shop.example.org": 2}
_METHODS_W: dict[str, float] = {"GET": 85, "POST": 9, "HEAD": 3, "OPTIONS": 1, "PUT": 1, "DELETE": 0.5}
_METHODS_W |= {"PATCH": 0.4, "PROPFIND": 0.1}
_STATUS_W: dict[int, float] = {200: 80, 304: 6, 301: 3, 302: 2, 404: 5, 403: 1, 499: 0.5, 500: 0.8}
_STATUS_W |= {502: 0.3, 503: 0.2, 400: 0.2, 201: 1}
_TLS_HELLO = r"\x16\x03\x01\x02\x00\x01\x00\x01\xFC\x03\x03"  # how nginx logs TLS bytes as a request
_UAS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 "
    "Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 "
    "Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "curl/8.5.0",
    "python-requests/2.31.0",
    "Prometheus/2.42.0",
]
_PATHS = [
    "/",
    "/index.html",
    "/login",
    "/logout",
    "/search?q={n}",
    "/api/v1/items/{n}",
    "/api/v1/items?page={n}",
    "/api/v1/users/{n}/orders",
    "/static/app.{n}.js",
    "/static/style.{n}.css",
    "/img/p/{n}.jpg",
    "/blog/{n}/some-post-title",
    "/cart",
    "/checkout",
    "/favicon.ico",
    "/robots.txt",
    "/healthz",
    "/wp-login.php",
    "/.env",
    "/admin/",
    "/products/{n}?ref=home",
]


def access_lines(n: int, seed: int) -> Iterator[str]:
    """nginx combined with a leading $host and a trailing $request_time."""
    rnd = random.Random(seed)
    clients = [_ip(rnd) for _ in range(100_000)]
    vhosts, vw = list(_VHOSTS), list(_VHOSTS.values())
    methods, mw = list(_METHODS_W), list(_METHODS_W.values())
    statuses, sw = list(_STATUS_W), list(_STATUS_W.values())
    t = 1_714_500_000
    stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(t))
    for _ in range(n):
        if rnd.random() < 0.02:
            t += 1
            stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(t))
        client = clients[int(len(clients) * rnd.random() ** 2)]
        vhost = rnd.choices(vhosts, vw)[0]
        if rnd.random() < 0.0005:  # a TLS handshake sent to the plain-HTTP port
            yield f'{vhost} {client} - - [{stamp}] "{_TLS_HELLO}" 400 157 "-" "-" 0.001'
            continue
        method = rnd.choices(methods, mw)[0]
        status = rnd.choices(statuses, sw)[0]
        path = rnd.choice(_PATHS).replace("{n}", str(rnd.randrange(100_000)))
        size = 0 if status in (304, 499) else rnd.randrange(150, 250_000)
        ref = "-" if rnd.random() < 0.4 else f"https://{vhost}/"
        user = "-" if rnd.random() < 0.98 else rnd.choice(_REAL_USERS)
        rt = min(rnd.lognormvariate(-3.5, 1.3), 60.0)
        yield (
            f'{vhost} {client} - {user} [{stamp}] "{method} {path} HTTP/1.1" {status} {size} "{ref}" '
            f'"{rnd.choice(_UAS)}" {rt:.3f}'
        )


def _novel(rnd: random.Random) -> str:
    """A message of a shape `syslog_lines` never produces (what unknown-line detection is for)."""
    n = rnd.randrange(1, 100_000)
    return rnd.choice(
        [
            f"useradd[{n}]: new user: name=svc{n}, UID={n}, GID={n}, home=/home/svc{n}, shell=/bin/bash",
            f"kernel: [{n}.{n:06d}] Out of memory: Killed process {n} (java) total-vm:{n}kB, anon-rss:{n}kB",
            f"systemd[1]: Started miner{n}.service - System Update Helper.",
            f"kernel: [{n}.000001] EXT4-fs error (device sda1): ext4_find_entry:1455: inode #{n}: comm ls",
            f"sshd[{n}]: error: kex_exchange_identification: banner line contains invalid characters",
            f"nginx[{n}]: worker process {n} exited on signal 11 (core dumped)",
        ]
    )


_HEADER = re.compile(r"\S+ +\d+ \S+ \S+ ")  # "Mon DD HH:MM:SS host "


def syslog_with_novel(n: int, seed: int, novel: dict[str, int] | None) -> Iterator[str]:
    """`syslog_lines` from the tests; with `novel`, about one line in NOVEL_EVERY gets a message of a
    new shape (counted in novel["lines"])."""
    from tests.logs.test_unknownlines import syslog_lines  # the tests' generator: a realistic mixture

    rnd = random.Random(seed + 1_000_003)
    for line in syslog_lines(n, seed):
        if novel is not None and rnd.randrange(NOVEL_EVERY) == 0:
            head = _HEADER.match(line)
            if head is not None:
                line = head[0] + _novel(rnd)
                novel["lines"] = novel.get("lines", 0) + 1
        yield line


def _write(path: Path, lines: Iterable[str], count: Callable[[str], bool] | None = None) -> int:
    """Write the lines, return how many satisfy `count` (0 without it)."""
    hits = 0
    chunk: list[str] = []
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        for line in lines:
            chunk.append(line)
            if count is not None and count(line):
                hits += 1
            if len(chunk) >= 50_000:
                fh.write("\n".join(chunk) + "\n")
                chunk = []
        if chunk:
            fh.write("\n".join(chunk) + "\n")
    return hits


def generate(workdir: Path, lines: int, seed: int) -> dict[str, Any]:
    """Write the log files (unless the manifest says they are there); return the manifest."""
    manifest_path = workdir / "logs" / "manifest.json"
    want = {"version": 1, "lines": lines, "seed": seed, "sample": SAMPLE_LINES}
    with contextlib.suppress(OSError, ValueError):
        have = json.loads(manifest_path.read_text())
        if all(have.get(k) == v for k, v in want.items()):
            log(f"reusing the log files in {manifest_path.parent}")
            return dict(have)
    d = workdir / "logs"
    d.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    failed = _write(d / "auth.log", auth_lines(lines, seed), lambda s: "Failed password" in s)
    _write(d / "access.log", access_lines(lines, seed))
    novel: dict[str, int] = {}
    _write(d / "syslog.log", syslog_with_novel(lines, seed, novel))
    _write(d / "syslog-sample.log", syslog_with_novel(SAMPLE_LINES, seed + 7, None))
    sizes = {p.name: p.stat().st_size for p in d.glob("*.log")}
    manifest = {**want, "failed_password": failed, "novel_lines": novel.get("lines", 0), "bytes": sizes}
    manifest_path.write_text(json.dumps(manifest, indent=1))
    log(
        f"generated {lines:,} lines x 3 + {SAMPLE_LINES:,} sample lines in {time.perf_counter() - t:.1f} s: "
        + ", ".join(f"{k} {v / MIB:.0f} MiB" for k, v in sorted(sizes.items()))
    )
    return manifest


# --- the Vigil worker (one workload, in its own process) -----------------------------------------


def _run_pipeline(
    workdir: Path,
    name: str,
    source: str,
    path: Path,
    processors: list[Any],
    clock: Callable[[], float] | None,
) -> dict[str, Any]:
    from vigil.logs.pipeline import FileSource, LogPipeline

    state = workdir / "state" / f"{name}.checkpoint.json"
    state.parent.mkdir(parents=True, exist_ok=True)
    state.unlink(missing_ok=True)
    kinds: dict[str, int] = {}

    def emit(events: list[Any]) -> None:
        for e in events:
            kinds[e.kind] = kinds.get(e.kind, 0) + 1

    kw: dict[str, Any] = {} if clock is None else {"clock": clock}
    pipeline = LogPipeline(
        [FileSource(source, [str(path)], processors, start_at_end=False)], state, emit=emit, **kw
    )
    rss0 = vm_hwm()
    total = polls = 0
    c0, t0 = time.process_time(), time.perf_counter()
    while True:
        n = pipeline.poll_once()
        polls += 1
        if n == 0:
            break
        total += n
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    pipeline.stop()
    return {"lines": total, "wall": wall, "cpu": cpu, "polls": polls, "events": kinds, "rss_before": rss0}


def worker(name: str, workdir: Path) -> dict[str, Any]:
    logs = workdir / "logs"
    if name == "auth":
        from vigil.security.authlog import AuthLogProcessor

        auth = AuthLogProcessor()
        out = _run_pipeline(workdir, name, "auth", logs / "auth.log", [auth], None)
        counts = auth.snapshot()["counts"]
        out["failures"] = sum(n for _, result, _, n in counts if result == "failure")
        out["attempts"] = sum(n for *_, n in counts)
        return out
    if name == "access":
        from vigil.logs.access import AccessLogProcessor

        access = AccessLogProcessor()
        out = _run_pipeline(workdir, name, "nginx", logs / "access.log", [access], None)
        snap = access.snapshot()
        out["requests"] = {f"{v}|{m}|{c}": n for _, v, m, c, n, _ in snap["requests"]}
        bytes_by: dict[str, int] = {}
        for _, v, _, _, _, b in snap["requests"]:
            bytes_by[v] = bytes_by.get(v, 0) + b
        out["bytes"] = bytes_by
        out["durations"] = {
            v: {"count": sum(h[:-1]), "sum": h[-1], "buckets": h[:-1]} for _, v, h in snap["durations"]
        }
        out["unparsed"] = sum(snap["unparsed"].values())
        return out
    if name in ("unknown-learn", "unknown"):
        from vigil.logs.unknownlines import DetectorSettings, UnknownLineDetector

        tdir = workdir / "templates"
        if name == "unknown-learn":
            shutil.rmtree(tdir, ignore_errors=True)
        tdir.mkdir(parents=True, exist_ok=True)
        now = T_LEARN if name == "unknown-learn" else T_LEARN + 2 * 86_400
        det = UnknownLineDetector(tdir, sources=["syslog"], settings=DetectorSettings(), clock=time.time)
        path = logs / ("syslog-sample.log" if name == "unknown-learn" else "syslog.log")
        out = _run_pipeline(workdir, name, "syslog", path, [det], lambda: now)
        det.save()
        src = det.snapshot()["sources"]["syslog"]
        baseline = det.baseline("syslog")
        out["unknown"] = src["unknown"]
        out["suppressed"] = src["suppressed"]
        out["templates"] = baseline.counts() if baseline is not None else {}
        out["learning"] = det.learning("syslog")
        return out
    if name == "counting-rule":
        from vigil.logs.linerules import LineRuleProcessor, parse_line_rules

        rules = LineRuleProcessor(
            parse_line_rules({"rules": [{"name": "failed_password_total", "match": "Failed password"}]})
        )
        out = _run_pipeline(workdir, name, "auth", logs / "auth.log", [rules], None)
        rule = rules.snapshot()["rules"]["failed_password_total"]
        out["matches"] = int(sum(v for _, v in rule["series"]))
        return out
    raise ValueError(f"unknown workload {name!r}")


def _worker_main(name: str, workdir: Path, profile: bool) -> int:
    if profile:
        prof = cProfile.Profile()
        out = prof.runcall(worker, name, workdir)
        buf = io.StringIO()
        stats = pstats.Stats(prof, stream=buf)
        stats.sort_stats("tottime").print_stats(15)
        stats.sort_stats("cumulative").print_stats(25)
        print(buf.getvalue(), file=sys.stderr, flush=True)
    else:
        out = worker(name, workdir)
    out["peak_rss"] = vm_hwm()
    print(json.dumps(out), flush=True)
    return 0


# --- running a measured process ----------------------------------------------------------------------


@dataclass
class Proc:
    rc: int
    wall: float
    cpu: float
    peak_rss: int  # the largest VmHWM read while it ran (see `vm_hwm`)
    stdout: str


def vm_hwm(pid: int | str = "self") -> int:
    """The peak RSS (bytes) of a process's address space so far, 0 if gone.

    Not wait4()'s ru_maxrss: Linux carries the forking parent's peak over into the child's across
    fork+exec, so a child of this (large) Python process would report at least the parent's size.
    """
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def run_measured(argv: list[str], cwd: Path, timeout: float = 3600.0) -> Proc:
    """Run argv to completion: wall time, CPU (wait4's rusage: the process and all its threads) and
    peak RSS (its VmHWM, read every few ms until it exits)."""
    with tempfile.TemporaryFile() as out:
        peak = 0
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        try:
            deadline = t0 + timeout
            while True:
                pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                peak = max(peak, vm_hwm(proc.pid))
                if time.perf_counter() > deadline:
                    raise TimeoutError(f"{argv[0]} ran longer than {timeout:.0f} s")
                time.sleep(0.005)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(proc.pid, 0)
            proc.returncode = -9
            raise
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode(errors="replace")
    return Proc(proc.returncode, wall, ru.ru_utime + ru.ru_stime, peak, text)


# --- results ----------------------------------------------------------------------------------------


@dataclass
class Result:
    system: str
    workload: str
    lines: int
    wall: float
    cpu: float
    peak_rss: int
    detail: str
    checks: dict[str, Any] = field(default_factory=dict)
    runs: int = 1

    @property
    def lines_per_s(self) -> float:
        return self.lines / self.wall if self.wall > 0 else 0.0

    @property
    def cpu_per_m(self) -> float:
        return self.cpu / (self.lines / 1e6) if self.lines else math.nan

    def line(self) -> str:
        runs = f", best of {self.runs}" if self.runs > 1 else ""
        return (
            f"logs {self.system} {self.workload}: {self.lines_per_s:,.0f} lines/s, "
            f"{self.cpu_per_m:.2f} cpu-s/M lines, peak RSS {self.peak_rss / MIB:,.0f} MiB "
            f"({self.lines:,} lines, {self.detail}{runs})"
        )


def ratio_line(workload: str, v: Result, m: Result) -> str:
    r = v.lines_per_s / m.lines_per_s if m.lines_per_s else math.nan
    c = v.cpu_per_m / m.cpu_per_m if m.cpu_per_m else math.nan
    rss = v.peak_rss / m.peak_rss if m.peak_rss else math.nan
    met = "met" if r >= 1.0 else "NOT met"
    return (
        f"ratio vigil/mtail {workload}: lines/s {r:.2f}x, cpu-s/M {c:.2f}x, peak RSS {rss:.2f}x "
        f"(target lines/s >= 1.00x: {met})"
    )


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}"


def run_vigil(workload: str, workdir: Path, manifest: dict[str, Any], profile: bool) -> Result:
    def call(name: str) -> tuple[dict[str, Any], Proc]:
        argv = [sys.executable, "-m", "bench.logs", "--worker", name, "--workdir", str(workdir)]
        p = run_measured(argv + (["--profile"] if profile else []), REPO)
        if p.rc != 0:
            raise RuntimeError(f"vigil worker {name} exited with {p.rc}")
        data = json.loads(p.stdout.strip().splitlines()[-1])
        log(
            f"vigil {name}: poll loop {data['wall']:.2f} s wall, {data['cpu']:.2f} s cpu, "
            f"{data['polls']} polls; whole process {p.wall:.2f} s wall, {p.cpu:.2f} s cpu; RSS before the "
            f"loop {data['rss_before'] / MIB:.0f} MiB, peak {data['peak_rss'] / MIB:.0f} MiB; "
            f"events {data['events']}"
        )
        return data, p

    extra = ""
    if workload == "unknown":
        learn, _ = call("unknown-learn")
        extra = (
            f"; learned {sum(learn['templates'].values()):,} templates from {learn['lines']:,} lines at "
            f"{learn['lines'] / learn['wall']:,.0f} lines/s"
        )
    data, p = call(workload)
    events = sum(data["events"].values())
    checks: dict[str, Any] = {}
    if workload == "auth":
        detail = f"{data['attempts']:,} auth attempts, {data['failures']:,} failures, {events:,} events"
    elif workload == "access":
        reqs = sum(data["requests"].values())
        detail = f"{reqs:,} requests, {data['unparsed']:,} unparsed, {events:,} events"
        checks = {"requests": data["requests"], "bytes": data["bytes"], "durations": data["durations"]}
    elif workload == "unknown":
        status = data["templates"]
        detail = (
            f"{data['unknown']:,} unknown ({manifest['novel_lines']:,} novel lines in the file), "
            f"{events:,} events, {data['suppressed']:,} suppressed, "
            f"{status.get('pending', 0):,} pending templates{extra}"
        )
        if data["learning"]:
            detail += " (STILL LEARNING: detection did not start)"
            checks["error"] = "still learning"
    else:
        detail = f"{data['matches']:,} matches (expected {manifest['failed_password']:,}), {events:,} events"
        checks = {"matches": data["matches"]}
    return Result(
        "vigil",
        workload,
        data["lines"],
        data["wall"],
        data["cpu"],
        max(p.peak_rss, data["peak_rss"]),
        detail,
        checks,
    )


_SAMPLE = re.compile(r"^([A-Za-z_:][\w:]*)(?:\{([^}]*)\})? (\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def _parse_prom(text: str) -> list[tuple[str, dict[str, str], float]]:
    out = []
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m:
            out.append((m[1], dict(_LABEL.findall(m[2] or "")), float(m[3])))
    return out


def run_mtail(workload: str, workdir: Path, mtail: str, lines: int) -> Result:
    d = workdir / "mtail" / workload
    shutil.rmtree(d, ignore_errors=True)
    (d / "progs").mkdir(parents=True)
    (d / "log").mkdir()
    if workload == "counting-rule":
        (d / "progs" / "failed_password.mtail").write_text(MTAIL_COUNTING)
        path = workdir / "logs" / "auth.log"
    else:
        (d / "progs" / "access.mtail").write_text(MTAIL_ACCESS)
        path = workdir / "logs" / "access.log"
    argv = [
        mtail,
        "--progs",
        str(d / "progs"),
        "--logs",
        str(path),
        "--one_shot",
        "--one_shot_format",
        "prometheus",
    ]
    argv += ["--log_dir", str(d / "log"), "--logtostderr=false", "--alsologtostderr=false"]
    p = run_measured(argv, d)
    if p.rc != 0:
        raise RuntimeError(f"mtail exited with {p.rc}: {p.stdout[-500:]} (its logs: {d / 'log'})")
    (d / "metrics.txt").write_text(p.stdout)
    samples = _parse_prom(p.stdout)
    log(f"mtail {workload}: {p.wall:.2f} s wall, {p.cpu:.2f} s cpu, peak RSS {p.peak_rss / MIB:.0f} MiB")
    checks: dict[str, Any] = {}
    if workload == "counting-rule":
        matches = int(sum(v for name, _, v in samples if name == "failed_password_total"))
        detail = f"{matches:,} matches"
        checks = {"matches": matches}
    else:
        requests: dict[str, int] = {}
        nbytes: dict[str, int] = {}
        durations: dict[str, dict[str, Any]] = {}
        for name, labels, v in samples:
            vhost = labels.get("vhost", "")
            if name == "http_requests_total":
                method = labels.get("method", "")
                method = method if method in STD_METHODS else "OTHER"
                key = f"{vhost}|{method}|{labels.get('sc', '?')}xx"
                requests[key] = requests.get(key, 0) + int(v)
            elif name == "http_response_bytes_total":
                nbytes[vhost] = nbytes.get(vhost, 0) + int(v)
            elif name == "http_request_duration_seconds_bucket":
                durations.setdefault(vhost, {}).setdefault("cumulative", []).append(int(v))
            elif name == "http_request_duration_seconds_count":
                durations.setdefault(vhost, {})["count"] = int(v)
            elif name == "http_request_duration_seconds_sum":
                durations.setdefault(vhost, {})["sum"] = v
        detail = f"{sum(requests.values()):,} requests"
        checks = {"requests": requests, "bytes": nbytes, "durations": durations}
    return Result("mtail", workload, lines, p.wall, p.cpu, p.peak_rss, detail, checks)


def compare(workload: str, v: Result, m: Result) -> list[str]:
    """Differences between what Vigil and mtail counted (empty when they agree)."""
    errors: list[str] = []
    if workload == "counting-rule":
        if v.checks["matches"] != m.checks["matches"]:
            errors.append(f"vigil counted {v.checks['matches']:,}, mtail {m.checks['matches']:,}")
        return errors
    for part in ("requests", "bytes"):
        a, b = v.checks[part], m.checks[part]
        for key in sorted(set(a) | set(b)):
            if a.get(key, 0) != b.get(key, 0):
                errors.append(f"{part}[{key}]: vigil {a.get(key, 0):,}, mtail {b.get(key, 0):,}")
    a, b = v.checks["durations"], m.checks["durations"]
    zeros: dict[str, int] = {}
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key, {}), b.get(key, {})
        cumulative, acc = [], 0
        for n in x.get("buckets", []):
            acc += int(n)
            cumulative.append(acc)
        gaps = {c - d for c, d in zip(cumulative, y.get("cumulative", []), strict=False)}
        if len(cumulative) != len(y.get("cumulative", [])) or len(gaps) > 1:
            errors.append(f"durations[{key}] buckets: vigil {cumulative}, mtail {y.get('cumulative')}")
        elif gaps and (gap := gaps.pop()):
            zeros[key] = gap
            if gap != x.get("count", 0) - y["cumulative"][-1]:
                errors.append(f"durations[{key}] buckets: vigil {cumulative}, mtail {y.get('cumulative')}")
        if x.get("count") != y.get("count") or not math.isclose(
            x.get("sum", 0), y.get("sum", 0), rel_tol=1e-9
        ):
            errors.append(
                f"durations[{key}]: vigil {x.get('count')} / {x.get('sum')}, "
                f"mtail {y.get('count')} / {y.get('sum')} (count / sum)"
            )
    if zeros:
        log(
            "access: mtail's duration buckets (+Inf included) hold fewer observations than its _count, by "
            f"{zeros}: mtail 3.0.0~rc50 leaves observations of exactly 0 (request_time 0.000) out of every "
            "bucket; Vigil counts them in le=0.005.  Counts and sums agree."
        )
    return errors


# --- CLI ----------------------------------------------------------------------------------------------


def _parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.logs", description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument(
        "--lines", type=int, default=1_000_000, help="lines per generated log (default 1,000,000)"
    )
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--mtail", default="mtail", help="the mtail binary (default: mtail on PATH)")
    ap.add_argument("--workdir", type=Path, help="where the logs and state go (default: a temp dir, removed)")
    ap.add_argument("--only", choices=SYSTEMS, help="run one system only")
    ap.add_argument(
        "--workloads", default=",".join(WORKLOADS), help=f"comma-separated subset of {', '.join(WORKLOADS)}"
    )
    ap.add_argument("--repeat", type=int, default=1, help="run each measurement N times, report the best")
    ap.add_argument(
        "--profile", action="store_true", help="run Vigil's workers under cProfile (stderr; slower)"
    )
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    bad = [w for w in args.workloads if w not in WORKLOADS]
    if args.worker is None and (bad or not args.workloads):
        ap.error(f"unknown workload(s) {bad}; choose from {', '.join(WORKLOADS)}")
    if args.lines < 1 or args.repeat < 1:
        ap.error("--lines and --repeat must be positive")
    return args


def _best(runs: list[Result]) -> Result:
    best = max(runs, key=lambda r: r.lines_per_s)
    best.runs = len(runs)
    return best


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.worker is not None:
        if args.workdir is None:
            raise SystemExit("--worker needs --workdir")
        return _worker_main(args.worker, args.workdir, args.profile)
    install_sigterm_handler()
    systems = [args.only] if args.only else list(SYSTEMS)
    mtail: str | None = None
    if "mtail" in systems:
        mtail = shutil.which(args.mtail)
        if mtail is None:
            print(
                f"logs mtail: SKIPPED: {args.mtail!r} not found (install Debian's mtail or pass --mtail)",
                flush=True,
            )
            systems.remove("mtail")
        else:
            version = subprocess.run([mtail, "--version"], capture_output=True, text=True).stdout.strip()
            log(f"mtail: {mtail}: {version.splitlines()[0] if version else '?'}")
    with contextlib.ExitStack() as stack:
        if args.workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="vigil-bench-logs-")))
        else:
            workdir = args.workdir.resolve()
            workdir.mkdir(parents=True, exist_ok=True)
        manifest = generate(workdir, args.lines, args.seed)
        runs: dict[tuple[str, str], list[Result]] = {}
        failed = False
        for _ in range(args.repeat):
            for workload in args.workloads:
                for system in systems:
                    if system == "mtail" and workload not in MTAIL_WORKLOADS:
                        continue
                    try:
                        if system == "vigil":
                            res = run_vigil(workload, workdir, manifest, args.profile)
                        else:
                            assert mtail is not None
                            res = run_mtail(workload, workdir, mtail, args.lines)
                    except (RuntimeError, OSError, ValueError, TimeoutError) as e:
                        print(f"logs {system} {workload}: FAILED: {e}", flush=True)
                        failed = True
                        continue
                    runs.setdefault((system, workload), []).append(res)
        results = {k: _best(v) for k, v in runs.items()}
        for workload in args.workloads:
            for system in systems:
                r = results.get((system, workload))
                if r is None:
                    continue
                print(r.line(), flush=True)
                if "error" in r.checks:
                    failed = True
                if workload == "counting-rule" and r.checks["matches"] != manifest["failed_password"]:
                    print(
                        f"logs {system} {workload}: MISMATCH: counted {r.checks['matches']:,}, the file has "
                        f"{manifest['failed_password']:,} 'Failed password' lines",
                        flush=True,
                    )
                    failed = True
            v, m = results.get(("vigil", workload)), results.get(("mtail", workload))
            if v is not None and m is not None:
                errors = compare(workload, v, m)
                for err in errors[:10]:
                    print(f"logs {workload}: MISMATCH vigil/mtail: {err}", flush=True)
                failed |= bool(errors)
                print(ratio_line(workload, v, m), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
