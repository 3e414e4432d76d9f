"""The routing tree: which receivers (and with which grouping and timings) an alert goes to.

Alertmanager's semantics (dispatch/route.go):
- a node inherits receiver, group_by, group_wait/group_interval/repeat_interval from its parent
  (the root from the defaults 30s / 5m / 4h, no grouping); `group_by: ['...']` groups by all labels;
  an empty `group_by: []` does *not* reset the parent's (Go only replaces it with a non-empty list);
- `mute_time_intervals` / `active_time_intervals` are the node's own, not inherited (0.25 and HEAD);
- matching is depth-first, left to right: a node matches when its matchers do; its children are
  tried in order and the first matching child stops the search unless it has `continue: true`; a
  node whose children all failed is itself the result;
- `key()` is Alertmanager's `Route.Key()` (parent key, "/", the node's sorted matchers), the prefix
  of aggregation group keys and so of the notification log; `id()` is `Route.ID()` (HEAD), which
  adds the node's index among its siblings so that equal siblings differ.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from vigil.notifier.config import RouteConfig
from vigil.notifier.matchers import Matchers

__all__ = [
    "DEFAULT_GROUP_INTERVAL",
    "DEFAULT_GROUP_WAIT",
    "DEFAULT_REPEAT_INTERVAL",
    "Route",
    "build_routes",
    "format_tree",
    "group_labels",
    "receivers",
]

DEFAULT_GROUP_WAIT = 30_000
DEFAULT_GROUP_INTERVAL = 5 * 60_000
DEFAULT_REPEAT_INTERVAL = 4 * 3600_000


@dataclass(eq=False)
class Route:
    """A node with its effective (inherited) options. Durations in ms."""

    matchers: Matchers
    continue_: bool
    receiver: str
    group_by: frozenset[str]
    group_by_all: bool
    group_wait: int
    group_interval: int
    repeat_interval: int
    mute_time_intervals: tuple[str, ...] = ()
    active_time_intervals: tuple[str, ...] = ()
    routes: list[Route] = field(default_factory=list)
    parent: Route | None = field(default=None, repr=False)
    idx: int = 0

    def match(self, labels: Mapping[str, str]) -> list[Route]:
        """The routes an alert with `labels` is handled by, in tree order; [] if not even this
        node matches (never for the root, which has no matchers)."""
        if not self.matchers.matches(labels):
            return []
        found: list[Route] = []
        for child in self.routes:
            got = child.match(labels)
            found.extend(got)
            if got and not child.continue_:
                break
        return found or [self]

    def key(self) -> str:
        own = str(self.matchers)
        return f"{self.parent.key()}/{own}" if self.parent is not None else own

    def id(self) -> str:
        if self.parent is None:
            return str(self.matchers)
        pos = next(i for i, r in enumerate(self.parent.routes) if r is self)
        return f"{self.parent.id()}/{self.matchers}/{pos}"

    def walk(self) -> Iterator[Route]:
        """This node and its descendants, depth first."""
        yield self
        for child in self.routes:
            yield from child.walk()


def build_routes(cfg: RouteConfig) -> Route:
    """The root route with Alertmanager's defaults and inheritance applied."""
    counter = [0]
    return _build(cfg, None, counter)


def _build(cfg: RouteConfig, parent: Route | None, counter: list[int]) -> Route:
    if parent is None:
        receiver, group_by, group_by_all = "", frozenset[str](), False
        wait, interval, repeat = DEFAULT_GROUP_WAIT, DEFAULT_GROUP_INTERVAL, DEFAULT_REPEAT_INTERVAL
    else:
        receiver, group_by, group_by_all = parent.receiver, parent.group_by, parent.group_by_all
        wait, interval, repeat = parent.group_wait, parent.group_interval, parent.repeat_interval
    if cfg.receiver:
        receiver = cfg.receiver
    if cfg.group_by is not None:
        names = [n for n in cfg.group_by if n != "..."]
        if names:  # Go: a non-nil list of names replaces the parent's and turns `...` off
            group_by, group_by_all = frozenset(names), False
        elif "..." in cfg.group_by:
            group_by_all = True
    route = Route(
        matchers=cfg.all_matchers(),
        continue_=cfg.continue_,
        receiver=receiver,
        group_by=group_by,
        group_by_all=group_by_all,
        group_wait=cfg.group_wait if cfg.group_wait is not None else wait,
        group_interval=cfg.group_interval if cfg.group_interval is not None else interval,
        repeat_interval=cfg.repeat_interval if cfg.repeat_interval is not None else repeat,
        mute_time_intervals=cfg.mute_time_intervals,
        active_time_intervals=cfg.active_time_intervals,
        parent=parent,
    )
    route.routes = [_build(c, route, counter) for c in cfg.routes]
    route.idx = counter[0]  # children first, as Alertmanager numbers them
    counter[0] += 1
    return route


def receivers(root: Route, labels: Mapping[str, str]) -> list[str]:
    """The receivers `labels` resolve to, in tree order (what `amtool config routes test` prints)."""
    return [r.receiver for r in root.match(labels)]


def group_labels(route: Route, labels: Mapping[str, str]) -> dict[str, str]:
    """The labels an alert is grouped by on `route` (all of them with `...`); absent ones left out."""
    if route.group_by_all:
        return {k: v for k, v in labels.items() if v != ""}
    return {k: labels[k] for k in sorted(route.group_by) if labels.get(k, "") != ""}


# ---------------------------------------------------------------------------------------------
# amtool's tree text (`config routes show` and `config routes test --tree`).

_SEP = "  "


def _slug(route: Route, show_continue: bool, show_receiver: bool) -> str:
    text = str(route.matchers) if route.matchers else "default-route"
    if route.continue_ and show_continue:
        text += f"{_SEP}continue: true"
    if show_receiver:
        text += f"{_SEP}receiver: {route.receiver}"
    return text


@dataclass
class _Node:
    text: str
    children: list[_Node] = field(default_factory=list)


def _render(root: _Node) -> str:
    # The layout of the treeprint package amtool uses: "." then box-drawing branches.
    lines = ["."]

    def walk(node: _Node, prefix: str) -> None:
        for i, child in enumerate(node.children):
            last = i == len(node.children) - 1
            lines.append(f"{prefix}{'└── ' if last else '├── '}{child.text}")
            walk(child, prefix + ("    " if last else "│\xa0\xa0 "))

    walk(root, "")
    return "\n".join(lines) + "\n"


def format_tree(root: Route, labels: Mapping[str, str] | None = None) -> str:
    """`amtool config routes show` (labels None: every node with continue and receiver) or the
    matching part of the tree as `routes test --tree` prints it (receivers on the final nodes)."""
    top = _Node("")
    if labels is None:

        def show(route: Route, parent: _Node) -> None:
            node = _Node(_slug(route, True, True))
            parent.children.append(node)
            for c in route.routes:
                show(c, node)

        show(root, top)
    else:

        def matching(route: Route, parent: _Node) -> None:
            node = _Node(_slug(route, False, False))
            parent.children.append(node)
            final = True
            for c in route.routes:
                if c.matchers.matches(labels):
                    matching(c, node)
                    final = False
                    if not c.continue_:
                        break
            if final:
                node.text = _slug(route, False, True)

        matching(root, top)
    return _render(top)
