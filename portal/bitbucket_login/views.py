from allauth.socialaccount.providers.bitbucket_oauth2.views import BitbucketOAuth2Adapter
from allauth.socialaccount.providers.oauth2.views import OAuth2CallbackView, OAuth2LoginView
from django.conf import settings

DEFAULT_OAUTH_URL = "https://bitbucket.org"
DEFAULT_API_URL = "https://api.bitbucket.org/2.0"


def oauth_url() -> str:
    return getattr(settings, "BITBUCKET_OAUTH_URL", DEFAULT_OAUTH_URL).rstrip("/")


def api_url() -> str:
    return getattr(settings, "BITBUCKET_API_URL", DEFAULT_API_URL).rstrip("/")


class LanternBitbucketOAuth2Adapter(BitbucketOAuth2Adapter):
    """allauth's adapter with the URLs read from settings at request time."""

    @property
    def authorize_url(self) -> str:
        return f"{oauth_url()}/site/oauth2/authorize"

    @property
    def access_token_url(self) -> str:
        return f"{oauth_url()}/site/oauth2/access_token"

    @property
    def profile_url(self) -> str:
        return f"{api_url()}/user"

    @property
    def emails_url(self) -> str:
        return f"{api_url()}/user/emails"


oauth2_login = OAuth2LoginView.adapter_view(LanternBitbucketOAuth2Adapter)
oauth2_callback = OAuth2CallbackView.adapter_view(LanternBitbucketOAuth2Adapter)
