"""Every command of the README's quick start and event examples, run as written (the ports aside)
against a fresh `vigil up` in an empty directory: each must print the answer the README promises.

The commands are read from the README itself, so an example that stops working (a query over a
series nothing produces, a time range in the past, an answer shown in another shape than the server's)
fails here. A command the README gains needs an expectation below; the test says which one is missing.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, wait_http

README = (Path(__file__).parent.parent.parent / "README.md").read_text()
HOST = socket.gethostname()


def section(start: str, end: str) -> str:
    return README[README.index(start) : README.index(end)]


QUICK_START = section("## Quick start", "## Commands")
EVENTS = section("### Events", "## PromQL")


@dataclass
class Command:
    text: str
    expected: str | None = None  # the answer the README shows under it, as `# …` lines


def commands(markdown: str) -> list[Command]:
    """Shell commands of the ```sh blocks (continued lines joined, trailing `  # …` notes dropped;
    `# …` lines right after a command are its expected output), then `vigil query` spans of the prose."""
    out: list[Command] = []
    for block in re.findall(r"```sh\n(.*?)```", markdown, re.S):
        pending = ""
        for line in block.splitlines():
            if line.startswith("# ") and not pending and out:
                shown = line[2:]
                out[-1].expected = shown if out[-1].expected is None else out[-1].expected + "\n" + shown
                continue
            pending = f"{pending}\n{line}" if pending else line
            if not line.rstrip().endswith(("|", "\\")):
                out.append(Command(re.sub(r"\s{2,}#\s.*$", "", pending)))
                pending = ""
    prose = re.sub(r"```.*?```", "", markdown, flags=re.S)
    out += [Command(c) for c in re.findall(r"`(vigil query '[^`]*')`", prose)]
    return out


def shown(expected: str) -> re.Pattern[str]:
    """The README's shown answer as a pattern: `…` stands for anything."""
    return re.compile(".*".join(re.escape(part) for part in expected.split("…")), re.S)


# -- what each command must answer ----------------------------------------------------------------------

Check = Callable[[str, "Env"], bool]


def table_row(pattern: str) -> Check:
    """A `vigil query` table with a header and a row matching `pattern`."""

    def check(out: str, _: Env) -> bool:
        lines = out.splitlines()
        return (
            bool(lines)
            and lines[0].split() == ["SERIES", "VALUE", "TIME"]
            and any(re.match(pattern, row) for row in lines[1:])
        )

    return check


def agent_up_json(out: str, _: Env) -> bool:
    body = json.loads(out)
    return body["status"] == "success" and any(
        r["metric"].get("job") == "vigil-agent" and r["value"][1] == "1" for r in body["data"]["result"]
    )


def imported(out: str, env: Env) -> bool:
    # The import answers 204 with no body; what it did shows in a query.
    result = env.api("backup_last_success_timestamp_seconds")
    return out == "" and bool(result) and abs(float(result[0]["value"][1]) - time.time()) < 3600


AGENT = r'.*job="vigil-agent".*'
ON_HOST = rf'.*instance="{re.escape(HOST)}"'
EXPECTED: dict[str, Check] = {
    "vigil query 'node_load1'": table_row(rf"node_load1\{{{AGENT}\}}\s+\d"),
    "vigil query 'up{job=\"vigil-agent\"}'": table_row(rf"up\{{{ON_HOST}{AGENT}\}}\s+1\s"),
    "vigil query 'sum by (instance) (rate(node_cpu_seconds_total{mode!=\"idle\"}[5m]))'": table_row(
        rf'\{{instance="{re.escape(HOST)}"\}}\s+[0-9.e+-]+\s'
    ),
    "vigil query 'up' --start now-1h --step 1m": table_row(rf"up\{{{AGENT}\}}\s+1\s"),
    "vigil query 'up' --json": agent_up_json,
    "curl -s 'http://127.0.0.1:9400/api/v1/query?query=up'": agent_up_json,
    'echo \'backup_last_success_timestamp_seconds{host="db1"} \'"$(date +%s)" |\n'
    "  curl --data-binary @- http://127.0.0.1:9400/api/v1/import/prometheus": imported,
}
# Not run here: `make run` is `vigil up $(ARGS)` (tests/test_packaging.py), and this test runs that
# `vigil up`; `make test` is the suite itself.
NOT_RUN = {"make run", "make test"}


@dataclass
class Env:
    tmp: Path
    port: int
    agent_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def localize(self, command: str) -> str:
        return command.replace("127.0.0.1:9400", f"127.0.0.1:{self.port}").replace(
            "127.0.0.1:9401", f"127.0.0.1:{self.agent_port}"
        )

    def run(self, command: str) -> subprocess.CompletedProcess[str]:
        path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
        return subprocess.run(
            ["bash", "-c", f"set -o pipefail\n{self.localize(command)}"],
            cwd=self.tmp,
            env={**os.environ, "PATH": path},
            capture_output=True,
            text=True,
            timeout=60,
        )

    def api(self, query: str) -> list[dict]:
        r = httpx.get(self.url + "/api/v1/query", params={"query": query}, timeout=10)
        assert r.status_code == 200, r.text
        return list(r.json()["data"]["result"])


def start_up(env: Env) -> subprocess.Popen[bytes]:
    p = subprocess.Popen(
        [sys.executable, "-m", "vigil", "up"], cwd=env.tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        wait_http(env.url + "/-/ready", proc=p, timeout=60)
    except BaseException:
        p.kill()
        p.wait()
        raise
    return p


def stop(p: subprocess.Popen[bytes]) -> str:
    p.send_signal(signal.SIGINT)  # Ctrl-C, as the README says
    out = p.communicate(timeout=60)[0].decode(errors="replace")
    assert p.returncode == 0, out
    return out


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path, free_port(), free_port())
    # The defaults, but on free ports (and a shorter interval, so rate() has two samples sooner).
    (tmp_path / "vigil.yml").write_text(
        f"server:\n  listen: 127.0.0.1:{e.port}\n"
        f"agent:\n  listen: 127.0.0.1:{e.agent_port}\n  interval: 1s\n"
        f"  statsd:\n    udp_listen: 127.0.0.1:{free_port()}\n"
    )
    yield e


def run_until(env: Env, command: Command, check: Check | None, deadline_s: float = 60.0) -> str:
    """Run `command` until its answer is right (the agent's first rounds take a few seconds)."""
    deadline = time.monotonic() + deadline_s
    while True:
        r = env.run(command.text)
        ok = r.returncode == 0 and (
            (check is not None and _safe(check, r.stdout, env))
            or (command.expected is not None and shown(command.expected).fullmatch(r.stdout.strip()))
        )
        if ok:
            return r.stdout
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{command.text!r}: rc={r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}\n"
                f"expected: {command.expected or check}"
            )
        time.sleep(0.5)


def _safe(check: Check, out: str, env: Env) -> bool:
    try:
        return check(out, env)
    except (ValueError, KeyError, IndexError, TypeError):
        return False


def test_the_commands_are_found() -> None:
    found = [c.text for c in commands(QUICK_START) + commands(EVENTS)]
    assert set(NOT_RUN) <= set(found)
    assert len(found) >= len(NOT_RUN) + len(EXPECTED) + 2, found
    for c in commands(EVENTS):
        assert c.expected, f"the events example {c.text!r} shows no answer"


def test_readme_commands_against_a_fresh_vigil_up(env: Env) -> None:
    quick, events = commands(QUICK_START), commands(EVENTS)
    missing = [c.text for c in quick + events if c.text not in NOT_RUN | set(EXPECTED) and not c.expected]
    assert not missing, f"README commands without an expectation in this test: {missing}"
    p = start_up(env)
    try:
        for c in quick + events:
            if c.text in NOT_RUN:
                continue
            out = run_until(env, c, EXPECTED.get(c.text))
            assert out.strip() or EXPECTED.get(c.text) is imported, c.text
        # The agent's own /metrics, where the quick start says it is.
        own = httpx.get(f"http://127.0.0.1:{env.agent_port}/metrics", timeout=10)
        assert own.status_code == 200 and "vigil_agent_collections_total" in own.text
    finally:
        if p.poll() is None:
            stop(p)
    # "Stop it with Ctrl-C; start it again and everything acknowledged is still there."
    p = start_up(env)
    try:
        assert env.api('backup_last_success_timestamp_seconds{host="db1"}')
        r = httpx.get(env.url + "/api/v1/events", params={"match[]": '{kind="backup"}'}, timeout=10)
        assert [e["message"] for e in r.json()["data"]["events"]] == ["nightly backup failed"]
    finally:
        stop(p)
