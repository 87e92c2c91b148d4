"""Sign in with Bitbucket Cloud: allauth's Bitbucket OAuth2 provider, keyed by the user's uuid.

Bitbucket users can rename themselves (``nickname``) and ``account_id`` is an Atlassian account
id; the ``uuid`` is what Bitbucket itself keys users by, so it is the social account's uid here.
The OAuth and API base URLs are settings so tests can point them at the sandbox.
"""
