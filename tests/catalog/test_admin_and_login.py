import pytest
from django.contrib.auth import get_user_model

from catalog.models import Entity, Relation, Scope


@pytest.fixture
def admin_client_with_catalog(client, db, demo_catalog):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw-root-123")
    client.force_login(user)
    return client


@pytest.mark.parametrize("model", [Entity, Relation, Scope])
def test_admin_changelists_render_with_search_and_filters(
    admin_client_with_catalog, django_assert_max_num_queries, model
):
    url = f"/admin/catalog/{model._meta.model_name}/"
    with django_assert_max_num_queries(12):
        response = admin_client_with_catalog.get(url, {"q": "checkout"})
    assert response.status_code == 200


def test_admin_entity_change_page_shows_its_relations(admin_client_with_catalog):
    entity = Entity.objects.get(name="checkout-service")
    response = admin_client_with_catalog.get(f"/admin/catalog/entity/{entity.pk}/change/")
    assert response.status_code == 200
    assert "group:default/team-payments" in response.content.decode()


def test_login_page_renders_and_signs_a_user_in(client, db):
    get_user_model().objects.create_user("ada", password="correct-horse-battery")
    assert client.get("/accounts/login/").status_code == 200
    response = client.post(
        "/accounts/login/", {"login": "ada", "password": "correct-horse-battery"}
    )
    assert response.status_code == 302
    assert client.get("/api/catalog/entities").status_code == 200


def test_signup_is_closed_by_default(client, db):
    response = client.get("/accounts/signup/")
    assert "closed" in response.content.decode().lower() or response.status_code != 200
