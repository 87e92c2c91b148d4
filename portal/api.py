"""API plumbing shared by every app: Backstage's error shape, the permission classes and the
limits every request body and query string is held to."""

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpResponseBadRequest, JsonResponse
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, permissions, status
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

ERROR_NAMES = {
    400: "InputError",
    401: "AuthenticationError",
    403: "NotAllowedError",
    404: "NotFoundError",
    405: "NotAllowedError",
    406: "InputError",
    409: "ConflictError",
    413: "InputError",
    415: "InputError",
    429: "TooManyRequestsError",
    503: "ServiceUnavailableError",
}


class InputError(exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "Invalid input."
    default_code = "invalid"


class ConflictError(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "Conflict."
    default_code = "conflict"


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "Request body too large."
    default_code = "too_large"


def _message(detail) -> str:
    if isinstance(detail, list):
        return "; ".join(_message(item) for item in detail)
    if isinstance(detail, dict):
        return "; ".join(
            f"{key}: {_message(value)}" if key != "non_field_errors" else _message(value)
            for key, value in detail.items()
        )
    return str(detail)


def error_body(request, status_code: int, message: str, name: str | None = None) -> dict:
    return {
        "error": {"name": name or ERROR_NAMES.get(status_code, "Error"), "message": message},
        "request": {"method": request.method, "url": request.get_full_path()},
        "response": {"statusCode": status_code},
    }


def exception_handler(exc, context):
    """Every API error as ``{error: {name, message}, request, response: {statusCode}}``."""
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or "Not found")
    elif isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge(
            f"The request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes"
        )
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    request = context["request"]
    body = error_body(request, response.status_code, _message(exc.detail))
    if isinstance(exc, exceptions.ValidationError) and isinstance(exc.detail, dict):
        body["error"]["details"] = exc.detail
    return Response(body, status=response.status_code, headers=_auth_headers(response))


@extend_schema(exclude=True)
class NoSuchEndpointApi(APIView):
    """The last route of each API: a path no endpoint matches answers a JSON 404, not Django's
    HTML page."""

    permission_classes = [permissions.AllowAny]

    def not_found(self, request, *args, **kwargs):
        raise exceptions.NotFound(f"No API endpoint at {request.path}")

    get = post = put = patch = delete = head = options = not_found


class NulCharacterGuardMiddleware:
    """A NUL character in the path or the query string is refused with a 400: PostgreSQL cannot
    compare or store it, so it would otherwise surface as a server error wherever a parameter
    reaches a query. API paths answer in Backstage's error shape."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if "\x00" in request.path or any(
            "\x00" in key or any("\x00" in value for value in values)
            for key, values in request.GET.lists()
        ):
            message = "The path and query parameters must not contain NUL characters (%00)"
            if request.path.startswith("/api/"):
                return JsonResponse(error_body(request, 400, message), status=400)
            return HttpResponseBadRequest(message)
        return self.get_response(request)


def _auth_headers(response) -> dict:
    return {
        name: response[name] for name in ("WWW-Authenticate", "Retry-After") if name in response
    }


class IsAuthenticatedOrAnonymousRead(permissions.BasePermission):
    """Catalog reads: any authenticated user, or anyone when anonymous read is switched on."""

    def has_permission(self, request, view) -> bool:
        if request.user and request.user.is_authenticated:
            return True
        return bool(settings.LANTERN_CATALOG_ANONYMOUS_READ)


def require_perm(perm: str) -> type[permissions.BasePermission]:
    """A permission class requiring an authenticated user holding the Django permission."""

    class HasPerm(permissions.BasePermission):
        message = f"You need the permission {perm!r} for this action."

        def has_permission(self, request, view) -> bool:
            user = request.user
            if not (user and user.is_authenticated):
                return False
            return user.has_perm(perm)

    HasPerm.__name__ = f"HasPerm_{perm.replace('.', '_')}"
    return HasPerm
