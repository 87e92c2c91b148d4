"""Reads of integrations: what a user may see, and list querysets that cost a fixed number of
queries whatever the page size."""

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from django.db.models import (
    BooleanField,
    Count,
    ExpressionWrapper,
    F,
    IntegerField,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    TextField,
    Value,
)
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Coalesce

from catalog.models import Scope, ScopeMembership
from catalog.refs import EntityRefError, parse_entity_ref
from catalog.selectors import entities_visible, scope_visibility_q
from integrations.choices import DiscoveredState, LinkState
from integrations.models import (
    Connector,
    CorrelationRule,
    DiscoveredEntity,
    FieldMapping,
    ImportedEntity,
    Integration,
    SyncRun,
    WriteBack,
    WriteBackBatch,
)


def _visible(queryset: QuerySet, user) -> QuerySet:
    q = scope_visibility_q(user)
    return queryset if q is None else queryset.filter(q)


def connectors_visible(user) -> QuerySet[Connector]:
    """Connectors without a scope, or in (or below) a scope the user belongs to; all for
    superusers."""
    return _visible(Connector.objects.select_related("scope"), user)


def integrations_visible(user) -> QuerySet[Integration]:
    """Integrations the user may see, by the same scope rule as connectors."""
    return _visible(Integration.objects.select_related("scope", "connector"), user)


def user_scope_limited(user) -> bool:
    """Whether the user's rights are limited to scopes: not a superuser, and a member of at
    least one scope. A user with no membership is not limited (scope visibility shows them the
    objects of no scope, the account's own), so they may change account-level objects."""
    if user is None or not user.is_authenticated:
        return True
    if user.is_superuser:
        return False
    return ScopeMembership.objects.filter(user=user).exists()


ACCOUNT_LEVEL_READ_ONLY = (
    "{noun} {name} belongs to the whole account (it has no scope): only an administrator "
    "whose permissions are not limited to a scope may change it; yours are limited to {scopes}."
)


ACCOUNT_LEVEL_CREATE = (
    "{noun} without a scope belongs to the whole account: only an administrator whose "
    "permissions are not limited to a scope may create one. Yours are: give it one of your "
    "scopes (scope)."
)


def change_refusal(*, user, obj: Connector | Integration) -> str | None:
    """Why ``user`` may not change ``obj`` (a connector or an integration they can see), or
    None. The rule: an object of no scope (account-level) may be changed only by a user whose
    permission is not limited to a scope (:func:`user_scope_limited`); an object of a scope
    the user sees, by anyone holding the edit permission. The edit permission itself is
    checked by the views."""
    if obj.scope_id is not None or not user_scope_limited(user):
        return None
    scopes = ", ".join(
        ScopeMembership.objects.filter(user=user)
        .order_by("scope__path")
        .values_list("scope__path", flat=True)
    )
    noun = "Connector" if isinstance(obj, Connector) else "Integration"
    return ACCOUNT_LEVEL_READ_ONLY.format(noun=noun, name=obj.name, scopes=scopes or "none")


def scopes_assignable(user) -> QuerySet[Scope]:
    """Scopes a user may put a connector or an integration in: the scopes they belong to and
    those below; every scope for superusers."""
    if user.is_superuser:
        return Scope.objects.all()
    q = Q(pk__in=[])
    for path in ScopeMembership.objects.filter(user=user).values_list("scope__path", flat=True):
        q |= Q(path=path) | Q(path__startswith=f"{path}/")
    return Scope.objects.filter(q)


def _count(model, filter_q: Q) -> Coalesce:
    rows = (
        model.objects.filter(filter_q, integration=OuterRef("pk"))
        .order_by()
        .values("integration")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(rows, output_field=IntegerField()), 0)


def integrations_with_details(queryset: QuerySet[Integration]) -> QuerySet[Integration]:
    """Counts as correlated subqueries (two joined ``Count`` would multiply each other) and
    rules and mappings prefetched: three queries for any number of integrations."""
    return queryset.annotate(
        discovered_count=_count(DiscoveredEntity, ~Q(state=DiscoveredState.GONE)),
        imported_count=_count(ImportedEntity, Q(state=LinkState.LINKED)),
    ).prefetch_related(
        Prefetch("correlation_rules", queryset=CorrelationRule.objects.order_by("position", "pk")),
        Prefetch("field_mappings", queryset=FieldMapping.objects.order_by("position", "pk")),
    )


def discovered_list(
    *,
    integration: Integration,
    state: str | None = None,
    recommended_action: str | None = None,
    search: str | None = None,
    needs_attention: bool = False,
) -> QuerySet[DiscoveredEntity]:
    """``needs_attention``: only records whose processing failed (the partial index on
    (integration, error_since) answers it)."""
    queryset = DiscoveredEntity.objects.filter(integration=integration).select_related(
        "suggested_entity", "name_holder"
    )
    if needs_attention:
        queryset = queryset.filter(error_since__isnull=False)
    if state:
        queryset = queryset.filter(state=state)
    if recommended_action:
        queryset = queryset.filter(recommended_action=recommended_action)
    if search:
        queryset = queryset.filter(name__icontains=search)
    return queryset.order_by("name", "pk")


def imported_list(
    *,
    integration: Integration,
    state: str | None = None,
    search: str | None = None,
    source_gone: bool | None = None,
) -> QuerySet[ImportedEntity]:
    """Each link annotated with its record's state and ``gone_at`` (``source_state``,
    ``source_gone_at``) and whether its repository declares itself (``declared``: the last sync
    found a catalog-info.yaml holding an entity); ``source_gone``: only the links whose
    repository is gone (True), only the others (False), or both (None). The record's name and web
    URL (``source_name``, ``source_url``: empty when the provider gave none) name the repository
    a link came from, which a merge's entity name does not."""
    queryset = (
        ImportedEntity.objects.filter(integration=integration)
        .select_related("entity", "entity__scope")
        .annotate(
            source_name=F("discovered__name"),
            source_url=Coalesce(
                KeyTextTransform("url", "discovered__data"), Value(""), output_field=TextField()
            ),
            source_state=F("discovered__state"),
            source_gone_at=F("discovered__gone_at"),
            # No catalog_info in the record's data makes the test NULL: the repository declares
            # nothing, so False (the API documents a boolean).
            declared=Coalesce(
                ExpressionWrapper(
                    Q(discovered__data__catalog_info__has_key="spec"), output_field=BooleanField()
                ),
                Value(False),
            ),
        )
    )
    if state:
        queryset = queryset.filter(state=state)
    if source_gone is not None:
        gone = Q(discovered__state=DiscoveredState.GONE)
        queryset = queryset.filter(gone) if source_gone else queryset.exclude(gone)
    if search:
        queryset = queryset.filter(entity__name__icontains=search)
    return queryset.order_by("-imported_at", "-pk")


def runs_list(*, integration: Integration) -> QuerySet[SyncRun]:
    return SyncRun.objects.filter(integration=integration).order_by("-started_at", "-pk")


def _writebacks(queryset: QuerySet[WriteBack]) -> QuerySet[WriteBack]:
    """Records with what a list shows of them (repository, entity, integration, who asked)
    joined: one query whatever the page size."""
    return queryset.select_related("discovered", "entity", "integration", "requested_by").order_by(
        "-requested_at", "-pk"
    )


def writebacks_for_entity(*, entity, user) -> QuerySet[WriteBack]:
    """The write-backs of a catalog entity, newest first, through integrations the user may
    see."""
    return _writebacks(
        WriteBack.objects.filter(entity=entity, integration__in=integrations_visible(user))
    )


def writebacks_for_integration(*, integration: Integration) -> QuerySet[WriteBack]:
    """The integration's write-backs, newest first."""
    return _writebacks(WriteBack.objects.filter(integration=integration))


def writeback_batch_get(*, pk: int, user, integration: Integration | None = None) -> WriteBackBatch:
    """A batch of an integration the user may see (of ``integration`` when given), with its
    records prefetched; ``WriteBackBatch.DoesNotExist`` otherwise."""
    queryset = WriteBackBatch.objects.filter(
        integration__in=integrations_visible(user)
    ).select_related("integration", "requested_by")
    if integration is not None:
        queryset = queryset.filter(integration=integration)
    return queryset.prefetch_related(
        Prefetch(
            "writes",
            queryset=WriteBack.objects.select_related(
                "discovered", "entity", "requested_by"
            ).order_by("pk"),
        )
    ).get(pk=pk)


K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class MergeTargetUnresolved:
    """Why a chosen merge target names no entity: the reference does not parse (``error``), or
    no entity the user may see has that ref key or id (``missing``)."""

    error: str = ""
    missing: str = ""


def merge_targets_resolve(
    *, user, default_kind: str, chosen: Mapping[K, str | int | None]
) -> dict[K, int | None | MergeTargetUnresolved]:
    """The entities a request chose to merge discovered records into, one query for the lot:
    per key, the id of the visible entity named by the reference (a string; ``default_kind``
    where it names none) or the id (an int), None where nothing was chosen (the record's
    suggestion), or why it does not resolve."""
    visible = entities_visible(user=user)
    targets: dict[K, int | None | MergeTargetUnresolved] = {}
    keys: dict[K, str] = {}
    ids: dict[K, int] = {}
    for key, value in chosen.items():
        if isinstance(value, str) and value:
            try:
                keys[key] = parse_entity_ref(value, default_kind=default_kind).key
            except EntityRefError as exc:
                targets[key] = MergeTargetUnresolved(error=str(exc))
        elif isinstance(value, int) and value:
            ids[key] = value
        else:
            targets[key] = None
    by_key = (
        dict(visible.filter(ref_key__in=set(keys.values())).values_list("ref_key", "pk"))
        if keys
        else {}
    )
    visible_ids = (
        set(visible.filter(pk__in=set(ids.values())).values_list("pk", flat=True)) if ids else set()
    )
    for key, ref_key in keys.items():
        targets[key] = by_key.get(ref_key) or MergeTargetUnresolved(missing=ref_key)
    for key, entity_id in ids.items():
        targets[key] = (
            entity_id if entity_id in visible_ids else MergeTargetUnresolved(missing=str(entity_id))
        )
    return targets
