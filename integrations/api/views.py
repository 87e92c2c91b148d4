"""The integrations API (``/api/integrations``): connectors and integrations as viewsets, and one
small view per action on an integration.

Reading needs an authenticated user; every write and action needs
``integrations.edit_integration``. Objects outside the user's scopes answer 404. Views stay thin:
writes go through :mod:`integrations.services`, whose Django ``ValidationError`` becomes a 400
``InputError`` with the field errors in ``error.details``.
"""

from collections.abc import Iterator
from contextlib import contextmanager

from django.core.exceptions import ValidationError as DjangoValidationError
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
)
from rest_framework import generics, status, viewsets
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog.api.serializers import REQUEST_ERRORS, ErrorSerializer, error_responses
from integrations import services
from integrations.api import serializers as s
from integrations.choices import (
    DiscoveredState,
    IntegrationState,
    LinkState,
    RecommendedAction,
)
from integrations.models import Integration, WriteBackBatch
from integrations.selectors import (
    ACCOUNT_LEVEL_CREATE,
    MergeTargetUnresolved,
    change_refusal,
    connectors_visible,
    discovered_list,
    imported_list,
    integrations_visible,
    integrations_with_details,
    merge_targets_resolve,
    runs_list,
    user_scope_limited,
    writeback_batch_get,
    writebacks_for_integration,
)
from portal.api import ConflictError, InputError, require_perm

EDIT_PERMISSION = "integrations.edit_integration"
CanEditIntegrations = require_perm(EDIT_PERMISSION)
CanWriteBack = require_perm(services.WRITE_BACK_PERMISSION)

_ERRORS = REQUEST_ERRORS
_READ_ERRORS = _ERRORS
_FORBIDDEN = error_responses(403)
_NOT_FOUND = error_responses(404)
_CONFLICT = error_responses(409)


# ``?state=error`` on the discovered list: the records that need attention.
NEEDS_ATTENTION = "error"
DISCOVERED_STATES = [*DiscoveredState.values, NEEDS_ATTENTION]


class Pagination(LimitOffsetPagination):
    default_limit = 50
    max_limit = 500
    max_offset = 2**31 - 1

    def get_offset(self, request) -> int:
        # Past the last row every page is empty; an offset beyond 64 bits would not reach the
        # database as a number at all.
        return min(super().get_offset(request), self.max_offset)


@contextmanager
def service_errors() -> Iterator[None]:
    """A Django ``ValidationError`` from a service → DRF's, keeping the field errors."""
    try:
        yield
    except DjangoValidationError as exc:
        if hasattr(exc, "error_dict"):
            raise ValidationError(exc.message_dict) from exc
        raise ValidationError({"non_field_errors": exc.messages}) from exc


def change_check(user, obj) -> None:
    """403 when the user may see ``obj`` but not change it (an account-level object and a
    user limited to scopes: :func:`integrations.selectors.change_refusal`)."""
    refusal = change_refusal(user=user, obj=obj)
    if refusal:
        raise PermissionDenied(refusal)


def create_check(user, scope, noun: str) -> None:
    """Creating an object of no scope is changing the account: refused (403) to a user limited
    to scopes, who must choose one of theirs."""
    if scope is None and user_scope_limited(user):
        raise PermissionDenied(ACCOUNT_LEVEL_CREATE.format(noun=noun))


class EditPermissionMixin:
    """Reads need a signed-in user; everything else the edit permission (and, for an object of
    no scope, a permission not limited to scopes)."""

    read_actions = ("list", "retrieve")

    def get_permissions(self):
        if self.action in self.read_actions:
            return [IsAuthenticated()]
        return [CanEditIntegrations()]

    def get_object_for_change(self):
        obj = self.get_object()
        change_check(self.request.user, obj)
        return obj


# Connectors


@extend_schema(tags=["integrations"])
class ConnectorViewSet(EditPermissionMixin, viewsets.GenericViewSet):
    """Connectors: credentials and address of a Bitbucket account or instance. ``secrets`` is
    write-only; responses say only ``has_secrets``."""

    serializer_class = s.ConnectorSerializer
    pagination_class = Pagination

    def get_queryset(self):
        return connectors_visible(self.request.user)

    @extend_schema(
        operation_id="integrations_connectors_list",
        responses={200: s.ConnectorSerializer(many=True), **_READ_ERRORS},
    )
    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(s.ConnectorSerializer(page, many=True).data)

    @extend_schema(
        operation_id="integrations_connectors_retrieve",
        responses={200: s.ConnectorSerializer, **_READ_ERRORS, **_NOT_FOUND},
    )
    def retrieve(self, request: Request, pk: int) -> Response:
        return Response(s.ConnectorSerializer(self.get_object()).data)

    @extend_schema(
        operation_id="integrations_connectors_create",
        request=s.ConnectorCreateSerializer,
        responses={201: s.ConnectorSerializer, **_ERRORS, **_FORBIDDEN},
    )
    def create(self, request: Request) -> Response:
        body = s.ConnectorCreateSerializer(data=request.data, context={"request": request})
        body.is_valid(raise_exception=True)
        create_check(request.user, body.validated_data.get("scope"), "A connector")
        with service_errors():
            connector = services.connector_create(**body.validated_data)
        return Response(s.ConnectorSerializer(connector).data, status=201)

    @extend_schema(
        operation_id="integrations_connectors_update",
        request=s.ConnectorUpdateSerializer,
        responses={200: s.ConnectorSerializer, **_ERRORS, **_FORBIDDEN, **_NOT_FOUND},
    )
    def partial_update(self, request: Request, pk: int) -> Response:
        connector = self.get_object_for_change()
        body = s.ConnectorUpdateSerializer(
            data=request.data, context={"request": request}, partial=True
        )
        body.is_valid(raise_exception=True)
        if "scope" in body.validated_data:
            create_check(request.user, body.validated_data["scope"], "A connector")
        with service_errors():
            connector = services.connector_update(connector=connector, **body.validated_data)
        return Response(s.ConnectorSerializer(connector).data)

    @extend_schema(
        operation_id="integrations_connectors_destroy",
        responses={204: None, **_READ_ERRORS, **_FORBIDDEN, **_NOT_FOUND, **_CONFLICT},
    )
    def destroy(self, request: Request, pk: int) -> Response:
        try:
            services.connector_delete(connector=self.get_object_for_change())
        except services.ConnectorInUse as exc:
            raise ConflictError(str(exc)) from exc
        return Response(status=status.HTTP_204_NO_CONTENT)


# Integrations


def _integration_detail(integration_id: int) -> Integration:
    """An integration with its counts, rules and mappings, for a response."""
    return integrations_with_details(Integration.objects.select_related("scope")).get(
        pk=integration_id
    )


@extend_schema(tags=["integrations"])
class IntegrationViewSet(EditPermissionMixin, viewsets.GenericViewSet):
    """Integrations: one provider account feeding the catalog. The webhook secret is never
    shown; ``webhook_url`` is where the provider posts."""

    serializer_class = s.IntegrationSerializer
    pagination_class = Pagination

    def get_queryset(self):
        return integrations_with_details(integrations_visible(self.request.user))

    @extend_schema(
        operation_id="integrations_list",
        responses={200: s.IntegrationSerializer(many=True), **_READ_ERRORS},
    )
    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(s.IntegrationSerializer(page, many=True).data)

    @extend_schema(
        operation_id="integrations_retrieve",
        responses={200: s.IntegrationSerializer, **_READ_ERRORS, **_NOT_FOUND},
    )
    def retrieve(self, request: Request, pk: int) -> Response:
        return Response(s.IntegrationSerializer(self.get_object()).data)

    @extend_schema(
        operation_id="integrations_create",
        request=s.IntegrationWriteSerializer,
        responses={201: s.IntegrationSerializer, **_ERRORS, **_FORBIDDEN},
    )
    def create(self, request: Request) -> Response:
        body = s.IntegrationWriteSerializer(data=request.data, context={"request": request})
        body.is_valid(raise_exception=True)
        create_check(request.user, body.validated_data.get("scope"), "An integration")
        with service_errors():
            integration = services.integration_create(**body.validated_data)
        return Response(
            s.IntegrationSerializer(_integration_detail(integration.pk)).data, status=201
        )

    @extend_schema(
        operation_id="integrations_update",
        request=s.IntegrationWriteSerializer(partial=True),
        responses={200: s.IntegrationSerializer, **_ERRORS, **_FORBIDDEN, **_NOT_FOUND},
    )
    def partial_update(self, request: Request, pk: int) -> Response:
        integration = self.get_object_for_change()
        body = s.IntegrationWriteSerializer(
            data=request.data, context={"request": request}, partial=True
        )
        body.is_valid(raise_exception=True)
        if "scope" in body.validated_data:
            create_check(request.user, body.validated_data["scope"], "An integration")
        values = dict(body.validated_data)
        state = values.pop("state", None)
        with service_errors():
            if values:
                integration = services.integration_update(integration=integration, **values)
            # Suspend and resume through their services: resuming also schedules a sync.
            if state == IntegrationState.SUSPENDED and integration.is_enabled:
                services.integration_suspend(integration=integration)
            elif state == IntegrationState.ENABLED and not integration.is_enabled:
                services.integration_resume(integration=integration)
        return Response(s.IntegrationSerializer(_integration_detail(integration.pk)).data)

    @extend_schema(
        operation_id="integrations_destroy",
        responses={204: None, **_READ_ERRORS, **_FORBIDDEN, **_NOT_FOUND},
    )
    def destroy(self, request: Request, pk: int) -> Response:
        services.integration_delete(integration=self.get_object_for_change())
        return Response(status=status.HTTP_204_NO_CONTENT)


# Actions on one integration


class IntegrationActionApi(APIView):
    """Base of the per-action views: the integration, if the user may see it."""

    permission_classes = [CanEditIntegrations]

    def get_integration(self, pk: int) -> Integration:
        integration = get_object_or_404(integrations_visible(self.request.user), pk=pk)
        change_check(self.request.user, integration)
        return integration


class IntegrationReadListApi(generics.ListAPIView):
    """Base of the paginated lists under one integration."""

    permission_classes = [IsAuthenticated]
    pagination_class = Pagination

    def get_integration(self) -> Integration:
        return get_object_or_404(integrations_visible(self.request.user), pk=self.kwargs["pk"])

    def choice_param(self, name: str, allowed: list[str]) -> str | None:
        value = self.request.query_params.get(name) or None
        if value is not None and value not in allowed:
            raise InputError(f"{name} must be one of {', '.join(allowed)}")
        return value


@extend_schema(tags=["integrations"])
class IntegrationSyncApi(IntegrationActionApi):
    @extend_schema(
        operation_id="integrations_sync",
        request=s.IntegrationSyncSerializer,
        responses={
            202: s.SyncQueuedSerializer,
            **_ERRORS,
            **_FORBIDDEN,
            **_NOT_FOUND,
            **_CONFLICT,
        },
    )
    def post(self, request: Request, pk: int) -> Response:
        """Queue a manual sync; it runs once this request commits. ``{"full": true}`` lists
        every repository again now (deletions and rule changes seen at once) instead of only
        those changed since the last listing."""
        integration = self.get_integration(pk)
        body = s.IntegrationSyncSerializer(data={} if request.data is None else request.data)
        body.is_valid(raise_exception=True)
        try:
            started = services.integration_sync_request(
                integration=integration, full=body.validated_data["full"], user=request.user
            )
        except services.IntegrationSuspended as exc:
            raise ConflictError(str(exc)) from exc
        return Response(
            {"queued": True, "full": started.full, "detail": started.detail},
            status=status.HTTP_202_ACCEPTED,
        )


@extend_schema(tags=["integrations"])
class IntegrationSuspendApi(IntegrationActionApi):
    @extend_schema(
        operation_id="integrations_suspend",
        request=None,
        responses={200: s.IntegrationSerializer, **_READ_ERRORS, **_FORBIDDEN, **_NOT_FOUND},
    )
    def post(self, request: Request, pk: int) -> Response:
        integration = services.integration_suspend(integration=self.get_integration(pk))
        return Response(s.IntegrationSerializer(_integration_detail(integration.pk)).data)


@extend_schema(tags=["integrations"])
class IntegrationResumeApi(IntegrationActionApi):
    @extend_schema(
        operation_id="integrations_resume",
        request=None,
        responses={200: s.IntegrationSerializer, **_READ_ERRORS, **_FORBIDDEN, **_NOT_FOUND},
    )
    def post(self, request: Request, pk: int) -> Response:
        """Enable the integration again and schedule a sync now."""
        integration = services.integration_resume(integration=self.get_integration(pk))
        return Response(s.IntegrationSerializer(_integration_detail(integration.pk)).data)


@extend_schema(tags=["integrations"])
class DiscoveredListApi(IntegrationReadListApi):
    serializer_class = s.DiscoveredEntitySerializer

    @extend_schema(
        operation_id="integrations_discovered_list",
        parameters=[
            OpenApiParameter(
                "state",
                str,
                enum=DISCOVERED_STATES,
                description="error: the records that need attention (a stage failed and has not "
                "succeeded since), whatever their state",
            ),
            OpenApiParameter("recommended_action", str, enum=RecommendedAction.values),
            OpenApiParameter("search", str, description="part of the name"),
        ],
        responses={
            200: s.DiscoveredEntitySerializer(many=True),
            **_ERRORS,
            **_NOT_FOUND,
        },
    )
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        state = self.choice_param("state", DISCOVERED_STATES)
        return discovered_list(
            integration=self.get_integration(),
            state=None if state == NEEDS_ATTENTION else state,
            recommended_action=self.choice_param("recommended_action", RecommendedAction.values),
            search=self.request.query_params.get("search", "").strip(),
            needs_attention=state == NEEDS_ATTENTION,
        )


_IMPORT_REQUEST = PolymorphicProxySerializer(
    component_name="DiscoveredImport",
    serializers=[s.ImportItemSerializer, s.ImportBatchSerializer],
    resource_type_field_name=None,
)


@extend_schema(tags=["integrations"])
class DiscoveredImportApi(IntegrationActionApi):
    @extend_schema(
        operation_id="integrations_import",
        request=_IMPORT_REQUEST,
        responses={
            **_READ_ERRORS,
            200: OpenApiResponse(s.ImportResponseSerializer, description="Every item imported"),
            207: OpenApiResponse(s.ImportResponseSerializer, description="Some items failed"),
            400: OpenApiResponse(
                PolymorphicProxySerializer(
                    component_name="DiscoveredImportError",
                    serializers=[s.ImportResponseSerializer, ErrorSerializer],
                    resource_type_field_name=None,
                ),
                description="Every item failed ({results}), or the body is invalid (InputError)",
            ),
            **_FORBIDDEN,
            **_NOT_FOUND,
        },
    )
    def post(self, request: Request, pk: int) -> Response:
        """Import discovered records: one item, or ``{"items": [...]}``. Each item succeeds or
        fails on its own."""
        integration = self.get_integration(pk)
        if isinstance(request.data, dict) and "items" in request.data:
            body = s.ImportBatchSerializer(data=request.data)
            body.is_valid(raise_exception=True)
            items = body.validated_data["items"]
        else:
            body = s.ImportItemSerializer(data=request.data)
            body.is_valid(raise_exception=True)
            items = [body.validated_data]
        results: list[dict | None] = [None] * len(items)
        pending: list[tuple[int, services.ImportRequest]] = []
        chosen = {
            index: item.get("entity_ref") or item.get("entity_id")
            for index, item in enumerate(items)
        }
        targets = merge_targets_resolve(
            user=request.user, default_kind=integration.entity_kind, chosen=chosen
        )
        for index, item in enumerate(items):
            entity_id = targets[index]
            if isinstance(entity_id, MergeTargetUnresolved):
                why = entity_id.error or f"No catalog entity {chosen[index]}"
                results[index] = _result(item["discovered_id"], error=why)
                continue
            pending.append(
                (
                    index,
                    services.ImportRequest(
                        discovered_id=item["discovered_id"],
                        action=item.get("action"),
                        entity_id=entity_id,
                        entity_type=item.get("type"),
                    ),
                )
            )
        outcomes = services.discovered_import_many(
            integration=integration, requests=[r for _, r in pending], user=request.user
        )
        for (index, import_request), (_, imported, error) in zip(pending, outcomes, strict=True):
            results[index] = _result(
                import_request.discovered_id,
                imported_id=imported.pk if imported is not None else None,
                error=error,
            )
        succeeded = sum(1 for result in results if result["ok"])
        if succeeded == len(results):
            code = status.HTTP_200_OK
        elif succeeded == 0:
            code = status.HTTP_400_BAD_REQUEST
        else:
            code = status.HTTP_207_MULTI_STATUS
        return Response({"results": results}, status=code)


def _result(discovered_id: int, *, imported_id: int | None = None, error: str = "") -> dict:
    if imported_id is not None:
        return {"discovered_id": discovered_id, "ok": True, "imported_id": imported_id}
    return {"discovered_id": discovered_id, "ok": False, "error": error}


@extend_schema(tags=["integrations"])
class ImportedListApi(IntegrationReadListApi):
    serializer_class = s.ImportedEntitySerializer

    @extend_schema(
        operation_id="integrations_imported_list",
        parameters=[
            OpenApiParameter(
                "state",
                str,
                enum=s.IMPORTED_STATES,
                description="source_gone: linked entities whose repository is no longer listed "
                "(linked: those whose repository is)",
            ),
            OpenApiParameter("search", str, description="part of the entity name"),
        ],
        responses={200: s.ImportedEntitySerializer(many=True), **_ERRORS, **_NOT_FOUND},
    )
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        state = self.choice_param("state", s.IMPORTED_STATES)
        # The state shown is derived (a linked entity whose repository is gone is source_gone),
        # and the filter follows what is shown.
        gone = {s.SOURCE_GONE: True, LinkState.LINKED: False}.get(state)
        return imported_list(
            integration=self.get_integration(),
            state=LinkState.LINKED if state == s.SOURCE_GONE else state,
            search=self.request.query_params.get("search", "").strip(),
            source_gone=gone,
        )


@extend_schema(tags=["integrations"])
class ImportedUnlinkApi(IntegrationActionApi):
    @extend_schema(
        operation_id="integrations_imported_unlink",
        request=None,
        responses={200: s.ImportedEntitySerializer, **_READ_ERRORS, **_FORBIDDEN, **_NOT_FOUND},
    )
    def post(self, request: Request, pk: int, imported_pk: int) -> Response:
        """Stop syncing into the entity; the entity and its data stay in the catalog."""
        integration = self.get_integration(pk)
        imported = get_object_or_404(imported_list(integration=integration), pk=imported_pk)
        services.imported_unlink(imported=imported)
        return Response(s.ImportedEntitySerializer(imported).data)


@extend_schema(tags=["integrations"])
class SyncRunListApi(IntegrationReadListApi):
    serializer_class = s.SyncRunSerializer

    @extend_schema(
        operation_id="integrations_runs_list",
        responses={200: s.SyncRunSerializer(many=True), **_READ_ERRORS, **_NOT_FOUND},
    )
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        return runs_list(integration=self.get_integration())


class WebhookDeliveryListApi(IntegrationReadListApi):
    """The delivery log: time, event, repository, outcome, latency (newest first)."""

    serializer_class = s.WebhookDeliverySerializer

    @extend_schema(
        operation_id="integrations_webhook_deliveries_list",
        responses={200: s.WebhookDeliverySerializer(many=True), **_READ_ERRORS, **_NOT_FOUND},
    )
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        return self.get_integration().webhook_deliveries.order_by("-received_at", "-pk")


# Write-back


@extend_schema(tags=["integrations"])
class WritebackApi(IntegrationActionApi):
    permission_classes = [CanWriteBack]

    @extend_schema(
        operation_id="integrations_write_back",
        request=s.WritebackRequestSerializer,
        responses={
            200: OpenApiResponse(
                s.WritebackPreviewSerializer(many=True), description="dry_run: the previews"
            ),
            202: OpenApiResponse(s.WriteBackBatchSerializer, description="The batch, queued"),
            **_ERRORS,
            **_FORBIDDEN,
            **_NOT_FOUND,
        },
    )
    def post(self, request: Request, pk: int) -> Response:
        """Write each repository's catalog-info.yaml (as Lantern renders its entity) back:
        in a pull request, or as a direct commit where the integration allows it. Runs as a
        background task; poll the batch for each repository's outcome. ``dry_run`` answers the
        previews (the diff, and whether the write may go ahead or why not) and writes
        nothing. Needs ``integrations.write_back``."""
        integration = self.get_integration(pk)
        body = s.WritebackRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        values = body.validated_data
        with service_errors():
            if values["dry_run"]:
                previews = services.writeback_preview(
                    integration=integration,
                    discovered_ids=values["discovered_ids"],
                    user=request.user,
                )
                return Response(s.WritebackPreviewSerializer(previews, many=True).data)
            batch = services.writeback_request(
                integration=integration,
                discovered_ids=values["discovered_ids"],
                mode=values["mode"],
                user=request.user,
                expected=values.get("expected"),
                reviewers=values.get("reviewers"),
            )
        batch = writeback_batch_get(pk=batch.pk, user=request.user)
        return Response(s.WriteBackBatchSerializer(batch).data, status=status.HTTP_202_ACCEPTED)


@extend_schema(tags=["integrations"])
class WritebackBatchApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="integrations_write_back_batch",
        responses={200: s.WriteBackBatchSerializer, **_READ_ERRORS, **_NOT_FOUND},
    )
    def get(self, request: Request, pk: int, batch_pk: int) -> Response:
        """A write-back's progress: ``done`` of ``total`` repositories finished, ``failed``
        of them failed, and each repository's outcome (commit, pull request, or error with
        a hint)."""
        integration = get_object_or_404(integrations_visible(request.user), pk=pk)
        try:
            batch = writeback_batch_get(pk=batch_pk, user=request.user, integration=integration)
        except WriteBackBatch.DoesNotExist as exc:
            raise NotFound(f"No write-back {batch_pk} of integration {integration.name}") from exc
        return Response(s.WriteBackBatchSerializer(batch).data)


@extend_schema(tags=["integrations"])
class WritebackListApi(IntegrationReadListApi):
    """Every write-back of the integration, newest first: who, when, which repository, the
    commit or pull request (and its state), or why it failed."""

    serializer_class = s.WriteBackSerializer

    @extend_schema(
        operation_id="integrations_writes_list",
        responses={200: s.WriteBackSerializer(many=True), **_READ_ERRORS, **_NOT_FOUND},
    )
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        return writebacks_for_integration(integration=self.get_integration())
