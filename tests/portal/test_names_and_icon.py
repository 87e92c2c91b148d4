"""The admin names every model in plain English (no "entitys", acronyms in capitals), and every
page has an icon."""

import re

from django.contrib import admin


def test_every_admin_model_has_a_proper_plural():
    plurals = {
        model._meta.model_name: str(model._meta.verbose_name_plural)
        for model in admin.site._registry
    }
    wrong = [name for name in plurals.values() if re.search(r"[^aeiou]ys$", name)]
    assert wrong == []
    assert plurals["importedentity"] == "imported entities"
    assert plurals["apitoken"] == "API tokens"


def test_the_favicon_is_served_from_the_static_files(client, db):
    response = client.get("/favicon.ico")
    assert response.status_code == 301
    assert response["Location"] == "/static/portal/favicon.svg"
    page = client.get("/accounts/login/").content.decode()
    assert '<link rel="icon" href="/static/portal/favicon.svg" type="image/svg+xml">' in page
