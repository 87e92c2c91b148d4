"""The API's docs page in the browser, with nothing but this machine reachable: Swagger UI
comes from Lantern's own static files (drf-spectacular-sidecar), never a CDN (the ``page``
fixture fails a test whose pages ask for anything off the machine)."""

import pytest
from django.contrib.auth import get_user_model

from tests.ui.conftest import sign_in

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def signed_in(page):
    get_user_model().objects.create_user("reader", password="pw-reader-Secret-1")
    sign_in(page, "reader", "pw-reader-Secret-1")
    return page


def test_swagger_ui_renders_the_schema_offline(signed_in, screenshot):
    page = signed_in
    page.get_by_role("link", name="API", exact=True).click()
    page.wait_for_url("**/api/docs/")
    page.locator(".swagger-ui .info .title").get_by_text("Lantern API").wait_for()
    # The operations are listed from the schema, so the bundle ran and read it.
    page.locator(".opblock-summary-path", has_text="/api/catalog/entities/by-query").first.wait_for()
    assert page.evaluate("typeof SwaggerUIBundle") == "function"
    screenshot("api-docs-swagger")

