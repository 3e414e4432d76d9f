"""`vigil query`: table and JSON output, range queries, relative times and one-line errors, against a
real server (once the engine and query routes exist) plus the pure rendering helpers."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import VigilProcess, free_port
from vigil.cmd import query as cli

TOKEN = "r3ad"


def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="vigil")
    cli.add_parser(p.add_subparsers(dest="command"))
    return p.parse_args(["query", *argv])


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.run(parse(*argv))
    out, err = capsys.readouterr()
    return code, out, err


# -- without a server ---------------------------------------------------------------------------------


def test_render_vector_aligned() -> None:
    data = {
        "resultType": "vector",
        "result": [
            {"metric": {"__name__": "up", "job": "node", "instance": "a:9100"}, "value": [1700000000, "1"]},
            {"metric": {"__name__": "up", "job": "x"}, "value": [1700000000.5, "0.25"]},
            {"metric": {}, "value": [1700000000, "-Inf"]},
        ],
    }
    lines = cli.render(data).splitlines()
    assert lines == [
        "SERIES                             VALUE  TIME",
        'up{job="node", instance="a:9100"}      1  2023-11-14T22:13:20Z',
        'up{job="x"}                         0.25  2023-11-14T22:13:20.500Z',
        "{}                                  -Inf  2023-11-14T22:13:20Z",
    ]


def test_render_matrix_scalar_string_empty() -> None:
    matrix = {
        "resultType": "matrix",
        "result": [
            {"metric": {"job": "a"}, "values": [[0, "1"], [15, "2"]]},
            {"metric": {"job": "b"}, "values": [[0, "3"]]},
        ],
    }
    assert cli.render(matrix).splitlines() == [
        "SERIES     VALUE  TIME",
        '{job="a"}      1  1970-01-01T00:00:00Z',
        "               2  1970-01-01T00:00:15Z",
        '{job="b"}      3  1970-01-01T00:00:00Z',
    ]
    assert cli.render({"resultType": "scalar", "result": [4, "2"]}).splitlines() == [
        "VALUE  TIME",
        "    2  1970-01-01T00:00:04Z",
    ]
    assert (
        cli.render({"resultType": "string", "result": [4, "hi"]}).splitlines()[1]
        == "   hi  1970-01-01T00:00:04Z"
    )
    assert cli.render({"resultType": "vector", "result": []}) == "(empty result)"


def test_resolve_time_and_default_step() -> None:
    now = 1_700_000_000.0
    assert cli.resolve_time("now", now) == "1700000000.000"
    assert cli.resolve_time("now-1h", now) == "1699996400.000"
    assert cli.resolve_time("-90s", now) == "1699999910.000"
    assert cli.resolve_time("1600000000", now) == "1600000000"
    assert cli.resolve_time("2024-01-01T00:00:00Z", now) == "2024-01-01T00:00:00Z"
    with pytest.raises(cli.QueryError):
        cli.resolve_time("now-soon", now)
    assert cli.default_step(0, 3600) == "15s"
    assert cli.default_step(0, 10) == "1s"


def test_unreachable_server_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "up", "--url", f"http://127.0.0.1:{free_port()}")
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("vigil query: cannot reach http://127.0.0.1:")


def test_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "up", "--step", "15s")
    assert code == 1 and err == "vigil query: a range query needs --start\n"
    code, _, err = run(capsys, "up", "--time", "1", "--start", "0")
    assert code == 1 and "--time is for instant queries" in err


# -- against a real server ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[VigilProcess, float]]:
    tmp = tmp_path_factory.mktemp("cli_query")
    cfg = tmp / "vigil.yml"
    cfg.write_text(f"server:\n  auth:\n    read_tokens: [{TOKEN}]\n")
    v = VigilProcess(tmp / "data", extra_args=["--config", str(cfg)]).start()
    try:
        now_ms = int(time.time() * 1000) // 1000 * 1000
        lines = []
        for k in range(20):  # five minutes of 15s samples up to now
            t = now_ms - (19 - k) * 15_000
            lines += [f'up{{job="node",instance="a"}} 1 {t}', f'up{{job="node",instance="b"}} 0 {t}']
            lines.append(f'requests_total{{job="api"}} {k * 150} {t}')
        r = httpx.post(v.url + "/api/v1/import/prometheus", content="\n".join(lines) + "\n")
        assert r.status_code == 204, r.text
        yield v, now_ms / 1000
    finally:
        v.stop()


def test_instant_query_table(server: tuple[VigilProcess, float], capsys: pytest.CaptureFixture[str]) -> None:
    v, now = server
    code, out, err = run(capsys, "up", "--url", v.url, "--token", TOKEN, "--time", str(now))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["SERIES", "VALUE", "TIME"]
    rows = sorted(line.split("  ") for line in lines[1:])
    assert [r[0].strip() for r in rows] == ['up{instance="a", job="node"}', 'up{instance="b", job="node"}']
    assert len({len(line) for line in lines[1:]}) == 1  # aligned columns


def test_instant_query_json(server: tuple[VigilProcess, float], capsys: pytest.CaptureFixture[str]) -> None:
    v, now = server
    code, out, _ = run(capsys, "sum(up)", "--url", v.url, "--token", TOKEN, "--time", str(now), "--json")
    assert code == 0
    body = json.loads(out)
    assert body["status"] == "success"
    assert body["data"]["result"] == [{"metric": {}, "value": [now if now % 1 else int(now), "1"]}]


def test_range_query(server: tuple[VigilProcess, float], capsys: pytest.CaptureFixture[str]) -> None:
    v, now = server
    args = ["rate(requests_total[1m])", "--url", v.url, "--token", TOKEN]
    code, out, err = run(capsys, *args, "--start", str(now - 120), "--end", str(now), "--step", "60s")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["SERIES", "VALUE", "TIME"]
    assert lines[1].startswith('{job="api"}') and len(lines) == 4  # 3 steps, series named once
    assert all(float(line.split()[-2]) == pytest.approx(10) for line in lines[1:])
    code, out, err = run(capsys, *args, "--start", "now-2m", "--json")  # end now, default step
    assert code == 0, err
    assert json.loads(out)["data"]["resultType"] == "matrix"


def test_server_errors_are_one_line(
    server: tuple[VigilProcess, float], capsys: pytest.CaptureFixture[str]
) -> None:
    v, _ = server
    code, out, err = run(capsys, "up +", "--url", v.url, "--token", TOKEN)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith('vigil query: bad_data: invalid parameter "query": ')
    code, out, err = run(capsys, "up", "--url", v.url, "--token", TOKEN, "--time", "yesterday")
    assert code == 1 and "cannot parse" in err and err.count("\n") == 1
    code, _, err = run(capsys, "up", "--url", v.url)  # no token
    assert code == 1 and err == "vigil query: HTTP 401: unauthorized: missing bearer token\n"
    code, _, err = run(capsys, "up", "--url", v.url, "--token", "wrong")
    assert code == 1 and err == "vigil query: HTTP 401: unauthorized: invalid bearer token\n"


def test_vigil_query_command(server: tuple[VigilProcess, float], tmp_path: Path) -> None:
    v, now = server
    help_run = subprocess.run(
        [sys.executable, "-m", "vigil", "query", "--help"], capture_output=True, text=True
    )
    assert help_run.returncode == 0 and "--url" in help_run.stdout, help_run.stderr
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "vigil",
            "query",
            "count(up)",
            "--url",
            v.url,
            "--token",
            TOKEN,
            "--time",
            str(now),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1].split()[:2] == ["{}", "2"]
    r = subprocess.run(
        [sys.executable, "-m", "vigil", "query", "up +", "--url", v.url, "--token", TOKEN],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "bad_data" in r.stderr


def test_server_address_comes_from_vigil_yml(server: tuple[VigilProcess, float], tmp_path: Path) -> None:
    """Without --url, `vigil query` asks the server `vigil up` in the same directory runs (server.listen
    of ./vigil.yml, or of --config), not always :9400."""
    v, now = server
    listen = v.url.removeprefix("http://")
    (tmp_path / "vigil.yml").write_text(f"server:\n  listen: {listen}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for cwd, extra in ((tmp_path, []), (elsewhere, ["--config", str(tmp_path / "vigil.yml")])):
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "vigil",
                "query",
                "count(up)",
                "--token",
                TOKEN,
                "--time",
                str(now),
                *extra,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=cwd,
        )
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines()[1].split()[:2] == ["{}", "2"]


def test_url_for_listen() -> None:
    assert cli.url_for_listen("127.0.0.1:9500") == "http://127.0.0.1:9500"
    assert cli.url_for_listen("0.0.0.0:9500") == "http://127.0.0.1:9500"
    assert cli.url_for_listen("[::]:9500") == "http://[::1]:9500"
    assert cli.url_for_listen("[::1]:9500") == "http://[::1]:9500"
    assert cli.url_for_listen("localhost:9500") == "http://localhost:9500"


# -- against a hostile server -------------------------------------------------------------------------


@pytest.fixture
def hostile() -> Iterator[tuple[str, list[bytes]]]:
    """A server on 127.0.0.1 answering every request with 200 and the last body put in the list."""
    import http.server
    import threading

    bodies: list[bytes] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(bodies[-1])))
            self.end_headers()
            self.wfile.write(bodies[-1])

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", bodies
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


VECTOR, MATRIX = {"resultType": "vector"}, {"resultType": "matrix"}
UNEXPECTED = "unexpected response: "


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (None, UNEXPECTED + "data is not an object"),
        ({"resultType": "bogus", "result": []}, "unknown result type 'bogus'"),
        (VECTOR | {"result": 5}, UNEXPECTED + "result is not a list"),
        (VECTOR | {"result": [7]}, UNEXPECTED + "a series is not an object"),
        (VECTOR | {"result": [{"value": [1, "2"]}]}, UNEXPECTED + "a metric is not an object"),
        (VECTOR | {"result": [{"metric": {}, "value": [1]}]}, UNEXPECTED + "a point is not"),
        (VECTOR | {"result": [{"metric": {}, "value": ["x", "1"]}]}, UNEXPECTED + "a point is not"),
        (VECTOR | {"result": [{"metric": {}, "value": [1e400, "1"]}]}, UNEXPECTED + "a point is not"),
        (MATRIX | {"result": [{"metric": {}, "values": 3}]}, UNEXPECTED + "values is not a list"),
        ({"resultType": "scalar", "result": "4"}, UNEXPECTED + "a point is not"),
    ],
)
def test_malformed_success_is_one_line(
    hostile: tuple[str, list[bytes]], capsys: pytest.CaptureFixture[str], data: object, says: str
) -> None:
    # A server's "success" body the table cannot show is a one-line error, not a traceback.
    url, bodies = hostile
    body: dict[str, object] = {"status": "success"} | ({} if data is None else {"data": data})
    bodies.append(json.dumps(body).encode())
    code, out, err = run(capsys, "up", "--url", url)
    assert (code, out) == (1, "")
    assert err.count("\n") == 1 and err.startswith(f"vigil query: {says}"), err


def test_odd_but_showable_success(
    hostile: tuple[str, list[bytes]], capsys: pytest.CaptureFixture[str]
) -> None:
    url, bodies = hostile
    data = {"resultType": "vector", "result": [{"metric": {"a": 1}, "value": ["4", 2]}]}
    bodies.append(json.dumps({"status": "success", "data": data, "warnings": 3}).encode())
    code, out, err = run(capsys, "up", "--url", url)
    assert (code, err) == (0, "")
    assert out.splitlines()[1] == "{a=1}       2  1970-01-01T00:00:04Z"
