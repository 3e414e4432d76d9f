"""`vigil silence` pieces that need no server: matcher arguments as amtool reads them, amtool's table.
(The commands against real servers, Vigil and Alertmanager, are in tests/system/test_amtool.py.)"""

from __future__ import annotations

import pytest

from vigil.cmd.main import main
from vigil.cmd.silence import SilenceCommandError, parse_silence_matchers, render_table


def test_matcher_arguments() -> None:
    got = [str(m) for m in parse_silence_matchers(["DiskFull", 'job=~"a|b"', "sev!=info"])]
    assert got == ['alertname="DiskFull"', 'job=~"a|b"', 'sev!="info"']
    with pytest.raises(SilenceCommandError, match="bad matcher"):
        parse_silence_matchers(["a=b", "Bare"])  # only the first may be a bare alert name
    with pytest.raises(SilenceCommandError, match="bad matcher"):
        parse_silence_matchers(['a=~"x'])


def test_table_is_amtools() -> None:
    table = render_table(
        [
            {
                "id": "id-1",
                "matchers": [
                    {"name": "alertname", "value": "X", "isRegex": False, "isEqual": True},
                    {"name": "job", "value": "a|b", "isRegex": True, "isEqual": False},
                ],
                "endsAt": "2024-05-01T12:00:00.000Z",
                "createdBy": "me",
                "comment": "why",
            }
        ]
    )
    assert table.splitlines() == [
        "ID    Matchers                  Ends At                  Created By  Comment  ",
        'id-1  alertname="X" job!~"a|b"  2024-05-01 12:00:00 UTC  me          why      ',
    ]


def test_unreachable_server_is_one_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    from tests.conftest import free_port

    url = f"http://127.0.0.1:{free_port()}"
    assert main(["silence", "list", "--url", url]) == 1
    err = capsys.readouterr().err
    assert err.startswith("vigil silence: cannot reach") and err.count("\n") == 1


def test_bad_duration(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["silence", "add", "a=b", "--comment", "c", "--duration", "soon", "--url", "http://127.0.0.1:1"])
        == 1
    )
    assert "--duration" in capsys.readouterr().err
