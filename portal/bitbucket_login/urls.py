from allauth.socialaccount.providers.oauth2.urls import default_urlpatterns

from portal.bitbucket_login.provider import LanternBitbucketProvider

urlpatterns = default_urlpatterns(LanternBitbucketProvider)
