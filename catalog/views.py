"""The catalog UI: the entity list and the entity page with its tabs.

Views are thin: visibility comes from :mod:`catalog.selectors`, filtering and keyset paging from
:mod:`catalog.query` (through :mod:`catalog.filtersets`), documents from :mod:`catalog.rendering`.
Other apps add tabs to the entity page with :func:`entity_tab_register` (the integrations app adds
Pull requests and Commits) and cards to its Overview with :func:`entity_overview_panel_register`
(the scorecards app adds Delivery metrics), so the catalog never imports them.
"""

import base64
import binascii
import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from catalog.filtersets import (
    CHOICE_PARAM,
    ENTITY_FILTERS,
    ENTITY_SORTS,
    EntityListQuery,
    choice_statements,
)
from catalog.models import Entity, Location, Relation
from catalog.query import (
    QueryError,
    condition_q,
    full_text_q,
    keyset_q,
    order_value,
    query_choices,
    row_key_values,
)
from catalog.refs import EntityRefError, parse_entity_ref
from catalog.rendering import dump_yaml
from catalog.selectors import (
    entities_count,
    entities_visible,
    entity_by_ref,
    entity_documents,
    entity_facets,
)
from catalog.services import entity_delete

PAGE_SIZE = 25
FACET_LIMIT = 100
DELETE_PERMISSION = "catalog.delete_entity"
# Backstage's marker of an entity whose source no longer provides it; the integrations engine
# writes it on linked entities whose repository is gone. The list's "Orphans only" filter.
ORPHAN_ANNOTATION = "backstage.io/orphan"
ORPHAN_FILTER_KEY = f"metadata.annotations.{ORPHAN_ANNOTATION}"

# --- tabs of the entity page ------------------------------------------------------------------


@dataclass(frozen=True)
class EntityTab:
    """A tab of the entity page; ``url_name`` takes ``namespace``, ``kind`` and ``name``."""

    key: str
    label: str
    url_name: str


_BUILTIN_TABS = (
    EntityTab("overview", "Overview", "catalog:entity"),
    EntityTab("relationships", "Relationships", "catalog:entity-relationships"),
)
_YAML_TAB = EntityTab("yaml", "YAML", "catalog:entity-yaml")
_registered_tabs: list[EntityTab] = []


def entity_tab_register(tab: EntityTab) -> None:
    """Add a tab (shown between Relationships and YAML), from an ``AppConfig.ready()``."""
    if any(existing.key == tab.key for existing in _registered_tabs):
        return
    _registered_tabs.append(tab)


@dataclass(frozen=True)
class EntityOverviewPanel:
    """A card of the entity's Overview: ``context(request, entity)`` gives the template its
    context, or None when the card has nothing to say about this entity. Each panel adds its
    own statements to the page, so it should read what it shows in one or two."""

    key: str
    template_name: str
    context: Callable[[HttpRequest, Entity], dict[str, Any] | None]


_overview_panels: list[EntityOverviewPanel] = []


def entity_overview_panel_register(panel: EntityOverviewPanel) -> None:
    """Add a card below the Overview's facts, from an ``AppConfig.ready()``."""
    if any(existing.key == panel.key for existing in _overview_panels):
        return
    _overview_panels.append(panel)


def entity_overview_panels(request: HttpRequest, entity: Entity) -> list[dict[str, Any]]:
    panels = []
    for panel in _overview_panels:
        context = panel.context(request, entity)
        if context is not None:
            panels.append({"key": panel.key, "template": panel.template_name, "context": context})
    return panels


@dataclass(frozen=True)
class EntityNoticeAction:
    """A POST form of a notice: ``explanation`` is shown beside the button before it is
    pressed (the confirmation); ``confirm`` asks for a ticked box as well."""

    label: str
    url: str
    explanation: str
    danger: bool = False
    confirm: bool = False


@dataclass(frozen=True)
class EntityNotice:
    """Something wrong with the entity that a person should act on, shown above every tab.
    ``level`` is ``warn`` or ``danger``; ``hint`` says what to do."""

    level: str
    title: str
    message: str = ""
    hint: str = ""
    link: tuple[str, str] | None = None  # (label, url)
    actions: tuple[EntityNoticeAction, ...] = ()


EntityNoticeSource = Callable[[HttpRequest, Entity], list[EntityNotice]]
_notice_sources: list[EntityNoticeSource] = []


def entity_notice_register(source: EntityNoticeSource) -> None:
    """Add a source of notices of the entity page (from an ``AppConfig.ready()``): the
    integrations app says when the entity's refresh failed or its repository is gone."""
    if source not in _notice_sources:
        _notice_sources.append(source)


def entity_notices(request: HttpRequest, entity: Entity) -> list[EntityNotice]:
    return [notice for source in _notice_sources for notice in source(request, entity)]


def entity_url_kwargs(entity: Entity) -> dict[str, str]:
    return {"namespace": entity.namespace, "kind": entity.kind.lower(), "name": entity.name}


def entity_url(entity: Entity) -> str:
    return reverse("catalog:entity", kwargs=entity_url_kwargs(entity))


def entity_page_context(
    entity: Entity, active: str, request: HttpRequest | None = None
) -> dict[str, Any]:
    """What every tab of the entity page shares: the entity, its tabs, its source link and,
    given the request, its notices."""
    kwargs = entity_url_kwargs(entity)
    tabs = [
        {
            "label": tab.label,
            "url": reverse(tab.url_name, kwargs=kwargs),
            "active": tab.key == active,
        }
        for tab in (*_BUILTIN_TABS, *_registered_tabs, _YAML_TAB)
    ]
    return {
        "entity": entity,
        "tabs": tabs,
        "source_url": source_url(entity),
        "active_tab": active,
        "notices": entity_notices(request, entity) if request is not None else [],
    }


def source_url(entity: Entity) -> str:
    """Where the entity's code lives (the Bitbucket repository), from its annotations."""
    annotations = entity.annotations or {}
    for key in ("bitbucket.org/repo-url", "backstage.io/source-location"):
        value = annotations.get(key)
        if isinstance(value, str) and value:
            value = value.removeprefix("url:")
            if value.startswith(("https://", "http://")):
                return value
    return ""


# --- access -----------------------------------------------------------------------------------


def catalog_read_required(view: Callable) -> Callable:
    """Reading the catalog needs a signed-in user unless anonymous read is on (as in the API)."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs):
        if not request.user.is_authenticated and not settings.LANTERN_CATALOG_ANONYMOUS_READ:
            return redirect_to_login(request.get_full_path())
        return view(request, *args, **kwargs)

    return wrapped


def entity_for_request(request: HttpRequest, namespace: str, kind: str, name: str) -> Entity:
    """The entity if the user may see it, else 404."""
    entity = entity_by_ref(
        queryset=entities_visible(user=request.user).select_related("scope"),
        kind=kind,
        namespace=namespace,
        name=name,
    )
    if entity is None:
        raise Http404(f"No entity {kind}:{namespace}/{name}")
    return entity


# --- the list ---------------------------------------------------------------------------------


def _encode_position(values: list) -> str:
    return base64.urlsafe_b64encode(json.dumps(values, default=str).encode()).decode()


def _decode_position(token: str) -> list:
    try:
        values = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, binascii.Error) as exc:
        raise QueryError("Malformed page token") from exc
    if not isinstance(values, list):
        raise QueryError("Malformed page token")
    return values


def _page_url(request: HttpRequest, **changes: str | None) -> str:
    params = request.GET.copy()
    for key in ("after", "before"):
        params.pop(key, None)
    for key, value in changes.items():
        if value is not None:
            params[key] = value
    return f"?{params.urlencode()}"


@require_GET
@catalog_read_required
def entity_list(request: HttpRequest) -> HttpResponse:
    """Keyset pages over the visible entities, filtered through the search table.

    Whatever the catalog's size, a page costs the same queries: one count, one page of rows
    (ORDER BY a column with keyset conditions, never an OFFSET), one per filter's options, one
    for the choices other apps register (scorecards and their levels), and one to resolve a
    registered filter or sort that is used.
    """
    query = EntityListQuery.from_params(request.GET)
    choices = query_choices()
    orphans = request.GET.get("orphan") == "true"
    visible = entities_visible(user=request.user)
    error = ""
    try:
        filtered = visible.filter(query.where(choices))
        if orphans:
            filtered = filtered.filter(condition_q(ORPHAN_FILTER_KEY, ["true"]))
        queryset, keys = query.ordered(filtered)
        after, before = request.GET.get("after"), request.GET.get("before")
        if after:
            queryset = queryset.filter(keyset_q(keys, _decode_position(after)))
        elif before:
            queryset = queryset.filter(
                keyset_q(keys, _decode_position(before), backwards=True)
            ).reverse()
        rows = list(queryset[: PAGE_SIZE + 1])
        total = entities_count(filtered)
    except QueryError as exc:
        error, rows, total, after, before, keys = str(exc), [], 0, None, None, []
    more = len(rows) > PAGE_SIZE
    entities = rows[:PAGE_SIZE]
    if before:
        entities.reverse()
    has_next = more if not before else True
    has_prev = bool(after) or (more if before else False)
    next_url = prev_url = ""
    if entities and has_next:
        next_url = _page_url(request, after=_encode_position(row_key_values(entities[-1], keys)))
    if entities and has_prev:
        prev_url = _page_url(request, before=_encode_position(row_key_values(entities[0], keys)))
    facets = entity_facets(queryset=visible, facets=[f.key for f in ENTITY_FILTERS])
    filters = [
        {
            "param": f.param,
            "label": f.label,
            "selected": query.values.get(f.param, []),
            "options": sorted(
                {str(item["value"]) for item in facets[f.key][:FACET_LIMIT]}
                | set(query.values.get(f.param, []))
            ),
        }
        for f in ENTITY_FILTERS
    ]
    sort_links = {
        key: _page_url(
            request, sort=f"-{key}" if key == query.sort and not query.descending else key
        )
        for key in ENTITY_SORTS
    }
    # Sorted by a registered field (a score): its value per row, shown in its own column.
    scores = None if query.sorts_by_column else [order_value(e) for e in entities]
    return render(
        request,
        "catalog/entity_list.html",
        {
            "entities": entities,
            "total": total,
            "query": query,
            "filters": filters,
            "sorts": [(key, label) for key, (label, _) in ENTITY_SORTS.items()],
            "choice_param": CHOICE_PARAM,
            "choices": [
                {"label": choice.label, "options": choice_statements(choice)} for choice in choices
            ],
            "choice_sorts": [(choice.order_field, choice.label) for choice in choices],
            "rows": zip(entities, scores or [None] * len(entities), strict=True),
            "sorted_by_score": scores is not None,
            "sort_links": sort_links,
            "next_url": next_url,
            "prev_url": prev_url,
            "error": error,
            "orphans": orphans,
            "is_filtered": query.is_filtered or orphans,
        },
    )


@require_GET
@catalog_read_required
def entity_picker(request: HttpRequest) -> JsonResponse:
    """Up to 20 visible entities matching a term, for the merge target picker."""
    term = request.GET.get("q", "").strip()
    queryset = entities_visible(user=request.user)
    if kind := request.GET.get("kind", "").strip():
        queryset = queryset.filter(kind__iexact=kind)
    if term:
        queryset = queryset.filter(full_text_q(term, ["metadata.name", "metadata.title"]))
    results = [
        {"id": e.pk, "ref": e.ref, "name": e.name, "title": e.title, "kind": e.kind}
        for e in queryset.order_by("ref_key")[:20]
    ]
    return JsonResponse({"results": results})


# --- the entity page --------------------------------------------------------------------------


def _ref_link(ref: str, *, default_kind: str, namespace: str) -> dict[str, str]:
    try:
        parsed = parse_entity_ref(ref, default_kind=default_kind, default_namespace=namespace)
    except EntityRefError:
        return {"ref": ref, "url": ""}
    url = reverse(
        "catalog:entity",
        kwargs={"namespace": parsed.namespace, "kind": parsed.kind.lower(), "name": parsed.name},
    )
    return {"ref": ref, "url": url}


@require_GET
@catalog_read_required
def entity_detail(request: HttpRequest, namespace: str, kind: str, name: str) -> HttpResponse:
    entity = entity_for_request(request, namespace, kind, name)
    context = entity_page_context(entity, "overview", request)
    context["owner"] = (
        _ref_link(entity.owner, default_kind="Group", namespace=entity.namespace)
        if entity.owner
        else None
    )
    context["system"] = (
        _ref_link(entity.system, default_kind="System", namespace=entity.namespace)
        if entity.system
        else None
    )
    context["annotations"] = sorted((entity.annotations or {}).items())
    context["labels"] = sorted((entity.labels or {}).items())
    context["panels"] = entity_overview_panels(request, entity)
    return render(request, "catalog/entity_detail.html", context)


@require_GET
@catalog_read_required
def entity_relationships(
    request: HttpRequest, namespace: str, kind: str, name: str
) -> HttpResponse:
    entity = entity_for_request(request, namespace, kind, name)
    relations = list(
        Relation.objects.filter(source_key=entity.ref_key).order_by("type", "target_key")
    )
    existing = set(
        entities_visible(user=request.user)
        .filter(ref_key__in={r.target_key for r in relations})
        .values_list("ref_key", flat=True)
    )
    groups: dict[str, list[dict]] = defaultdict(list)
    seen: set[tuple[str, str]] = set()
    for relation in relations:
        if (relation.type, relation.target_key) in seen:
            continue
        seen.add((relation.type, relation.target_key))
        link = _ref_link(relation.target_ref, default_kind="Component", namespace=entity.namespace)
        link["exists"] = relation.target_key in existing
        groups[relation.type].append(link)
    context = entity_page_context(entity, "relationships", request)
    context["groups"] = sorted(groups.items())
    return render(request, "catalog/entity_relationships.html", context)


def _entity_yaml(entity: Entity) -> str:
    return dump_yaml(entity_documents([entity], sections=True)[0])


@require_GET
@catalog_read_required
def entity_yaml(request: HttpRequest, namespace: str, kind: str, name: str) -> HttpResponse:
    entity = entity_for_request(request, namespace, kind, name)
    context = entity_page_context(entity, "yaml", request)
    context["yaml"] = _entity_yaml(entity)
    ingested: dict[str, Any] = {}
    if entity.integration_links:
        ingested["metadata"] = {"integration": entity.integration_links}
    if entity.integration_properties:
        ingested["integration_properties"] = entity.integration_properties
    context["ingested_yaml"] = dump_yaml(ingested) if ingested else ""
    return render(request, "catalog/entity_yaml.html", context)


@require_GET
@catalog_read_required
def entity_yaml_download(
    request: HttpRequest, namespace: str, kind: str, name: str
) -> HttpResponse:
    entity = entity_for_request(request, namespace, kind, name)
    response = HttpResponse(_entity_yaml(entity), content_type="application/yaml; charset=utf-8")
    filename = f"{entity.kind.lower()}-{entity.namespace}-{entity.name}.yaml"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@require_POST
def entity_delete_view(request: HttpRequest, namespace: str, kind: str, name: str) -> HttpResponse:
    """Delete the entity from the catalog (the orphan banner's Delete): signed in, with
    ``catalog.delete_entity``, and the confirmation box ticked."""
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    if not request.user.has_perm(DELETE_PERMISSION):
        raise PermissionDenied("You need the permission to delete catalog entities.")
    entity = entity_for_request(request, namespace, kind, name)
    if request.POST.get("confirm") != "on":
        messages.error(request, f"Tick the confirmation box to delete {entity.ref}.")
        return redirect(entity_url(entity))
    ref = entity.ref
    entity_delete(entity=entity)
    messages.success(request, f"Deleted {ref} from the catalog.")
    return redirect("catalog:entity-list")


def entity_notices_from_location(request: HttpRequest, entity: Entity) -> list[EntityNotice]:
    """The entity page's notice when the location that emits the entity failed its last read
    (the error its document shows in ``status.items``): the entity stays as last read."""
    if entity.location_id is None:
        return []
    location = Location.objects.filter(pk=entity.location_id, last_error__has_key="message")
    location = location.only("type", "target", "last_error").first()
    if location is None:
        return []
    return [
        EntityNotice(
            level="danger",
            title=f"Its location {location.ref} could not be read",
            message=location.last_error["message"],
            hint=(
                "The entity stays as the location last gave it. Fix the file (or the "
                "integration that reads it), then refresh."
            ),
        )
    ]
