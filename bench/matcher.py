"""Label-matcher throughput: how fast `Matcher.filter` scans label values, per regex shape.

Queries spend their selector time in `Matcher.filter` over a label's values (the index's postings
are keyed by value), so this measures exactly that: every label value of the query benchmark's
workload (`bench.workload.generate`, 100 hosts: ~45,000 values, repeats included, as a scan over
series would see them), filtered by typical dashboard regexes and by shapes that need a
linear-time engine, best of `--repeat` runs. One line, nanoseconds per value (lower is better):

    matcher ns/value: api|web|db 38, node_.* 61, .*_total 63, (sda|nvme0n1) 39, [a-z]+_total 180, ...

Compilation is outside the timing (the matcher caches it, as queries reuse their matchers).

Usage:
    python -m bench.matcher                 # 100 hosts, best of 5
    python -m bench.matcher --hosts 10 --repeat 3
"""

from __future__ import annotations

import argparse
import time

from bench.workload import generate
from vigil.model.matcher import Matcher

# Dashboard shapes first (literal sets, prefix, suffix, a class run with a suffix), then shapes no
# shortcut covers: a class-run middle, case folding, two wildcards, an alternation inside.
PATTERNS = (
    "api|web|db",
    "node_.*",
    ".*_total",
    "(sda|nvme0n1)",
    "[a-z]+_total",
    "host-0[0-4]:9100",
    "(?i)node_cpu.*",
    ".*cpu.*total",
    "node_(cpu|memory)_.+",
    "(a?){30}a{30}",
)


def values(hosts: int) -> list[str]:
    return [v for labels in generate(hosts=hosts, scrapes=1).labels for _, v in labels]


def ns_per_value(pattern: str, corpus: list[str], repeat: int) -> float:
    m = Matcher.re("l", pattern)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        m.filter(corpus)
        best = min(best, time.perf_counter() - start)
    return best / len(corpus) * 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    corpus = values(args.hosts)
    figures = ", ".join(f"{p} {ns_per_value(p, corpus, args.repeat):.0f}" for p in PATTERNS)
    print(f"matcher ns/value ({len(corpus)} values): {figures}")


if __name__ == "__main__":
    main()
