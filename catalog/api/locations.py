"""The locations API (``/api/catalog/locations``, ``/analyze-location``), as Backstage's catalog
backend serves it to ``@backstage/catalog-client``; the work is :mod:`catalog.locations`'."""

import base64
import binascii
import json
import uuid

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, status
from rest_framework.request import Request
from rest_framework.response import Response

from catalog.api import serializers as s
from catalog.api.limits import query_limits_check
from catalog.api.views import _ERRORS, _NOT_FOUND, CatalogReadApi, raise_not_found
from catalog.locations import (
    LocationError,
    location_add,
    location_analyze,
    location_delete,
    location_of_entity,
    location_update,
    locations_predicate_q,
)
from catalog.models import Location
from catalog.selectors import entity_by_ref, scope_visibility_q
from portal.api import InputError, require_perm

DEFAULT_LOCATION_QUERY_LIMIT = 20
MAX_LOCATION_QUERY_LIMIT = 1000

_CONFLICT = s.error_responses(409)
_FORBIDDEN = s.error_responses(403)


def location_data(location: Location) -> dict:
    return {
        "id": str(location.pk),
        "type": location.type,
        "target": location.target,
        "entityRef": location.entity_ref,
    }


class LocationApi(CatalogReadApi):
    """Locations the user may see (by the scope of the integration that reads them); a
    :class:`LocationError` answers with its own status and name."""

    # The permission each method needs beyond signing in (None: a read).
    method_permissions: dict[str, str] = {}

    def get_permissions(self):
        needed = self.method_permissions.get(self.request.method)
        if needed:
            return [require_perm(needed)()]
        return super().get_permissions()

    def handle_exception(self, exc):
        if isinstance(exc, LocationError):
            error = exceptions.APIException(exc.message)
            error.status_code = exc.status
            exc = error
        return super().handle_exception(exc)

    def locations(self):
        q = scope_visibility_q(self.request.user)
        return Location.objects.all() if q is None else Location.objects.filter(q)

    def location(self, raw_id: str) -> Location:
        try:
            pk = uuid.UUID(raw_id)
        except ValueError:
            pk = None
        location = self.locations().filter(pk=pk).first() if pk else None
        if location is None:
            raise_not_found(f"Found no location with ID {raw_id}")
        return location


class LocationListApi(LocationApi):
    method_permissions = {"POST": "catalog.add_location"}

    @extend_schema(
        operation_id="catalog_locations_list",
        responses={200: s.LocationItemSerializer(many=True), **_ERRORS},
    )
    def get(self, request: Request) -> Response:
        return Response([{"data": location_data(location)} for location in self.locations()])

    @extend_schema(
        operation_id="catalog_location_create",
        parameters=[
            OpenApiParameter("dryRun", str, enum=["true", "false"]),
            OpenApiParameter("onConflict", str, enum=["reject", "refresh"]),
        ],
        request=s.LocationSpecSerializer,
        responses={
            201: s.LocationAddResponseSerializer,
            **_ERRORS,
            **_FORBIDDEN,
            **_NOT_FOUND,
            **_CONFLICT,
        },
    )
    def post(self, request: Request) -> Response:
        body = s.LocationSpecSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        dry_run = request.query_params.get("dryRun", "false")
        on_conflict = request.query_params.get("onConflict", "reject")
        if dry_run not in ("true", "false"):
            raise InputError(f"dryRun must be true or false, got {dry_run!r}")
        if on_conflict not in ("reject", "refresh"):
            raise InputError(f"onConflict must be reject or refresh, got {on_conflict!r}")
        added = location_add(
            type=body.validated_data["type"],
            target=body.validated_data["target"],
            dry_run=dry_run == "true",
            on_conflict=on_conflict,
            user=request.user,
        )
        answer = {"location": location_data(added.location), "entities": added.entities}
        if dry_run == "true" or added.exists:
            answer["exists"] = added.exists
        return Response(answer, status=status.HTTP_201_CREATED)


class LocationDetailApi(LocationApi):
    method_permissions = {"PUT": "catalog.change_location", "DELETE": "catalog.delete_location"}

    @extend_schema(
        operation_id="catalog_location_get",
        responses={200: s.LocationSerializer, **_ERRORS, **_NOT_FOUND},
    )
    def get(self, request: Request, id: str) -> Response:
        return Response(location_data(self.location(id)))

    @extend_schema(
        operation_id="catalog_location_update",
        request=s.LocationSpecSerializer,
        responses={200: s.LocationSerializer, **_ERRORS, **_FORBIDDEN, **_NOT_FOUND, **_CONFLICT},
    )
    def put(self, request: Request, id: str) -> Response:
        location = self.location(id)
        body = s.LocationSpecSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        location = location_update(
            location=location,
            type=body.validated_data["type"],
            target=body.validated_data["target"],
            user=request.user,
        )
        return Response(location_data(location))

    @extend_schema(
        operation_id="catalog_location_delete",
        responses={204: None, **_ERRORS, **_FORBIDDEN, **_NOT_FOUND},
    )
    def delete(self, request: Request, id: str) -> Response:
        location_delete(location=self.location(id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class LocationByEntityApi(LocationApi):
    @extend_schema(
        operation_id="catalog_location_by_entity",
        responses={200: s.LocationSerializer, **_ERRORS, **_NOT_FOUND},
    )
    def get(self, request: Request, kind: str, namespace: str, name: str) -> Response:
        entity = entity_by_ref(queryset=self.visible(), kind=kind, namespace=namespace, name=name)
        if entity is None:
            raise_not_found(f"No entity named '{kind}:{namespace}/{name}' found")
        location = location_of_entity(queryset=self.locations(), entity=entity)
        if location is None:
            raise_not_found(f"No location emits the entity '{entity.ref}'")
        return Response(location_data(location))


class LocationQueryApi(LocationApi):
    """``POST /locations/by-query``: a predicate over id, type and target, paged by an opaque
    cursor that carries the predicate, the position and the total."""

    @extend_schema(
        operation_id="catalog_locations_query",
        request=s.LocationQueryRequestSerializer,
        responses={200: s.LocationQueryResponseSerializer, **_ERRORS},
    )
    def post(self, request: Request) -> Response:
        body = s.LocationQueryRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        if data.get("cursor"):
            state = _location_cursor_decode(data["cursor"])
        else:
            limit = data.get("limit", DEFAULT_LOCATION_QUERY_LIMIT)
            state = {"query": data.get("query") or {}, "offset": 0, "limit": limit}
        query_limits_check(predicate=state["query"])
        matching = self.locations().filter(locations_predicate_q(state["query"]))
        if "totalItems" not in state:
            state["totalItems"] = matching.count()
        limit = min(state["limit"], MAX_LOCATION_QUERY_LIMIT)
        offset = state["offset"]
        rows = list(matching.order_by("created_at", "id")[offset : offset + limit + 1])
        page_info = {}
        if len(rows) > limit:
            rows = rows[:limit]
            page_info["nextCursor"] = _location_cursor_encode({**state, "offset": offset + limit})
        return Response(
            {
                "items": [location_data(location) for location in rows],
                "totalItems": state["totalItems"],
                "pageInfo": page_info,
            }
        )


def _location_cursor_encode(state: dict) -> str:
    return base64.b64encode(json.dumps(state, separators=(",", ":")).encode()).decode()


def _location_cursor_decode(token: str) -> dict:
    try:
        state = json.loads(base64.b64decode(token, validate=True))
    except (binascii.Error, ValueError, RecursionError) as exc:
        raise InputError("Malformed cursor") from exc
    valid = (
        isinstance(state, dict)
        and isinstance(state.get("query"), dict)
        and all(
            isinstance(state.get(key), int) and 0 <= state[key] <= s.MAX_INTEGER
            for key in ("offset", "limit")
        )
        and isinstance(state.get("totalItems", 0), int)
    )
    if not valid:
        raise InputError("Malformed cursor")
    return state


class AnalyzeLocationApi(LocationApi):
    """``POST /analyze-location``: what registering a URL would store, or the entity to create
    for a repository without a catalog file. It reads through an integration (its budget), so
    it asks for the permission to add locations."""

    method_permissions = {"POST": "catalog.add_location"}

    @extend_schema(
        operation_id="catalog_location_analyze",
        request=s.AnalyzeLocationRequestSerializer,
        responses={
            200: s.AnalyzeLocationResponseSerializer,
            **_ERRORS,
            **_FORBIDDEN,
            **_NOT_FOUND,
        },
    )
    def post(self, request: Request) -> Response:
        body = s.AnalyzeLocationRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        location = body.validated_data["location"]
        return Response(
            location_analyze(
                type=location["type"],
                target=location["target"],
                catalog_filename=body.validated_data.get("catalogFilename", ""),
                user=request.user,
            )
        )
