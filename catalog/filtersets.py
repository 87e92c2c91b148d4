"""The entity list's filters, named for people and answered by the API's query language.

Every filter here is a :func:`catalog.query.condition_q` over the indexed search table (key,
value) — the same lookups ``GET /api/catalog/entities?filter=...`` makes — and the search box is
:func:`catalog.query.full_text_q`; nothing is filtered in Python or over JSON columns.
"""

from dataclasses import dataclass

from django.db.models import F, Q, QuerySet
from django.http import QueryDict

from catalog.query import (
    OrderField,
    QueryChoice,
    QueryError,
    condition_q,
    full_text_q,
    ordered,
    query_field_for,
)


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
# The filter of the fields other apps register (catalog.query.QueryField): one select whose
# options are ``<filter key>=<value>`` statements, e.g. ``scorecard.Basics.level=Gold``.
CHOICE_PARAM = "level"


def choice_statements(choice: QueryChoice) -> list[tuple[str, str]]:
    """(``key=value`` statement, label) of each option of one choice, the empty value last."""
    options = [(f"{choice.filter_key}={value}", value) for value in choice.values]
    return [*options, (f"{choice.filter_key}=", choice.none_label)]


@dataclass(frozen=True)
class EntityListQuery:
    """A parsed list request: the filters chosen, the search term and the sort."""

    values: dict[str, list[str]]
    search: str
    sort: str  # a key of ENTITY_SORTS, or a registered order field (scorecard.<name>.score)
    descending: bool
    choice: str = ""  # one of the choices' ``key=value`` statements (see choice_statements)

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
        if sort not in ENTITY_SORTS and query_field_for(sort.lower()) is None:
            sort, descending = DEFAULT_SORT, False
        choice = params.get(CHOICE_PARAM, "").strip()
        return cls(values, params.get("q", "").strip(), sort, descending, choice)

    def where(self, choices: list[QueryChoice]) -> Q:
        """Filters AND together; several values of one filter OR (as in the API). The choice
        must be one of the options offered: statements are matched whole, so names holding
        ``=`` or ``,`` work too."""
        q = Q()
        for entity_filter in ENTITY_FILTERS:
            if entity_filter.param in self.values:
                q &= condition_q(entity_filter.key, self.values[entity_filter.param])
        if self.choice:
            q &= self._choice_q(choices)
        if (text := full_text_q(self.search, SEARCH_FIELDS)) is not None:
            q &= text
        return q

    def _choice_q(self, choices: list[QueryChoice]) -> Q:
        for choice in choices:
            for statement, _ in choice_statements(choice):
                if statement == self.choice:
                    value = statement.removeprefix(f"{choice.filter_key}=")
                    return condition_q(choice.filter_key, [value])
        raise QueryError(f"No such filter: {self.choice!r} (it may have been renamed or deleted)")

    @property
    def sorts_by_column(self) -> bool:
        return self.sort in ENTITY_SORTS

    def ordered(self, queryset: QuerySet) -> tuple[QuerySet, list[tuple[str, bool]]]:
        """The ordered queryset and its (alias, descending) sort keys, unique per row: what
        :func:`keyset_q` pages over. A column of the entity row, or a registered order field
        (one indexed subquery per row, missing values last, as the API orders it)."""
        if not self.sorts_by_column:
            return ordered(queryset, [OrderField(self.sort, self.descending)])
        keys = [(ENTITY_SORTS[self.sort][1], self.descending), ("ref_key", False), ("pk", False)]
        order_by = [
            F(column).desc() if descending else F(column).asc() for column, descending in keys
        ]
        return queryset.order_by(*order_by), keys

    @property
    def is_filtered(self) -> bool:
        return bool(self.values or self.search or self.choice)
