"""Network interface traffic from /proc/net/dev, as node_exporter's `netdev` collector names it.

Families (counters, label `device`): `node_network_receive_{bytes,packets,errs,drop,fifo,frame,
compressed,multicast}_total` and `node_network_transmit_{bytes,packets,errs,drop,fifo,colls,carrier,
compressed}_total`. The kernel already folds the detailed error counters into these columns the same
way node_exporter 1.5 folds its netlink figures, so the values agree. No device is excluded by default
(node_exporter 1.5 upstream keeps `lo`; Debian's package patches its default to drop it).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from prometheus_client import Metric
from prometheus_client.core import CounterMetricFamily

from vigil.agent.collectors._fs import device_filter, read_source
from vigil.model.labels import label_safe

# The sixteen columns of /proc/net/dev, in order, as family names and help texts.
_COLUMNS: list[tuple[str, str]] = [
    ("node_network_receive_bytes_total", "Bytes received."),
    ("node_network_receive_packets_total", "Packets received."),
    ("node_network_receive_errs_total", "Receive errors."),
    ("node_network_receive_drop_total", "Received packets dropped (including missed by the NIC)."),
    ("node_network_receive_fifo_total", "Receive FIFO overruns."),
    ("node_network_receive_frame_total", "Receive framing, length, CRC and overrun errors."),
    ("node_network_receive_compressed_total", "Compressed packets received."),
    ("node_network_receive_multicast_total", "Multicast packets received."),
    ("node_network_transmit_bytes_total", "Bytes transmitted."),
    ("node_network_transmit_packets_total", "Packets transmitted."),
    ("node_network_transmit_errs_total", "Transmit errors."),
    ("node_network_transmit_drop_total", "Transmitted packets dropped."),
    ("node_network_transmit_fifo_total", "Transmit FIFO errors."),
    ("node_network_transmit_colls_total", "Collisions while transmitting."),
    (
        "node_network_transmit_carrier_total",
        "Carrier, aborted, window and heartbeat errors while transmitting.",
    ),
    ("node_network_transmit_compressed_total", "Compressed packets transmitted."),
]


class NetdevCollector:
    name = "netdev"

    def __init__(
        self,
        proc: Path = Path("/proc"),
        device_exclude: str | None = None,
        device_include: str | None = None,
    ) -> None:
        self._net_dev = proc / "net/dev"
        self._dropped = device_filter(device_exclude, device_include)

    def collect(self) -> Iterable[Metric]:
        text = read_source(self._net_dev)
        fams = [CounterMetricFamily(name, help_text, labels=["device"]) for name, help_text in _COLUMNS]
        for line in text.splitlines()[2:]:  # two header lines
            # Counters can run into the colon ("eth0:123"), so split on it, not on blanks.
            device, sep, rest = line.partition(":")
            if not sep:
                continue
            device = device.strip()
            if self._dropped(device):
                continue
            labels = [label_safe(device)]
            for fam, value in zip(fams, rest.split(), strict=False):
                fam.add_metric(labels, float(value))
        return [f for f in fams if f.samples]
