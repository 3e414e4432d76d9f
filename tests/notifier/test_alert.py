"""Alert identity: fingerprints equal to the ones Debian's Alertmanager 0.25 printed for the same labels
(`POST /api/v2/alerts` then `GET /api/v2/alerts`; Alertmanager drops empty-valued labels on receipt)."""

from vigil.notifier.alert import Alert, fingerprint, fingerprint_hex


def test_fingerprints_match_alertmanager() -> None:
    assert fingerprint_hex({"alertname": "x", "a": "b"}) == "c5688262826c92f9"
    assert fingerprint_hex({"alertname": "ünï"}) == "c2a9c29d99ba8189"
    assert fingerprint_hex({}) == "cbf29ce484222325"  # FNV-1a's offset basis: nothing hashed


def test_fingerprint_ignores_label_order_but_not_values() -> None:
    assert fingerprint({"a": "1", "b": "2"}) == fingerprint({"b": "2", "a": "1"})
    assert fingerprint({"a": "1", "b": "2"}) != fingerprint({"a": "2", "b": "1"})
    # the separator keeps name/value boundaries apart: ab="" is not a="b"
    assert fingerprint({"ab": ""}) != fingerprint({"a": "b"})


def test_resolved_at_uses_the_end_only_when_set() -> None:
    firing = Alert(labels={"alertname": "x"}, starts_at_ms=1_000)
    assert not firing.resolved_at(10**15)
    ended = Alert(labels={"alertname": "x"}, starts_at_ms=1_000, ends_at_ms=5_000)
    assert not ended.resolved_at(4_999)
    assert ended.resolved_at(5_000)
