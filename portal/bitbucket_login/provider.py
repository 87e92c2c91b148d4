from allauth.socialaccount.providers.bitbucket_oauth2.provider import (
    BitbucketOAuth2Account,
    BitbucketOAuth2Provider,
)

from portal.bitbucket_login.views import LanternBitbucketOAuth2Adapter


class LanternBitbucketAccount(BitbucketOAuth2Account):
    def get_profile_url(self):
        return self.account.extra_data.get("links", {}).get("html", {}).get("href")

    def to_str(self):
        data = self.account.extra_data
        return data.get("nickname") or data.get("display_name") or super().to_str()


class LanternBitbucketProvider(BitbucketOAuth2Provider):
    """Same id as allauth's (``bitbucket_oauth2``) so its URL names and template tags apply;
    do not install ``allauth.socialaccount.providers.bitbucket_oauth2`` alongside."""

    account_class = LanternBitbucketAccount
    oauth2_adapter_class = LanternBitbucketOAuth2Adapter

    def extract_uid(self, data):
        return str(data["uuid"])

    def extract_common_fields(self, data):
        return {
            "email": data.get("email"),
            "username": data.get("nickname") or data.get("username"),
            "name": data.get("display_name"),
        }


provider_classes = [LanternBitbucketProvider]
