"""amtool's example data (cli/template_render.go `defaultData`), rebuilt for the differential tests.

Only the test needs Alertmanager's data types (KV with SortedPairs/Names/Values/Remove, Alerts with
Firing/Resolved): Vigil's receivers build their own data. The times are `time.Now()`-relative in
amtool, so the test texts never print them.
"""

from __future__ import annotations

from typing import Any


class Pair:
    go_type_name = "template.Pair"

    def __init__(self, name: str, value: str) -> None:
        self.Name = name
        self.Value = value

    def __str__(self) -> str:
        return "{" + self.Name + " " + self.Value + "}"


class Pairs(list[Pair]):
    go_type_name = "template.Pairs"

    def Names(self) -> list[str]:
        return [p.Name for p in self]

    def Values(self) -> list[str]:
        return [p.Value for p in self]


class KV(dict[str, str]):
    go_type_name = "template.KV"

    def SortedPairs(self) -> Pairs:
        keys = sorted(k for k in self if k != "alertname")
        if "alertname" in self:
            keys.insert(0, "alertname")
        return Pairs(Pair(k, self[k]) for k in keys)

    def Remove(self, keys: list[str] | None) -> KV:
        return KV({k: v for k, v in self.items() if k not in (keys or [])})

    def Names(self) -> list[str]:
        return self.SortedPairs().Names()

    def Values(self) -> list[str]:
        return self.SortedPairs().Values()


class Alert:
    go_type_name = "template.Alert"

    def __init__(self, status: str, labels: dict[str, str], annotations: dict[str, str], fp: str) -> None:
        self.Status = status
        self.Labels = KV(labels)
        self.Annotations = KV(annotations)
        self.StartsAt: Any = None
        self.EndsAt: Any = None
        self.GeneratorURL = "https://generatorurl.com"
        self.Fingerprint = fp


class AlertSlice(list[Alert]):
    go_type_name = "[]template.Alert"


class Alerts(list[Alert]):
    go_type_name = "template.Alerts"

    def Firing(self) -> AlertSlice:
        return AlertSlice(a for a in self if a.Status == "firing")

    def Resolved(self) -> AlertSlice:
        return AlertSlice(a for a in self if a.Status == "resolved")


class Data:
    go_type_name = "template.Data"

    def __init__(self) -> None:
        common = {"commonlabelkey1": "commonlabelvalue1", "commonlabelkey2": "commonlabelvalue2"}
        common_ann = {
            "commonannotationkey1": "commonannotationvalue1",
            "commonannotationkey2": "commonannotationvalue2",
        }
        self.Receiver = "receiver"
        self.Status = "alertstatus"
        self.Alerts = Alerts(
            [
                Alert(
                    "alertstatus",  # amtool 0.25's example alerts both have this status
                    {"label1": "value1", "label2": "value2", "instance": "foo.bar:1234", **common},
                    {"annotation1": "value1", "annotation2": "value2", **common_ann},
                    "fingerprint1",
                ),
                Alert(
                    "alertstatus",
                    {"foo": "bar", "baz": "qux", **common},
                    {"aaa": "bbb", "ccc": "ddd", **common_ann},
                    "fingerprint2",
                ),
            ]
        )
        self.GroupLabels = KV({"grouplabelkey1": "grouplabelvalue1", "grouplabelkey2": "grouplabelvalue2"})
        self.CommonLabels = KV(common)
        self.CommonAnnotations = KV(common_ann)
        self.ExternalURL = "https://example.com"
