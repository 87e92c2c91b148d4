import hmac

from django.utils import timezone
from rest_framework import authentication, exceptions

from portal.models import ApiToken, token_digest


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer <token>`` with a per-user :class:`ApiToken`."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, raw = header.partition(" ")
        if scheme.lower() != "bearer":
            return None
        raw = raw.strip()
        if not raw:
            raise exceptions.AuthenticationFailed("Missing bearer token")
        digest = token_digest(raw)
        token = ApiToken.objects.select_related("user").filter(digest=digest).first()
        # The lookup is by digest; the constant-time comparison guards against any future
        # change to a prefix lookup.
        if token is None or not hmac.compare_digest(token.digest, digest):
            raise exceptions.AuthenticationFailed("Invalid bearer token")
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted")
        now = timezone.now()
        if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user, token

    def authenticate_header(self, request) -> str:
        return self.keyword
