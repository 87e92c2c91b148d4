import io

import pytest
from django.core.management import CommandError, call_command

from portal.models import ApiToken, token_digest


def test_issue_token_prints_a_token_and_stores_only_its_digest(make_user, client):
    user = make_user("ada")
    out = io.StringIO()
    call_command("issue_token", "ada", stdout=out, stderr=io.StringIO())
    raw = out.getvalue().strip().splitlines()[-1]
    token = ApiToken.objects.get(user=user)
    assert token.digest == token_digest(raw)
    assert raw not in (token.digest, token.prefix, token.name)
    response = client.get("/api/catalog/entities", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 200
    token.refresh_from_db()
    assert token.last_used_at is not None


def test_issue_token_for_an_unknown_user_fails(db):
    with pytest.raises(CommandError, match="No user named 'ghost'"):
        call_command("issue_token", "ghost")


def test_tokens_of_inactive_users_are_refused(make_user, client):
    user = make_user("gone")
    _, raw = ApiToken.objects.issue(user=user)
    user.is_active = False
    user.save()
    response = client.get("/api/catalog/entities", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 401
