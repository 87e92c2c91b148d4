"""The entity list's filters, named for people and answered by the API's query language.

Every filter here is a :func:`catalog.query.condition_q` over the indexed search table (key,
value) — the same lookups ``GET /api/catalog/entities?filter=...`` makes — and the search box is
:func:`catalog.query.full_text_q`; nothing is filtered in Python or over JSON columns.
"""

from dataclasses import dataclass

from django.db.models import F, Q, QuerySet
from django.http import QueryDict

from catalog.query import condition_q, full_text_q


@dataclass(frozen=True)
class EntityFilter:
    param: str  # query parameter of the list page
    key: str  # search-table key (the API's filter key)
    label: str


ENTITY_FILTERS = (
    EntityFilter("kind", "kind", "Kind"),
    EntityFilter("type", "spec.type", "Type"),
    EntityFilter("owner", "spec.owner", "Owner"),
    EntityFilter("lifecycle", "spec.lifecycle", "Lifecycle"),
    EntityFilter("tag", "metadata.tags", "Tag"),
    EntityFilter("integration", "metadata.integration.integration_name", "Integration"),
)
SEARCH_FIELDS = ["metadata.name", "metadata.title"]

# sort parameter → (label, Entity column). The sorted fields are columns of the entity row, so a
# page is one ORDER BY ... LIMIT over the filtered rows (kind, type and owner are indexed), with
# the entity ref and id as tie-breakers for the keyset.
ENTITY_SORTS = {
    "name": ("Name", "name"),
    "kind": ("Kind", "kind"),
    "type": ("Type", "spec_type"),
    "owner": ("Owner", "owner"),
    "lifecycle": ("Lifecycle", "lifecycle"),
}
DEFAULT_SORT = "name"


@dataclass(frozen=True)
class EntityListQuery:
    """A parsed list request: the filters chosen, the search term and the sort."""

    values: dict[str, list[str]]
    search: str
    sort: str
    descending: bool

    @classmethod
    def from_params(cls, params: QueryDict) -> "EntityListQuery":
        values = {}
        for entity_filter in ENTITY_FILTERS:
            chosen = [v.strip() for v in params.getlist(entity_filter.param) if v.strip()]
            if chosen:
                values[entity_filter.param] = chosen
        raw_sort = params.get("sort", DEFAULT_SORT)
        descending = raw_sort.startswith("-")
        sort = raw_sort.removeprefix("-")
        if sort not in ENTITY_SORTS:
            sort, descending = DEFAULT_SORT, False
        return cls(values, params.get("q", "").strip(), sort, descending)

    def where(self) -> Q:
        """Filters AND together; several values of one filter OR (as in the API)."""
        q = Q()
        for entity_filter in ENTITY_FILTERS:
            if entity_filter.param in self.values:
                q &= condition_q(entity_filter.key, self.values[entity_filter.param])
        if (text := full_text_q(self.search, SEARCH_FIELDS)) is not None:
            q &= text
        return q

    @property
    def keys(self) -> list[tuple[str, bool]]:
        """(column, descending) sort keys, unique per row: what :func:`keyset_q` pages over."""
        return [(ENTITY_SORTS[self.sort][1], self.descending), ("ref_key", False), ("pk", False)]

    def ordered(self, queryset: QuerySet) -> QuerySet:
        return queryset.order_by(
            *(
                F(column).desc() if descending else F(column).asc()
                for column, descending in self.keys
            )
        )

    @property
    def is_filtered(self) -> bool:
        return bool(self.values or self.search)
