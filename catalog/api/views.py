"""The Backstage-compatible catalog API (``/api/catalog``), shaped as Backstage's catalog
backend answers ``@backstage/catalog-client``."""

import uuid
from urllib.parse import urlencode

from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
)
from rest_framework import status
from rest_framework.exceptions import NotAcceptable, NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog.api import serializers as s
from catalog.api.limits import facets_check, query_limits_check
from catalog.api.renderers import YAMLRenderer
from catalog.models import Entity
from catalog.query import (
    Cursor,
    OrderField,
    QueryError,
    condition_q,
    filters_q,
    keyset_q,
    ordered,
    parse_order_fields,
    parse_order_params,
    predicate_q,
    row_key_values,
)
from catalog.refs import EntityRefError, parse_entity_ref
from catalog.selectors import (
    entities_by_refs,
    entities_count,
    entities_visible,
    entity_by_ref,
    entity_documents,
    entity_facets,
    user_ownership_refs,
)
from catalog.services import entity_delete, entity_refresh_request
from catalog.validation import validate_entity_document
from portal.api import InputError, IsAuthenticatedOrAnonymousRead, require_perm
from portal.renderers import JSONRenderer

DEFAULT_QUERY_LIMIT = 20
MAX_LIMIT = 1000

# No 406: an Accept header naming nothing served gets JSON (CatalogReadApi), as from Backstage.
_ERRORS = s.error_responses(400, 401)
_NOT_FOUND = s.error_responses(404)


def _csv_params(request: Request, name: str) -> list[str]:
    """``fields=a,b&fields=c`` → ``[a, b, c]``."""
    values = []
    for raw in request.query_params.getlist(name):
        values.extend(part.strip() for part in raw.split(",") if part.strip())
    return values


def _int_param(request: Request, name: str, default: int | None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise InputError(f"{name} must be an integer, got {raw!r}") from exc
    if value < 0:
        raise InputError(f"{name} must not be negative")
    if value > s.MAX_INTEGER:
        raise InputError(f"{name} must be at most {s.MAX_INTEGER}")
    return value


def _cursor_decode(token: str) -> Cursor:
    try:
        return Cursor.decode(token)
    except RecursionError as exc:  # json.loads of a deeply nested payload
        raise InputError("Malformed cursor") from exc


def _check(cursor: Cursor) -> None:
    """A query from parameters or from a client's cursor, held to the same limits."""
    query_limits_check(
        filters=cursor.filters, predicate=cursor.predicate, full_text_term=cursor.full_text_term
    )


def _limit(value: int | None, default: int | None) -> int | None:
    if value is None:
        return default
    return min(value, MAX_LIMIT)


def _owned_by_current_user(request: Request, raw) -> dict | None:
    """``ownedByCurrentUser=true``: the predicate that keeps the entities the signed-in user
    or one of their groups owns (``None`` without the parameter)."""
    if raw in (None, "", False, "false"):
        return None
    if raw not in (True, "true"):
        raise InputError(f"ownedByCurrentUser must be true or false, got {raw!r}")
    if not request.user.is_authenticated:
        raise InputError("ownedByCurrentUser needs a signed-in user")
    refs = user_ownership_refs(user=request.user, queryset=entities_visible(user=request.user))
    return {"relations.ownedBy": {"$in": refs}}


def _with_predicate(predicate: dict | None, extra: dict | None) -> dict | None:
    if extra is None:
        return predicate
    return {"$all": [predicate, extra]} if predicate else extra


_OWNED_PARAM = OpenApiParameter(
    "ownedByCurrentUser",
    str,
    enum=["true", "false"],
    description="only entities the signed-in user or one of their groups owns",
)


class CatalogReadApi(APIView):
    permission_classes = [IsAuthenticatedOrAnonymousRead]

    def handle_exception(self, exc):
        if isinstance(exc, QueryError | EntityRefError):
            exc = InputError(str(exc))
        return super().handle_exception(exc)

    def perform_content_negotiation(self, request, force=False):
        # DRF answers an unknown ?format= with a 404; it is a bad parameter, not a missing page.
        # An Accept header naming nothing served gets JSON, as Backstage's catalog answers.
        try:
            return super().perform_content_negotiation(request, force)
        except NotAcceptable:
            return super().perform_content_negotiation(request, force=True)
        except Http404 as exc:
            formats = ", ".join(renderer.format for renderer in self.get_renderers())
            raise InputError(
                f"Unsupported format {request.query_params.get('format')!r}: use {formats}"
            ) from exc

    def visible(self):
        return entities_visible(user=self.request.user)

    def visible_for_documents(self):
        """The visible entities, without the timestamps no document shows (a page decodes
        hundreds of them otherwise)."""
        return self.visible().defer("created_at", "updated_at")


_FILTER_PARAM = OpenApiParameter(
    "filter", str, many=True, description="key[=value] statements; commas AND, repeats OR"
)
_FIELDS_PARAM = OpenApiParameter("fields", str, many=True, description="dotted paths to keep")


class EntityListApi(CatalogReadApi):
    """``GET /entities``: a bare array; with ``limit``, a ``Link: rel="next"`` header."""

    renderer_classes = [JSONRenderer, YAMLRenderer]

    @extend_schema(
        operation_id="catalog_entities_list",
        parameters=[
            _FILTER_PARAM,
            _FIELDS_PARAM,
            OpenApiParameter("order", str, many=True, description="asc:<field> or desc:<field>"),
            OpenApiParameter("limit", int),
            OpenApiParameter("offset", int),
            OpenApiParameter("after", str, description="cursor from the Link header"),
            _OWNED_PARAM,
        ],
        responses={200: s.PartialEntitySerializer(many=True), **_ERRORS},
    )
    def get(self, request: Request) -> Response:
        fields = _csv_params(request, "fields")
        limit = _limit(_int_param(request, "limit", None), None)
        offset = _int_param(request, "offset", 0)
        after = request.query_params.get("after")
        if after:
            cursor = _cursor_decode(after)
        else:
            cursor = Cursor(
                filters=request.query_params.getlist("filter"),
                predicate=_owned_by_current_user(
                    request, request.query_params.get("ownedByCurrentUser")
                ),
                order=parse_order_params(request.query_params.getlist("order")),
            )
        _check(cursor)
        queryset, keys = ordered(self.visible_for_documents().filter(cursor.where()), cursor.order)
        if cursor.position is not None:
            queryset = queryset.filter(keyset_q(keys, cursor.position))
        elif offset:
            queryset = queryset[offset:]
        headers = {}
        if limit is None:
            entities = list(queryset)
        else:
            entities = list(queryset[: limit + 1]) if limit else []
            if len(entities) > limit:
                entities = entities[:limit]
                cursor.position = row_key_values(entities[-1], keys)
                query = urlencode(
                    [("after", cursor.encode()), ("limit", limit)]
                    + [("fields", ",".join(fields))] * bool(fields)
                )
                url = request.build_absolute_uri(request.path)
                headers["Link"] = f'<{url}?{query}>; rel="next"'
        return Response(entity_documents(entities, fields=fields or None), headers=headers)


class EntityQueryApi(CatalogReadApi):
    """``/entities/by-query``: cursor pagination; GET with filters, POST with a predicate."""

    @extend_schema(
        operation_id="catalog_entities_query",
        parameters=[
            _FILTER_PARAM,
            _FIELDS_PARAM,
            OpenApiParameter("orderField", str, many=True, description="<field>,asc|desc"),
            OpenApiParameter("fullTextFilterTerm", str),
            OpenApiParameter("fullTextFilterFields", str, many=True),
            OpenApiParameter("limit", int),
            OpenApiParameter("offset", int),
            OpenApiParameter("cursor", str),
            OpenApiParameter("totalItems", str, enum=["include", "exclude"]),
            _OWNED_PARAM,
        ],
        responses={200: s.EntityQueryResponseSerializer, **_ERRORS},
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        limit = _limit(_int_param(request, "limit", None), DEFAULT_QUERY_LIMIT)
        fields = _csv_params(request, "fields")
        if params.get("cursor"):
            return self._page(_cursor_decode(params["cursor"]), limit, 0, fields)
        order = parse_order_fields(params.getlist("orderField"))
        cursor = Cursor(
            filters=params.getlist("filter"),
            predicate=_owned_by_current_user(request, params.get("ownedByCurrentUser")),
            order=order,
            full_text_term=params.get("fullTextFilterTerm", "").strip(),
            full_text_fields=_csv_params(request, "fullTextFilterFields")
            or [o.field for o in order[:1]],
        )
        return self._page(
            cursor,
            limit,
            _int_param(request, "offset", 0),
            fields,
            count_total=params.get("totalItems", "include") != "exclude",
        )

    @extend_schema(
        operation_id="catalog_entities_query_predicate",
        request=s.EntityQueryRequestSerializer,
        responses={200: s.EntityQueryResponseSerializer, **_ERRORS},
    )
    def post(self, request: Request) -> Response:
        body = s.EntityQueryRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        limit = _limit(data.get("limit"), DEFAULT_QUERY_LIMIT)
        fields = data.get("fields") or []
        if data.get("cursor"):
            return self._page(_cursor_decode(data["cursor"]), limit, 0, fields)
        order = [
            OrderField(item["field"], item["order"] == "desc")
            for item in data.get("orderBy") or data.get("orderFields") or []
        ]
        full_text = data.get("fullTextFilter") or {}
        owned = _owned_by_current_user(request, data.get("ownedByCurrentUser"))
        cursor = Cursor(
            predicate=_with_predicate(data.get("query") or {}, owned),
            order=order,
            full_text_term=(full_text.get("term") or "").strip(),
            full_text_fields=full_text.get("fields") or [o.field for o in order[:1]],
        )
        count_total = data.get("totalItems", "include") != "exclude" and not data.get(
            "skipTotalItems"
        )
        return self._page(cursor, limit, data.get("offset") or 0, fields, count_total=count_total)

    def _page(
        self,
        cursor: Cursor,
        limit: int,
        offset: int,
        fields: list[str],
        *,
        count_total: bool = True,
    ) -> Response:
        _check(cursor)
        filtered = self.visible_for_documents().filter(cursor.where())
        if cursor.total_items is None:
            cursor.total_items = entities_count(filtered) if count_total else 0
        queryset, keys = ordered(filtered, cursor.order)
        backwards = cursor.backwards
        if cursor.position is not None:
            queryset = queryset.filter(keyset_q(keys, cursor.position, backwards=backwards))
            if backwards:
                queryset = queryset.reverse()
        elif offset:
            queryset = queryset[offset:]
        rows = list(queryset[: limit + 1]) if limit else []
        more = len(rows) > limit
        entities = rows[:limit]
        if backwards:
            entities.reverse()
        page_info = {}
        # Going forward there is a next page when we fetched more; going back, we came from it.
        has_next = more if not backwards else True
        has_prev = (cursor.position is not None or offset > 0) if not backwards else more
        if entities and has_next:
            page_info["nextCursor"] = self._cursor(cursor, entities[-1], keys, False)
        if entities and has_prev:
            page_info["prevCursor"] = self._cursor(cursor, entities[0], keys, True)
        return Response(
            {
                "items": entity_documents(entities, fields=fields or None),
                "totalItems": cursor.total_items,
                "pageInfo": page_info,
            }
        )

    @staticmethod
    def _cursor(cursor: Cursor, entity: Entity, keys, backwards: bool) -> str:
        return Cursor(
            filters=cursor.filters,
            predicate=cursor.predicate,
            order=cursor.order,
            full_text_term=cursor.full_text_term,
            full_text_fields=cursor.full_text_fields,
            total_items=cursor.total_items,
            position=row_key_values(entity, keys),
            backwards=backwards,
        ).encode()


class EntityByNameApi(CatalogReadApi):
    renderer_classes = [JSONRenderer, YAMLRenderer]

    @extend_schema(
        operation_id="catalog_entity_by_name",
        responses={200: s.EntitySerializer, **_ERRORS, **_NOT_FOUND},
    )
    def get(self, request: Request, kind: str, namespace: str, name: str) -> Response:
        entity = entity_by_ref(queryset=self.visible(), kind=kind, namespace=namespace, name=name)
        if entity is None:
            raise_not_found(f"No entity named '{kind}:{namespace}/{name}' found")
        return Response(entity_documents([entity], sections=True)[0])


class EntityAncestryApi(CatalogReadApi):
    @extend_schema(
        operation_id="catalog_entity_ancestry",
        responses={200: s.AncestryResponseSerializer, **_ERRORS, **_NOT_FOUND},
    )
    def get(self, request: Request, kind: str, namespace: str, name: str) -> Response:
        queryset = self.visible()
        entity = entity_by_ref(queryset=queryset, kind=kind, namespace=namespace, name=name)
        if entity is None:
            raise_not_found(f"No entity named '{kind}:{namespace}/{name}' found")
        chain = [entity]
        seen = {entity.ref_key}
        # Walk managed-by-location annotations up to the Location entities that emitted them.
        while True:
            location = _parent_location(queryset, chain[-1])
            if location is None or location.ref_key in seen:
                break
            seen.add(location.ref_key)
            chain.append(location)
        documents = entity_documents(chain)
        items = [
            {
                "entity": document,
                "parentEntityRefs": [chain[index + 1].ref] if index + 1 < len(chain) else [],
            }
            for index, document in enumerate(documents)
        ]
        return Response({"rootEntityRef": entity.ref, "items": items})


def _parent_location(queryset, entity: Entity) -> Entity | None:
    target = (entity.annotations or {}).get("backstage.io/managed-by-location", "")
    if not target or entity.kind.lower() == "location":
        return None
    if entity.location_id is not None:  # a registered location's: its Location entity
        return queryset.filter(location_id=entity.location_id, kind__iexact="location").first()
    _, _, location_target = target.partition(":")
    return (
        queryset.filter(condition_q("kind", ["location"]))
        .filter(
            condition_q("spec.target", [location_target])
            | condition_q("spec.targets", [location_target])
        )
        .first()
    )


def raise_not_found(message: str):
    raise NotFound(message)


class EntityByUidApi(CatalogReadApi):
    renderer_classes = [JSONRenderer, YAMLRenderer]

    def get_permissions(self):
        if self.request.method == "DELETE":
            return [require_perm("catalog.delete_entity")()]
        return super().get_permissions()

    @extend_schema(
        operation_id="catalog_entity_by_uid",
        responses={200: s.EntitySerializer, **_ERRORS, **_NOT_FOUND},
    )
    def get(self, request: Request, uid: str) -> Response:
        entity = get_object_or_404(self.visible(), uid=_uuid(uid))
        return Response(entity_documents([entity], sections=True)[0])

    @extend_schema(
        operation_id="catalog_entity_delete",
        responses={204: None, **_ERRORS, **_NOT_FOUND},
    )
    def delete(self, request: Request, uid: str) -> Response:
        entity = get_object_or_404(self.visible(), uid=_uuid(uid))
        entity_delete(entity=entity)
        return Response(status=status.HTTP_204_NO_CONTENT)


def _uuid(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise_not_found(f"No entity with uid {raw}")


class EntityByRefsApi(CatalogReadApi):
    @extend_schema(
        operation_id="catalog_entities_by_refs",
        parameters=[_FILTER_PARAM, _FIELDS_PARAM],
        request=s.EntitiesByRefsRequestSerializer,
        responses={200: s.EntitiesByRefsResponseSerializer, **_ERRORS},
    )
    def post(self, request: Request) -> Response:
        body = s.EntitiesByRefsRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        query_limits_check(
            filters=request.query_params.getlist("filter"), predicate=data.get("query")
        )
        queryset = self.visible()
        if (where := filters_q(request.query_params.getlist("filter"))) is not None:
            queryset = queryset.filter(where)
        if data.get("query"):
            queryset = queryset.filter(predicate_q(data["query"]))
        fields = data.get("fields") or _csv_params(request, "fields") or None
        found = entities_by_refs(queryset=queryset, refs=data["entityRefs"])
        present = [entity for entity in found if entity is not None]
        documents = dict(
            zip([e.pk for e in present], entity_documents(present, fields=fields), strict=True)
        )
        return Response({"items": [documents[e.pk] if e else None for e in found]})


class EntityFacetsApi(CatalogReadApi):
    @extend_schema(
        operation_id="catalog_entity_facets",
        parameters=[OpenApiParameter("facet", str, many=True, required=True), _FILTER_PARAM],
        responses={200: s.EntityFacetsResponseSerializer, **_ERRORS},
    )
    def get(self, request: Request) -> Response:
        facets = request.query_params.getlist("facet")
        if not facets:
            raise InputError("At least one facet parameter is required")
        facets_check(facets)
        query_limits_check(filters=request.query_params.getlist("filter"))
        queryset = self.visible()
        if (where := filters_q(request.query_params.getlist("filter"))) is not None:
            queryset = queryset.filter(where)
        return Response({"facets": entity_facets(queryset=queryset, facets=facets)})

    @extend_schema(
        operation_id="catalog_entity_facets_predicate",
        request=s.EntityFacetsRequestSerializer,
        responses={200: s.EntityFacetsResponseSerializer, **_ERRORS},
    )
    def post(self, request: Request) -> Response:
        body = s.EntityFacetsRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        facets_check(body.validated_data["facets"])
        query_limits_check(predicate=body.validated_data.get("query"))
        queryset = self.visible()
        if body.validated_data.get("query"):
            queryset = queryset.filter(predicate_q(body.validated_data["query"]))
        facets = body.validated_data["facets"]
        return Response({"facets": entity_facets(queryset=queryset, facets=facets)})


class EntityRefreshApi(CatalogReadApi):
    permission_classes = [require_perm("catalog.change_entity")]

    @extend_schema(
        operation_id="catalog_entity_refresh",
        request=s.RefreshRequestSerializer,
        responses={200: None, **_ERRORS, **_NOT_FOUND},
    )
    def post(self, request: Request) -> Response:
        body = s.RefreshRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        ref = parse_entity_ref(body.validated_data["entityRef"])
        entity = entity_by_ref(
            queryset=self.visible(), kind=ref.kind, namespace=ref.namespace, name=ref.name
        )
        if entity is None:
            raise_not_found(f"No entity named '{ref}' found")
        entity_refresh_request(entity=entity)
        return Response(status=status.HTTP_200_OK)


class EntityValidateApi(CatalogReadApi):
    @extend_schema(
        operation_id="catalog_validate_entity",
        request=s.ValidateEntityRequestSerializer,
        responses={
            200: None,
            400: OpenApiResponse(
                PolymorphicProxySerializer(
                    component_name="ValidateEntityError",
                    serializers=[s.ValidateEntityResponseSerializer, s.ErrorSerializer],
                    resource_type_field_name=None,
                ),
                description="The entity's problems ({errors}), or an invalid body (InputError)",
            ),
            401: _ERRORS[401],
        },
    )
    def post(self, request: Request) -> Response:
        body = s.ValidateEntityRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        issues = validate_entity_document(body.validated_data["entity"])
        if issues:
            errors = [{"name": "InputError", "message": str(issue)} for issue in issues]
            return Response({"errors": errors}, status=status.HTTP_400_BAD_REQUEST)
        return Response(status=status.HTTP_200_OK)
