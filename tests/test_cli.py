"""The `vigil` command: version, config check, start-up refusals with one clear line and exit codes."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

from tests.conftest import VigilProcess, free_port, wait_http
from vigil import __version__


def vigil(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vigil", *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_version(tmp_path: Path) -> None:
    r = vigil("--version", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == f"vigil {__version__}"


def test_config_check(tmp_path: Path) -> None:
    (tmp_path / "vigil.yml").write_text("storage:\n  retention: 30d\n")
    r = vigil("config", "check", cwd=tmp_path)
    assert r.returncode == 0 and "vigil.yml: OK" in r.stdout
    (tmp_path / "vigil.yml").write_text("storage:\n  retention: forever\n")
    r = vigil("config", "check", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip() == 'vigil.yml: storage.retention: expected a duration like 15d, got "forever"'


def test_server_refuses_bad_config_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "vigil.yml").write_text("storage:\n  retention: forever\n")
    r = vigil("server", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "storage.retention" in r.stderr
    r = vigil("server", "--config", "vigil.yml", "--retention", "soon", cwd=tmp_path)
    assert r.returncode == 2 and "storage.retention" in r.stderr  # the file is read first


def test_non_loopback_needs_tokens_or_insecure(tmp_path: Path) -> None:
    r = vigil("server", "--listen", f"0.0.0.0:{free_port()}", "--data-dir", "d", cwd=tmp_path)
    assert r.returncode == 2 and "refusing to listen on 0.0.0.0" in r.stderr
    assert not (tmp_path / "d").exists()  # refused before touching anything


def test_data_dir_in_use(tmp_path: Path) -> None:
    v = VigilProcess(tmp_path / "data").start()
    try:
        r = vigil(
            "server", "--listen", f"127.0.0.1:{free_port()}", "--data-dir", str(v.data_dir), cwd=tmp_path
        )
        assert r.returncode == 1 and "in use by another Vigil process" in r.stderr
    finally:
        v.stop()


def test_up_serves_with_defaults_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    # The defaults but the agent's addresses: `vigil up` binds agent.listen, and tests use free ports.
    (tmp_path / "vigil.yml").write_text(
        f"agent:\n  listen: 127.0.0.1:{free_port()}\n  statsd:\n    udp_listen: 127.0.0.1:{free_port()}\n"
    )
    p = subprocess.Popen(
        [sys.executable, "-m", "vigil", "up", "--listen", f"127.0.0.1:{port}"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/-/ready", proc=p)
        assert (tmp_path / "data" / "series.sqlite").exists()  # the default data directory
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=20) == 0


def test_corrupt_file_is_named_not_a_traceback(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "blocks").mkdir(parents=True)
    (data / "blocks" / "00000001-0-1.block").write_bytes(b"VIGILBLK\x01 truncated")
    r = vigil("server", "--listen", f"127.0.0.1:{free_port()}", "--data-dir", str(data), cwd=tmp_path)
    assert r.returncode == 1
    assert "00000001-0-1.block" in r.stderr and "Traceback" not in r.stderr


def test_config_check_without_a_file_checks_the_defaults(tmp_path: Path) -> None:
    r = vigil("config", "check", cwd=tmp_path)  # no vigil.yml: none is needed
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "no vigil.yml, the defaults: OK" and r.stderr == ""
    r = vigil("config", "check", "missing.yml", cwd=tmp_path)  # a file named but absent is wrong
    assert r.returncode == 2 and r.stderr.startswith("missing.yml: cannot read")


def test_rule_glob_matching_nothing_yet_is_a_warning(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (tmp_path / "vigil.yml").write_text(f"agent:\n  logs:\n    rule_files: ['{rules}/*.yml']\n")
    r = vigil("config", "check", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "vigil.yml: OK"
    assert r.stderr == (
        f"vigil.yml: agent.logs.rule_files: no file matches '{rules}/*.yml' yet, so it adds no rules\n"
    )
    # A plain path is not a glob: naming a file that is not there stays an error, naming it.
    (tmp_path / "vigil.yml").write_text(f"agent:\n  logs:\n    rule_files: ['{rules}/app.yml']\n")
    r = vigil("config", "check", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.startswith(f"{rules}/app.yml: cannot read")


def test_bad_rule_regex_is_one_clean_line(tmp_path: Path) -> None:
    (tmp_path / "rules.yml").write_text("rules:\n  - name: x_total\n    match: '(?P<x'\n")
    (tmp_path / "vigil.yml").write_text("agent:\n  logs:\n    rule_files: [rules.yml]\n")
    r = vigil("config", "check", cwd=tmp_path)
    assert r.returncode == 2
    # Only our line: nothing from RE2's own logging (absl), and RE2's message as text, not bytes.
    assert r.stderr == (
        "rules.yml: rules[0].match: expected a regular expression in RE2 syntax (no look-around or "
        'back-references), got "(?P<x": invalid named capture group: (?P<x\n'
    )


def test_address_in_use_is_one_line_exit_2_and_creates_nothing(tmp_path: Path) -> None:
    """The address is bound before anything else: a taken one is one line naming it, exit 2, no data
    directory, and no "listening" claimed first."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        busy = f"127.0.0.1:{taken.getsockname()[1]}"
        r = vigil("server", "--listen", busy, "--data-dir", "d", cwd=tmp_path)
        assert r.returncode == 2, r.stderr
        assert r.stderr == (
            f"vigil: cannot listen on {busy} (server.listen): address already in use "
            "(another Vigil on this host? choose another with --listen or server.listen)\n"
        )
        assert r.stdout == "" and not (tmp_path / "d").exists()
        # `vigil up` binds its agent's /metrics address first too, and so does `vigil agent`.
        (tmp_path / "vigil.yml").write_text(f"agent:\n  listen: {busy}\n  data_dir: d/agent\n")
        r = vigil("up", "--listen", f"127.0.0.1:{free_port()}", "--data-dir", "d", cwd=tmp_path)
        assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
        assert r.stderr.startswith(f"vigil: cannot listen on {busy} (agent.listen): address already in use")
        r = vigil("agent", cwd=tmp_path)
        assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
        assert f"{busy} (agent.listen): address already in use" in r.stderr and "`vigil up`" in r.stderr
        assert not (tmp_path / "d").exists()
