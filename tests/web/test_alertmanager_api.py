"""Alertmanager's v2 API (vigil.web.alertmanager_api) in-process, over the real `Silences` and the
real notifier core (`vigil.notifier.notifier.Notifier`: its AlertStore takes and lists the alerts, its
dispatcher's aggregation groups are `/alerts/groups`; its integrations only record). Shapes
and messages are the ones Debian's Alertmanager 0.25 answers (tests/system/test_amtool.py compares
the two servers directly)."""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.notifier.corekit import Recorder
from tests.web.asgi import Client
from vigil.model.matcher import Matcher, MatchType
from vigil.notifier.alert import fingerprint
from vigil.notifier.config import alertmanager_config_from_yaml
from vigil.notifier.notifier import Notifier, NotifierLimits
from vigil.notifier.silence import Silences
from vigil.notifier.store import AlertStore
from vigil.web.alertmanager_api import AlertmanagerAPI, ConfigView, MarkerInhibition, format_time, parse_time
from vigil.web.app import create_app
from vigil.web.auth import Tenant, TokenAuth

T0 = 1_700_000_000_000
H = 3_600_000
AM_YAML = """
route:
  receiver: default
  group_by: [alertname]
  routes:
    - matchers: ['team="db"']
      receiver: db-pager
      continue: true
    - matchers: ['severity=~"page|crit"']
      receiver: ops
receivers:
  - name: default
  - name: db-pager
  - name: ops
inhibit_rules:
  - source_matchers: ['alertname="NodeDown"']
    target_matchers: ['alertname="ServiceDown"']
    equal: [node]
"""


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


def clock_wait(_: float) -> bool:
    return True  # a retry gives up at once (the recorders do not fail anyway)


@dataclass
class Env:
    client: Client
    clock: Clock
    silences: Silences
    notifier: Notifier

    @property
    def alerts(self) -> AlertStore:
        return self.notifier.store

    def post_silence(self, **over: Any) -> Any:
        """POST a silence; the body is ASCII JSON, so a lone surrogate travels as its escape."""
        body = {
            "matchers": [{"name": "alertname", "value": "X", "isRegex": False}],
            "startsAt": format_time(T0),
            "endsAt": format_time(T0 + H),
            "createdBy": "me",
            "comment": "c",
        }
        body.update(over)
        return self.client.post(
            "/api/v2/silences",
            content=json.dumps(body).encode(),
            headers={"content-type": "application/json"},
        )


def make_env(tmp_path: Path, auth: TokenAuth | None = None, max_alerts: int = 100) -> Env:
    clock = Clock()
    silences = Silences(tmp_path / "silences", clock=clock)
    cfg = alertmanager_config_from_yaml(AM_YAML)
    # Integrations that record what they are given (nothing leaves the test).
    integrations = {r.name: [Recorder(name="webhook")] for r in cfg.receivers}
    notifier = Notifier(
        cfg,
        integrations,
        muter=silences,
        clock=clock,
        wait=clock_wait,
        limits=NotifierLimits(max_alerts=max_alerts),
    )
    api = AlertmanagerAPI(
        auth or TokenAuth([], []),
        silences,
        ConfigView(cfg),
        clock=clock,
        alerts=notifier.store,
        sink=notifier.store,
        groups=notifier,
        inhibition=MarkerInhibition(notifier.marker),
        max_body=4096,
    )
    return Env(Client(create_app([api], registry=None)), clock, silences, notifier)


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return make_env(tmp_path)


# -- times --------------------------------------------------------------------------------------------


def test_times_round_trip_as_alertmanager_prints_them() -> None:
    assert format_time(T0 + 123) == "2023-11-14T22:13:20.123Z"
    assert parse_time("2023-11-14T22:13:20.123Z") == T0 + 123
    assert parse_time("2023-11-15T00:13:20.123456789+02:00") == T0 + 123
    assert parse_time("2023-11-14t22:13:20z") == T0
    assert format_time(0) == "0001-01-01T00:00:00.000Z"
    for bad in ("notatime", "2023-11-14 22:13:20Z", "2023-02-30T00:00:00Z", "2023-11-14T22:13:20"):
        with pytest.raises(ValueError, match="parsing time"):
            parse_time(bad)


# -- silences -----------------------------------------------------------------------------------------


def test_silence_lifecycle_and_shapes(env: Env) -> None:
    r = env.post_silence()
    assert r.status_code == 200, r.text
    sid = r.json()["silenceID"]
    assert uuid.UUID(sid)
    got = env.client.get(f"/api/v2/silence/{sid}")
    assert got.status_code == 200
    assert got.headers["content-type"] == "application/json"
    assert got.json() == {
        "id": sid,
        "status": {"state": "active"},
        "updatedAt": format_time(T0),
        "comment": "c",
        "createdBy": "me",
        "endsAt": format_time(T0 + H),
        "matchers": [{"isEqual": True, "isRegex": False, "name": "alertname", "value": "X"}],
        "startsAt": format_time(T0),
    }
    assert list(got.json()) == [
        "id",
        "status",
        "updatedAt",
        "comment",
        "createdBy",
        "endsAt",
        "matchers",
        "startsAt",
    ]
    assert env.client.get("/api/v2/silences").json() == [got.json()]
    env.clock.now += 1000
    assert env.client.request("DELETE", f"/api/v2/silence/{sid}").status_code == 200
    assert env.client.get(f"/api/v2/silence/{sid}").json()["status"] == {"state": "expired"}
    # Expiring it again is no error (Alertmanager 0.22+), and changes nothing.
    assert env.client.request("DELETE", f"/api/v2/silence/{sid}").status_code == 200
    assert env.client.get(f"/api/v2/silence/{sid}").json()["endsAt"] == format_time(T0 + 1000)


def test_unknown_and_malformed_ids(env: Env) -> None:
    zero = "00000000-0000-0000-0000-000000000000"
    r = env.client.get(f"/api/v2/silence/{zero}")
    assert (r.status_code, r.content) == (404, b"")
    # 404 as Alertmanager since 0.27 (0.25 answered 500 "silence not found").
    assert env.client.request("DELETE", f"/api/v2/silence/{zero}").status_code == 404
    for method in ("GET", "DELETE"):
        r = env.client.request(method, "/api/v2/silence/xyz")
        assert r.status_code == 422
        assert r.json() == {"code": 601, "message": 'silenceID in path must be of type uuid: "xyz"'}
    assert env.post_silence(id="nope").status_code == 404
    assert env.post_silence(id="nope").json() == "silence not found"


def test_matchers_types_and_order_kept(env: Env) -> None:
    matchers = [
        {"name": "b", "value": "x.*", "isRegex": True},
        {"name": "a", "value": "y", "isRegex": False, "isEqual": False},
        {"name": "c", "value": "z|w", "isRegex": True, "isEqual": False},
    ]
    sid = env.post_silence(matchers=matchers).json()["silenceID"]
    got = env.client.get(f"/api/v2/silence/{sid}").json()["matchers"]
    assert [(m["name"], m["isEqual"], m["isRegex"]) for m in got] == [
        ("b", True, True),
        ("a", False, False),
        ("c", False, True),
    ]
    assert env.silences.mutes({"b": "xx", "a": "q", "c": "v"}, T0) == [sid]


@pytest.mark.parametrize(
    ("over", "status", "body"),
    [
        ({"matchers": []}, 422, {"code": 612, "message": "matchers in body should have at least 1 items"}),
        ({"comment": None}, 422, {"code": 602, "message": "comment in body is required"}),
        (
            {"matchers": [{"name": "a", "value": "b"}]},
            422,
            {"code": 602, "message": "matchers.0.isRegex in body is required"},
        ),
        (
            {"matchers": [{"name": "alertname", "value": "", "isRegex": False}]},
            400,
            "silence invalid: at least one matcher must not match the empty string",
        ),
        (
            {"matchers": [{"name": "a", "value": "(", "isRegex": True}]},
            400,
            # Go's regexp words the reason differently; the frame is Alertmanager's.
            'silence invalid: invalid label matcher 0: invalid regular expression "(": '
            "error parsing regexp: ",
        ),
        (
            {"matchers": [{"name": "a b", "value": "x", "isRegex": False}]},
            400,
            'silence invalid: invalid label matcher 0: invalid label name "a b"',
        ),
        (
            {"startsAt": format_time(T0 + 2 * H)},
            400,
            "Failed to create silence: start time must be before end time",
        ),
        (
            {"endsAt": format_time(T0 - 1)},
            400,
            "Failed to create silence: start time must be before end time",
        ),
        (
            {"startsAt": format_time(T0 - 2 * H), "endsAt": format_time(T0 - H)},
            400,
            "Failed to create silence: end time can't be in the past",
        ),
    ],
)
def test_post_silence_refusals(env: Env, over: dict[str, Any], status: int, body: object) -> None:
    r = env.post_silence(**over)
    assert r.status_code == status
    if isinstance(body, str) and body.endswith(": "):
        assert r.json().startswith(body)
    else:
        assert r.json() == body
    assert len(env.silences) == 0


@pytest.mark.parametrize(
    ("content", "ctype", "status"),
    [
        (b"{bad", "application/json", 400),
        (b'{"matchers": 5}', "application/json", 400),
        (b'{"startsAt": "notatime"}', "application/json", 400),
        (b"[" * 100 + b"]" * 100, "application/json", 400),  # too deep to parse
        (b'{"comment": "\xff"}', "application/json", 400),
        (b"{}", "application/x-www-form-urlencoded", 415),
    ],
)
def test_post_silence_bodies(tmp_path: Path, content: bytes, ctype: str, status: int) -> None:
    env = make_env(tmp_path)
    r = env.client.post("/api/v2/silences", content=content, headers={"content-type": ctype})
    assert r.status_code == status, r.text
    assert set(r.json()) == {"code", "message"}


def test_silences_are_listed_off_the_event_loop(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    # The listing costs per silence (up to max_silences of 64 KiB each): it must not stall the loop.
    import threading

    from vigil.web import alertmanager_api

    threads: list[str] = []
    real = alertmanager_api.silence_json

    def spy(s: Any, now: int) -> dict[str, Any]:
        threads.append(threading.current_thread().name)
        return real(s, now)

    monkeypatch.setattr(alertmanager_api, "silence_json", spy)
    env.silences.create([Matcher(MatchType.EQ, "a", "b")], T0, T0 + 3_600_000, "me", "c")
    r = env.client.get("/api/v2/silences")
    assert r.status_code == 200 and len(r.json()) == 1
    assert threads and threading.main_thread().name not in threads


def test_post_silence_body_is_bounded(env: Env) -> None:
    r = env.post_silence(comment="x" * (2 << 20))
    assert r.status_code == 413


def test_update_in_place_or_replace(env: Env) -> None:
    sid = env.post_silence().json()["silenceID"]
    env.clock.now += 5000
    same = env.post_silence(id=sid, comment="longer", endsAt=format_time(T0 + 2 * H)).json()["silenceID"]
    assert same == sid
    assert env.client.get(f"/api/v2/silence/{sid}").json()["comment"] == "longer"
    other = env.post_silence(id=sid, matchers=[{"name": "alertname", "value": "Y", "isRegex": False}])
    new = other.json()["silenceID"]
    assert new != sid
    assert env.client.get(f"/api/v2/silence/{sid}").json()["status"]["state"] == "expired"
    listed = env.client.get("/api/v2/silences").json()
    assert [s["id"] for s in listed] == [new, sid]  # active first, then expired


def test_silence_limit_is_a_400(tmp_path: Path) -> None:
    clock = Clock()
    silences = Silences(tmp_path, clock=clock, max_silences=1)
    view = ConfigView(None)
    client = Client(
        create_app([AlertmanagerAPI(TokenAuth([], []), silences, view, clock=clock)], registry=None)
    )
    env = Env(client, clock, silences, Notifier(alertmanager_config_from_yaml(AM_YAML), {}, clock=clock))
    assert env.post_silence().status_code == 200
    r = env.post_silence()
    assert (r.status_code, r.json()) == (400, "exceeded maximum number of silences: 1 (limit: 1)")


def test_silence_filters_and_order(env: Env) -> None:
    a = env.post_silence(endsAt=format_time(T0 + 3 * H)).json()["silenceID"]
    b = env.post_silence(
        matchers=[
            {"name": "alertname", "value": "X", "isRegex": False},
            {"name": "job", "value": "a.*", "isRegex": True},
        ]
    ).json()["silenceID"]
    pending = env.post_silence(startsAt=format_time(T0 + H), endsAt=format_time(T0 + 4 * H)).json()[
        "silenceID"
    ]
    assert [s["id"] for s in env.client.get("/api/v2/silences").json()] == [b, a, pending]
    got = env.client.get("/api/v2/silences", params={"filter": 'job=~"a.*"'}).json()
    assert [s["id"] for s in got] == [b]
    got = env.client.get(
        "/api/v2/silences", params=[("filter", "alertname=X"), ("filter", "job=~a.*")]
    ).json()
    assert [s["id"] for s in got] == [b]
    r = env.client.get("/api/v2/silences", params={"filter": "bad{"})
    assert (r.status_code, r.json()) == (400, "bad matcher format: bad{")
    r = env.client.get("/api/v2/silences", params=[("filter", "a=b")] * 65)
    assert r.status_code == 400 and "too many filter" in r.json()


# -- status and receivers ----------------------------------------------------------------------------


def test_status_and_receivers(env: Env) -> None:
    st = env.client.get("/api/v2/status").json()
    assert list(st) == ["cluster", "config", "uptime", "versionInfo"]
    assert st["cluster"] == {"peers": [], "status": "disabled"}
    assert st["uptime"] == format_time(T0)
    assert set(st["versionInfo"]) == {"branch", "buildDate", "buildUser", "goVersion", "revision", "version"}
    assert "receiver: default" in st["config"]["original"]
    assert "group_by:\n  - alertname" in st["config"]["original"]
    assert env.client.get("/api/v2/receivers").json() == [
        {"name": "default"},
        {"name": "db-pager"},
        {"name": "ops"},
    ]


def test_config_original_hides_secrets(tmp_path: Path) -> None:
    clock = Clock()
    cfg = alertmanager_config_from_yaml(
        "global: {smtp_auth_password: hunter2}\nroute: {receiver: hook}\n"
        "receivers: [{name: hook, webhook_configs: [{url: 'https://h.example/x?token=abc'}]}]\n"
    )
    api = AlertmanagerAPI(TokenAuth([], []), Silences(tmp_path, clock=clock), ConfigView(cfg), clock=clock)
    original = Client(create_app([api], registry=None)).get("/api/v2/status").json()["config"]["original"]
    assert "hunter2" not in original and "token=abc" not in original
    assert original.count("<secret>") == 2


# -- alerts -------------------------------------------------------------------------------------------


def post_alerts(env: Env, alerts: list[dict[str, Any]]) -> Any:
    return env.client.post("/api/v2/alerts", json=alerts)


def test_post_and_get_alerts(env: Env) -> None:
    r = post_alerts(
        env,
        [
            {
                "labels": {"alertname": "A", "team": "db", "empty": ""},
                "annotations": {"s": "t"},
                "generatorURL": "http://g/x",
            },
            {"labels": {"alertname": "B", "severity": "page"}, "startsAt": format_time(T0 - H)},
        ],
    )
    assert (r.status_code, r.content) == (200, b"")
    got = env.client.get("/api/v2/alerts").json()
    fa = f"{fingerprint({'alertname': 'A', 'team': 'db'}):016x}"
    fb = f"{fingerprint({'alertname': 'B', 'severity': 'page'}):016x}"
    assert [a["fingerprint"] for a in got] == sorted([fa, fb])
    a = next(x for x in got if x["fingerprint"] == fa)
    assert a == {
        "annotations": {"s": "t"},
        "endsAt": format_time(T0 + 5 * 60_000),
        "fingerprint": fa,
        "receivers": [{"name": "db-pager"}],
        "startsAt": format_time(T0),
        "status": {"inhibitedBy": [], "silencedBy": [], "state": "active"},
        "updatedAt": format_time(T0),
        "generatorURL": "http://g/x",
        "labels": {"alertname": "A", "team": "db"},  # the empty-valued label dropped
    }
    b = next(x for x in got if x["fingerprint"] == fb)
    assert "generatorURL" not in b and b["receivers"] == [{"name": "ops"}]
    assert b["startsAt"] == format_time(T0 - H)


def test_post_alerts_keeps_the_valid_ones_and_reports_the_others(env: Env) -> None:
    r = post_alerts(
        env,
        [
            {"labels": {"alertname": "G"}},
            {"labels": {}},
            {"labels": {"a-b": "1"}},
            {"labels": {"empty": ""}},
            {"labels": {"alertname": "C"}, "startsAt": format_time(T0 + H), "endsAt": format_time(T0)},
            {"labels": {"alertname": "D"}, "annotations": {"a b": "x"}},
            {"labels": {"alertname": "E"}, "startsAt": format_time(T0 + H)},  # ends by default at now+5m
        ],
    )
    assert r.status_code == 400
    assert r.json() == (
        'at least one label pair required; invalid label set: invalid name "a-b"; '
        "at least one label pair required; start time must be before end time; "
        'invalid annotations: invalid name "a b"; start time must be before end time'
    )
    assert [a.labels for a in env.alerts.list()] == [{"alertname": "G"}]


@pytest.mark.parametrize(
    ("body", "status", "payload"),
    [
        ([{"annotations": {"a": "b"}}], 422, {"code": 602, "message": "0.labels in body is required"}),
        (
            [{"labels": {"a": "b"}, "generatorURL": "not a url"}],
            422,
            {"code": 601, "message": '0.generatorURL in body must be of type uri: "not a url"'},
        ),
        ({"labels": {"a": "b"}}, 400, None),
        ([{"labels": {"a": 1}}], 400, None),
        ([{"labels": {"a": "b"}, "endsAt": 5}], 400, None),
    ],
)
def test_post_alerts_schema(env: Env, body: object, status: int, payload: object) -> None:
    r = env.client.post("/api/v2/alerts", json=body)
    assert r.status_code == status
    if payload is not None:
        assert r.json() == payload
    else:
        assert set(r.json()) == {"code", "message"}
    assert env.alerts.list() == []


def test_post_alerts_body_is_bounded(env: Env) -> None:
    r = post_alerts(env, [{"labels": {"alertname": "x" * 5000}}])
    assert r.status_code == 413
    assert env.alerts.list() == []


def test_alert_status_follows_silences_at_once(env: Env) -> None:
    post_alerts(env, [{"labels": {"alertname": "X", "job": "api"}}, {"labels": {"alertname": "Y"}}])
    sid = env.post_silence().json()["silenceID"]
    got = {a["labels"]["alertname"]: a["status"] for a in env.client.get("/api/v2/alerts").json()}
    assert got["X"] == {"inhibitedBy": [], "silencedBy": [sid], "state": "suppressed"}
    assert got["Y"]["state"] == "active"
    names = [
        a["labels"]["alertname"]
        for a in env.client.get("/api/v2/alerts", params={"silenced": "false"}).json()
    ]
    assert names == ["Y"]
    names = [
        a["labels"]["alertname"] for a in env.client.get("/api/v2/alerts", params={"active": "false"}).json()
    ]
    assert names == ["X"]
    r = env.client.get("/api/v2/alerts", params={"active": "maybe"})
    assert r.status_code == 400 and "active" in r.json()
    env.client.request("DELETE", f"/api/v2/silence/{sid}")
    assert all(a["status"]["state"] == "active" for a in env.client.get("/api/v2/alerts").json())


def test_resolved_alerts_are_not_listed(env: Env) -> None:
    post_alerts(
        env, [{"labels": {"alertname": "R"}, "startsAt": format_time(T0 - H), "endsAt": format_time(T0 - 1)}]
    )
    assert len(env.alerts.list()) == 1
    assert env.client.get("/api/v2/alerts").json() == []
    assert env.client.get("/api/v2/alerts/groups").json() == []


def test_alert_filters(env: Env) -> None:
    post_alerts(
        env,
        [
            {"labels": {"alertname": "A", "team": "db"}},
            {"labels": {"alertname": "B", "severity": "crit"}},
            {"labels": {"alertname": "C"}},
        ],
    )

    def names(**params: str | list[str]) -> list[str]:
        r = env.client.get("/api/v2/alerts", params=params)
        assert r.status_code == 200, r.text
        return sorted(a["labels"]["alertname"] for a in r.json())

    assert names(filter="alertname=A") == ["A"]
    assert names(filter=["alertname=~A|B", "team!=db"]) == ["B"]
    # Empty values: `x=""` passes when x is absent, `x!=""` when present (as Alertmanager).
    assert names(filter='team=""') == ["B", "C"]
    assert names(filter='team!=""') == ["A"]
    assert names(receiver="ops") == ["B"]
    assert names(receiver="d.*") == ["A", "C"]
    r = env.client.get("/api/v2/alerts", params={"receiver": "("})
    assert r.status_code == 400 and r.json().startswith(
        "failed to parse receiver param: error parsing regexp"
    )
    r = env.client.get("/api/v2/alerts", params={"filter": "x"})
    assert (r.status_code, r.json()) == (400, "bad matcher format: x")


def test_alert_groups(env: Env) -> None:
    post_alerts(
        env,
        [
            {"labels": {"alertname": "A", "team": "db"}},
            {"labels": {"alertname": "B", "severity": "crit"}},
            {"labels": {"alertname": "C", "team": "db", "severity": "page"}},  # two routes (continue)
        ],
    )
    groups = env.client.get("/api/v2/alerts/groups").json()
    assert [
        (g["labels"], g["receiver"]["name"], [a["labels"]["alertname"] for a in g["alerts"]]) for g in groups
    ] == [
        ({"alertname": "A"}, "db-pager", ["A"]),
        ({"alertname": "B"}, "ops", ["B"]),
        ({"alertname": "C"}, "db-pager", ["C"]),
        ({"alertname": "C"}, "ops", ["C"]),
    ]
    assert list(groups[0]) == ["alerts", "labels", "receiver"]
    assert groups[2]["alerts"][0]["receivers"] == [{"name": "db-pager"}, {"name": "ops"}]
    only = env.client.get("/api/v2/alerts/groups", params={"receiver": "ops"}).json()
    assert [(g["receiver"]["name"], g["labels"]) for g in only] == [
        ("ops", {"alertname": "B"}),
        ("ops", {"alertname": "C"}),
    ]
    assert env.client.get("/api/v2/alerts/groups", params={"filter": "alertname=D"}).json() == []


# -- who may call it ----------------------------------------------------------------------------------


def test_tokens_scopes_and_tenants(tmp_path: Path) -> None:
    auth = TokenAuth(["w"], ["r"], [Tenant("t1", ("t1w",), ("t1r",))])
    env = make_env(tmp_path, auth)
    assert env.client.get("/api/v2/silences").status_code == 401
    assert env.client.get("/api/v2/silences", headers={"authorization": "Bearer r"}).status_code == 200
    # A tenant's token reads and writes that tenant's data only; this API is the whole notifier's.
    assert env.client.get("/api/v2/silences", headers={"authorization": "Bearer t1r"}).status_code == 403
    r = env.client.post(
        "/api/v2/alerts", json=[{"labels": {"a": "b"}}], headers={"authorization": "Bearer t1w"}
    )
    assert r.status_code == 403
    r = env.client.post(
        "/api/v2/alerts", json=[{"labels": {"a": "b"}}], headers={"authorization": "Bearer r"}
    )
    assert r.status_code == 401
    r = env.client.post(
        "/api/v2/alerts", json=[{"labels": {"a": "b"}}], headers={"authorization": "Bearer w"}
    )
    assert r.status_code == 200
    assert len(env.alerts.list()) == 1


def test_snapshot_written_by_the_api_survives_a_restart(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    sid = env.post_silence().json()["silenceID"]
    again = make_env(tmp_path)
    assert [s["id"] for s in again.client.get("/api/v2/silences").json()] == [sid]
    assert json.loads((tmp_path / "silences" / "silences.json").read_text())["silences"][0]["id"] == sid


def test_a_full_store_is_429_and_stores_nothing(tmp_path: Path) -> None:
    env = make_env(tmp_path, max_alerts=2)
    assert (
        post_alerts(env, [{"labels": {"alertname": "A"}}, {"labels": {"alertname": "B"}}]).status_code == 200
    )
    r = post_alerts(env, [{"labels": {"alertname": "A"}}, {"labels": {"alertname": "C"}}])
    assert r.status_code == 429 and "alert store full" in r.json()
    assert sorted(a.labels["alertname"] for a in env.alerts.list()) == ["A", "B"]


@pytest.mark.parametrize(
    ("over", "message"),
    [
        # A lone surrogate (JSON "\ud800") is not UTF-8: Go's regexp refuses it, so must we.
        ({"matchers": [{"name": "a", "value": "\ud800", "isRegex": True}]}, "invalid regular expression"),
        ({"endsAt": "9999-12-31T23:59:59.999-23:59"}, "parsing time"),  # beyond datetime's range
        ({"startsAt": "0001-01-01T00:00:00+23:59"}, "parsing time"),
    ],
)
def test_hostile_silence_fields_are_400(env: Env, over: dict[str, Any], message: str) -> None:
    r = env.post_silence(**over)
    assert r.status_code == 400, r.text
    assert message in json.dumps(r.json())
    assert len(env.silences) == 0


@pytest.mark.parametrize(
    ("alert", "status"),
    [
        ({"labels": {"a": "b"}, "generatorURL": "http://x/\ud800"}, 422),  # not UTF-8: no URI
        ({"labels": {"a": "b"}, "startsAt": "2023-01-01T00:00:00+99:99"}, 400),  # no such offset
        ({"labels": {"a": "b"}, "startsAt": "2023-01-01T00:00:00+24:00"}, 400),
    ],
)
def test_hostile_alert_fields_are_refused(env: Env, alert: dict[str, Any], status: int) -> None:
    r = env.client.post(
        "/api/v2/alerts", content=json.dumps([alert]).encode(), headers={"content-type": "application/json"}
    )
    assert r.status_code == status, r.text
    assert env.alerts.list() == []


def test_inhibited_alerts_show_their_inhibitor_once_the_pipeline_has_looked(env: Env) -> None:
    post_alerts(
        env,
        [
            {"labels": {"alertname": "NodeDown", "node": "n1"}},
            {"labels": {"alertname": "ServiceDown", "node": "n1"}},
            {"labels": {"alertname": "ServiceDown", "node": "n2"}},
        ],
    )
    source = f"{fingerprint({'alertname': 'NodeDown', 'node': 'n1'}):016x}"
    env.clock.now += 31_000  # past group_wait: the groups flush
    assert env.notifier.step(env.clock.now) > 0
    got = {
        (a["labels"]["alertname"], a["labels"]["node"]): a["status"]
        for a in env.client.get("/api/v2/alerts").json()
    }
    assert got[("ServiceDown", "n1")] == {"inhibitedBy": [source], "silencedBy": [], "state": "suppressed"}
    assert got[("ServiceDown", "n2")]["state"] == "active"
    assert got[("NodeDown", "n1")]["state"] == "active"
    shown = env.client.get("/api/v2/alerts", params={"inhibited": "false"}).json()
    assert sorted((a["labels"]["alertname"], a["labels"]["node"]) for a in shown) == [
        ("NodeDown", "n1"),
        ("ServiceDown", "n2"),
    ]


def _mutate(rng: random.Random, v: Any, depth: int = 0) -> Any:
    """A random change somewhere in a JSON value: a wrong type, a dropped or extra key, odd text."""
    odd: list[Any] = [
        None,
        0,
        -1,
        1.5,
        True,
        "",
        "\ud800",
        "x" * 300,
        [],
        {},
        "2024-13-45T99:99:99Z",
        "(",
        "a b",
    ]
    if isinstance(v, dict) and v and rng.random() < 0.7:
        k = rng.choice(list(v))
        out = dict(v)
        r = rng.random()
        if r < 0.2:
            del out[k]
        elif r < 0.3:
            out[rng.choice(["", "\ud800", "extra", "a-b"])] = rng.choice(odd)
        else:
            out[k] = _mutate(rng, v[k], depth + 1)
        return out
    if isinstance(v, list) and v and rng.random() < 0.7:
        i = rng.randrange(len(v))
        return [*v[:i], _mutate(rng, v[i], depth + 1), *v[i + 1 :]] * rng.choice([1, 1, 2])
    return rng.choice(odd)


def test_fuzzed_requests_never_get_a_server_error(env: Env) -> None:
    rng = random.Random(7)
    silence = {
        "matchers": [{"name": "alertname", "value": "X", "isRegex": False, "isEqual": True}],
        "startsAt": format_time(T0),
        "endsAt": format_time(T0 + H),
        "createdBy": "me",
        "comment": "c",
    }
    alerts = [
        {
            "labels": {"alertname": "A"},
            "annotations": {"s": "t"},
            "startsAt": format_time(T0),
            "generatorURL": "http://g/",
        }
    ]
    params = ["filter", "receiver", "active", "silenced", "inhibited", "unprocessed"]
    statuses: set[int] = set()
    for _ in range(400):
        kind = rng.randrange(4)
        if kind == 0:
            body = json.dumps(_mutate(rng, silence)).encode()
            r = env.client.post(
                "/api/v2/silences", content=body, headers={"content-type": "application/json"}
            )
        elif kind == 1:
            body = json.dumps(_mutate(rng, alerts)).encode()
            r = env.client.post("/api/v2/alerts", content=body, headers={"content-type": "application/json"})
        elif kind == 2:
            q = [
                (
                    rng.choice(params),
                    rng.choice(["", "x", "a=~(", 'a!~"b"', "true", "no", "\x00", "{a=b}", "a=" * 40]),
                )
            ]
            r = env.client.get(
                rng.choice(["/api/v2/alerts", "/api/v2/alerts/groups", "/api/v2/silences"]), params=q
            )
        else:
            sid = rng.choice([str(uuid.uuid4()), "xyz", "%00", "00000000-0000-0000-0000-00000000000G"])
            r = env.client.request(rng.choice(["GET", "DELETE"]), f"/api/v2/silence/{sid}")
        statuses.add(r.status_code)
        assert r.status_code < 500, (r.status_code, r.text)
    assert {200, 400, 422} <= statuses  # the fuzz reached accepted and refused requests alike


def test_empty_and_null_alert_bodies_as_alertmanager(env: Env) -> None:
    r = env.client.post("/api/v2/alerts", content=b"", headers={"content-type": "application/json"})
    assert (r.status_code, r.json()) == (422, {"code": 602, "message": "alerts in body is required"})
    r = env.client.post("/api/v2/alerts", content=b"null", headers={"content-type": "application/json"})
    assert (r.status_code, r.content) == (200, b"")
    r = env.client.post("/api/v2/alerts", content=b"[null]", headers={"content-type": "application/json"})
    assert r.status_code == 400  # Alertmanager 0.25 drops the connection here (a nil alert)
    assert env.alerts.list() == []
