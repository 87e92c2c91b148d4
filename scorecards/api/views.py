"""The scorecards API (``/api/scorecards``). Reading needs a signed-in user (an entity's results
only when the user can read the entity); writes need the model's Django permission
(``scorecards.add_scorecard``, ``change_scorecard``, ``delete_scorecard``, and the same for
checks). Writes go through :mod:`scorecards.services`, so a bad rule, filter or level is refused
with a 400 naming the field, as in the admin."""

from collections.abc import Iterator
from contextlib import contextmanager

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema
from rest_framework import viewsets
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog.api.serializers import REQUEST_ERRORS, error_responses
from catalog.selectors import entities_visible, entity_by_ref
from portal.api import require_perm
from scorecards import selectors, services
from scorecards.api import serializers as s
from scorecards.models import Check

_ERRORS = {**REQUEST_ERRORS, **error_responses(403)}
_NOT_FOUND = error_responses(404)


@contextmanager
def service_errors() -> Iterator[None]:
    """A service's Django ``ValidationError`` → a 400 keeping the field errors."""
    try:
        yield
    except DjangoValidationError as exc:
        raise ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        ) from exc


class ModelPermissionMixin:
    """Reads for signed-in users; create, change and delete need the model's permission."""

    model_label = ""

    def get_permissions(self):
        verb = {"create": "add", "partial_update": "change", "destroy": "delete"}.get(self.action)
        if verb is None:
            return [IsAuthenticated()]
        return [require_perm(f"scorecards.{verb}_{self.model_label}")()]


@extend_schema(tags=["scorecards"])
class ScorecardViewSet(ModelPermissionMixin, viewsets.GenericViewSet):
    model_label = "scorecard"
    serializer_class = s.ScorecardSerializer

    def get_queryset(self):
        return selectors.scorecards_list()

    def _out(self, scorecards: list, *, many: bool):
        user = self.request.user
        context = {
            "distribution": selectors.level_distribution(user=user, scorecards=scorecards),
            "failing": selectors.failing_entities(user=user, scorecards=scorecards),
        }
        return s.ScorecardSerializer(
            scorecards if many else scorecards[0], many=many, context=context
        ).data

    @extend_schema(
        operation_id="scorecards_list", responses={200: s.ScorecardSerializer(many=True), **_ERRORS}
    )
    def list(self, request: Request) -> Response:
        return Response(self._out(list(self.get_queryset()), many=True))

    @extend_schema(
        operation_id="scorecards_retrieve",
        responses={200: s.ScorecardSerializer, **_ERRORS, **_NOT_FOUND},
    )
    def retrieve(self, request: Request, pk: int) -> Response:
        return Response(self._out([self.get_object()], many=False))

    def _checks(self, body: dict) -> dict:
        if "checks" in body:
            body["checks"] = [{"check": c["check"], "weight": c["weight"]} for c in body["checks"]]
        return body

    @extend_schema(
        operation_id="scorecards_create",
        request=s.ScorecardInputSerializer,
        responses={201: s.ScorecardSerializer, **_ERRORS},
    )
    def create(self, request: Request) -> Response:
        body = s.ScorecardInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        with service_errors():
            scorecard = services.scorecard_create(**self._checks(dict(body.validated_data)))
        return Response(
            self._out([self.get_queryset().get(pk=scorecard.pk)], many=False), status=201
        )

    @extend_schema(
        operation_id="scorecards_update",
        request=s.ScorecardInputSerializer(partial=True),
        responses={200: s.ScorecardSerializer, **_ERRORS, **_NOT_FOUND},
    )
    def partial_update(self, request: Request, pk: int) -> Response:
        scorecard = self.get_object()
        body = s.ScorecardInputSerializer(data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        with service_errors():
            services.scorecard_update(
                scorecard=scorecard, **self._checks(dict(body.validated_data))
            )
        return Response(self._out([self.get_queryset().get(pk=scorecard.pk)], many=False))

    @extend_schema(
        operation_id="scorecards_destroy", responses={204: None, **_ERRORS, **_NOT_FOUND}
    )
    def destroy(self, request: Request, pk: int) -> Response:
        services.scorecard_delete(scorecard=self.get_object())
        return Response(status=204)


@extend_schema(tags=["scorecards"])
class CheckViewSet(ModelPermissionMixin, viewsets.GenericViewSet):
    model_label = "check"
    serializer_class = s.CheckSerializer
    queryset = Check.objects.all()

    @extend_schema(
        operation_id="scorecards_checks_list",
        responses={200: s.CheckSerializer(many=True), **_ERRORS},
    )
    def list(self, request: Request) -> Response:
        return Response(s.CheckSerializer(self.get_queryset(), many=True).data)

    @extend_schema(
        operation_id="scorecards_checks_retrieve",
        responses={200: s.CheckSerializer, **_ERRORS, **_NOT_FOUND},
    )
    def retrieve(self, request: Request, pk: int) -> Response:
        return Response(s.CheckSerializer(self.get_object()).data)

    @extend_schema(
        operation_id="scorecards_checks_create",
        request=s.CheckInputSerializer,
        responses={201: s.CheckSerializer, **_ERRORS},
    )
    def create(self, request: Request) -> Response:
        body = s.CheckInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        with service_errors():
            check = services.check_create(**body.validated_data)
        return Response(s.CheckSerializer(check).data, status=201)

    @extend_schema(
        operation_id="scorecards_checks_update",
        request=s.CheckInputSerializer(partial=True),
        responses={200: s.CheckSerializer, **_ERRORS, **_NOT_FOUND},
    )
    def partial_update(self, request: Request, pk: int) -> Response:
        check = self.get_object()
        body = s.CheckInputSerializer(data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        with service_errors():
            check = services.check_update(check=check, **body.validated_data)
        return Response(s.CheckSerializer(check).data)

    @extend_schema(
        operation_id="scorecards_checks_destroy", responses={204: None, **_ERRORS, **_NOT_FOUND}
    )
    def destroy(self, request: Request, pk: int) -> Response:
        with service_errors():
            services.check_delete(check=self.get_object())
        return Response(status=204)


@extend_schema(tags=["scorecards"])
class EntityScorecardsApi(APIView):
    """An entity's metrics and scorecard results; 404 for an entity the user cannot read."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="scorecards_entity",
        responses={200: s.EntityScorecardsSerializer, **_ERRORS, **_NOT_FOUND},
    )
    def get(self, request: Request, kind: str, namespace: str, name: str) -> Response:
        entity = entity_by_ref(
            queryset=entities_visible(user=request.user), kind=kind, namespace=namespace, name=name
        )
        if entity is None:
            raise NotFound(f"No entity {kind}:{namespace}/{name} that you can read")
        body = {
            **selectors.entity_scorecards(entity=entity),
            "refresh": selectors.entity_pending_refresh(entity=entity),
        }
        return Response(s.EntityScorecardsSerializer(body).data)
