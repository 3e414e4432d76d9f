"""Platform detection from DMI and container markers, on fixture trees."""

from __future__ import annotations

from pathlib import Path

import pytest

from vigil.agent.identity import detect, detect_platform


def tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return tmp_path


@pytest.mark.parametrize(
    ("files", "platform"),
    [
        ({"sys/class/dmi/id/sys_vendor": "Amazon EC2\n"}, "aws"),
        ({"sys/class/dmi/id/product_name": "Google Compute Engine\n"}, "gcp"),
        ({"sys/class/dmi/id/sys_vendor": "Microsoft Corporation\n"}, "azure"),
        ({"sys/class/dmi/id/sys_vendor": "VMware, Inc.\n"}, "vmware"),
        ({"sys/class/dmi/id/sys_vendor": "QEMU\n"}, "kvm"),
        ({"sys/class/dmi/id/sys_vendor": "Xen\n"}, "xen"),
        ({"sys/class/dmi/id/sys_vendor": "Dell Inc.\n"}, "bare-metal"),
        ({".dockerenv": ""}, "container"),
        (
            {"proc/1/cgroup": "0::/kubepods/burstable/pod1/abc\n", "sys/class/dmi/id/sys_vendor": "QEMU"},
            "container",
        ),
        ({}, "bare-metal"),
    ],
)
def test_platform(tmp_path: Path, files: dict[str, str], platform: str) -> None:
    assert detect_platform(tree(tmp_path, files)) == platform


def test_identity_labels_skip_empty(tmp_path: Path) -> None:
    ident = detect(cluster="eu-1", instance="web-1", root=tmp_path)
    assert ident.labels() == {"instance": "web-1", "platform": "bare-metal", "cluster": "eu-1"}
