"""One tenant's share of a store, as a read-only view: what a tenant's query is evaluated over.

Every look-up that passes through the view gets `tenant="<name>"` added to its matchers before it
reaches the store. Isolation therefore does not depend on what a query says: however a PromQL
expression is built (`{__name__=~".+"}`, `label_replace`, `or vector(1)`, `absent`, subqueries),
every series it can ever load carries the tenant's own label, because the engine has no other way
to reach stored data. Series written with untenanted tokens have no `tenant` label and so belong to
no tenant's view.
"""

from __future__ import annotations

from collections.abc import Sequence

from vigil.model.labels import TENANT, Labels
from vigil.model.matcher import Matcher
from vigil.storage.interface import Queryable, SeriesSet

__all__ = ["TENANT_LABEL", "TenantView"]

# The label the server sets from the writer's token (`vigil.ingest.ingester.with_tenant`).
TENANT_LABEL = TENANT


class TenantView:
    """`storage` limited to the series labelled `tenant=<tenant>`; implements `Queryable`."""

    def __init__(self, storage: Queryable, tenant: str) -> None:
        if not tenant:
            # tenant="" matches series *without* the label: every untenanted series, not a tenant's.
            raise ValueError("a tenant view needs a non-empty tenant name")
        self._storage = storage
        self.tenant = tenant
        self._matcher = Matcher.eq(TENANT_LABEL, tenant)

    def _scoped(self, matchers: Sequence[Matcher]) -> list[Matcher]:
        # First, so the store's index starts from the (usually small) posting list of the tenant.
        return [self._matcher, *matchers]

    def select(self, matchers: Sequence[Matcher], mint: int, maxt: int) -> SeriesSet:
        return self._storage.select(self._scoped(matchers), mint, maxt)

    def series(self, matchers: Sequence[Matcher], mint: int, maxt: int) -> list[Labels]:
        return self._storage.series(self._scoped(matchers), mint, maxt)

    def label_names(self, matchers: Sequence[Matcher], mint: int, maxt: int) -> list[str]:
        return self._storage.label_names(self._scoped(matchers), mint, maxt)

    def label_values(self, name: str, matchers: Sequence[Matcher], mint: int, maxt: int) -> list[str]:
        return self._storage.label_values(name, self._scoped(matchers), mint, maxt)
