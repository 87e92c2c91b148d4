from allauth.account.adapter import DefaultAccountAdapter
from django.conf import settings


class AccountAdapter(DefaultAccountAdapter):
    """Self sign-up is off unless ``LANTERN_ALLOW_SIGNUP`` is set: admins create accounts."""

    def is_open_for_signup(self, request) -> bool:
        return settings.ACCOUNT_ALLOW_REGISTRATION
