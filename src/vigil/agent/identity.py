"""Who this host is: the labels the agent puts on everything it ships, series and events alike
(`instance`, `platform`, and `cluster` / `app` when configured), so a host's metrics and its security
events select and group the same way.

`platform` is detected from files only (DMI, container markers), never from the network, so it
works offline and costs nothing. `tenant` is not here: the server sets it from the ingest token.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

# DMI vendor / product / BIOS strings that identify a platform (lower-cased substrings).
_DMI_PLATFORMS: list[tuple[str, str]] = [
    ("amazon ec2", "aws"),
    ("amazon", "aws"),
    ("google compute engine", "gcp"),
    ("google", "gcp"),
    ("microsoft corporation", "azure"),
    ("vmware", "vmware"),
    ("qemu", "kvm"),
    ("kvm", "kvm"),
    ("openstack", "kvm"),
    ("xen", "xen"),
    ("innotek", "virtualbox"),
    ("virtualbox", "virtualbox"),
]
_DMI_FILES = (
    "sys_vendor",
    "product_name",
    "bios_vendor",
    "bios_version",
    "board_vendor",
    "chassis_asset_tag",
)


@dataclass(frozen=True)
class Identity:
    instance: str
    platform: str
    cluster: str = ""
    app: str = ""

    def labels(self) -> dict[str, str]:
        out = {"instance": self.instance, "platform": self.platform, "cluster": self.cluster, "app": self.app}
        return {k: v for k, v in out.items() if v}


def detect_platform(root: Path = Path("/")) -> str:
    """aws, gcp, azure, vmware, kvm, xen, virtualbox, container or bare-metal."""
    if (root / ".dockerenv").exists() or (root / "run/.containerenv").exists():
        return "container"
    try:
        cgroup = (root / "proc/1/cgroup").read_text(errors="replace")
    except OSError:
        cgroup = ""
    if any(k in cgroup for k in ("/docker/", "/kubepods", "/containerd", "/lxc/", "libpod")):
        return "container"
    dmi = root / "sys/class/dmi/id"
    text = " ".join(_read(dmi / f) for f in _DMI_FILES).lower()
    for needle, platform in _DMI_PLATFORMS:
        if needle in text:
            return platform
    return "bare-metal"


def _read(p: Path) -> str:
    try:
        return p.read_text(errors="replace").strip()
    except OSError:  # absent, or root-only (bios files): not knowing is fine
        return ""


def detect(cluster: str = "", app: str = "", instance: str = "", root: Path = Path("/")) -> Identity:
    return Identity(instance or socket.gethostname(), detect_platform(root), cluster, app)
