"""The catalog filtered by a scorecard's level and ordered by its score: the API's ``filter=``,
predicates and ``orderField``, and the entity list's filter and sort."""

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from scorecards import services
from tests.scorecards.conftest import NOW

pytestmark = pytest.mark.django_db

API = "/api/catalog"


@pytest.fixture
def levels(small_world, django_capture_on_commit_callbacks):
    """Basics: an owner (everyone), enough commits (alpha), merged pull requests (alpha,
    single): alpha 100 Gold, single 66.67 Bronze, empty and loner 33.33 below every level.
    Services selects alpha only."""
    entities = small_world["entities"]
    services.metrics_refresh(entity_ids=[e.pk for e in entities.values()], now=NOW)
    checks = [
        services.check_create(name=name, rule=rule)
        for name, rule in (
            ("owner", {"path": "entity.spec.owner", "op": "exists"}),
            ("commits", {"path": "metrics.commits_per_week.status", "op": "==", "value": "ok"}),
            ("merges", {"path": "metrics.merged_prs_per_week.status", "op": "==", "value": "ok"}),
        )
    ]
    with django_capture_on_commit_callbacks(execute=True):
        services.scorecard_create(
            name="Basics",
            levels=[{"name": "Gold", "threshold": 90}, {"name": "Bronze", "threshold": 50}],
            checks=[{"check": check} for check in checks],
        )
        services.scorecard_create(
            name="Services", filter="metadata.name=alpha", checks=[{"check": checks[0]}]
        )
    return entities


@pytest.fixture
def api(bearer_client, make_user):
    return bearer_client(make_user("reader"))


def names(api, **params) -> list[str]:
    response = api.get(f"{API}/entities/by-query", params)
    assert response.status_code == 200, response.content
    return [item["metadata"]["name"] for item in response.json()["items"]]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ("scorecard.Basics.level=Gold", ["alpha"]),
        ("SCORECARD.basics.LEVEL=gold", ["alpha"]),
        ("scorecard.Basics.level=Bronze,scorecard.Basics.level=gold", ["alpha", "single"]),
        ("scorecard.Basics.level=", ["empty", "loner"]),
        ("scorecard.Services.level", ["alpha"]),
        ("scorecard.Basics.level=Gold,kind=component", ["alpha"]),
    ],
)
def test_the_api_filters_by_a_scorecard_level(levels, api, filters, expected):
    assert names(api, filter=filters) == expected


def test_several_filter_parameters_or_levels_together(levels, api):
    response = api.get(
        f"{API}/entities",
        {"filter": ["scorecard.Basics.level=Gold", "scorecard.Basics.level="]},
    )
    assert [item["metadata"]["name"] for item in response.json()] == ["alpha", "empty", "loner"]


def test_a_predicate_names_levels_too(levels, api):
    response = api.post(
        f"{API}/entities/by-query",
        {"query": {"scorecard.basics.level": {"$in": ["GOLD", "bronze"]}}},
        format="json",
    )
    assert [item["metadata"]["name"] for item in response.json()["items"]] == ["alpha", "single"]


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ("scorecard.Nope.level=Gold", "No scorecard named 'nope' (in 'scorecard.nope.level')"),
        (
            "scorecard.Basics.level=Platinum",
            "Scorecard 'Basics' has no level 'Platinum' (its levels: Gold, Bronze; an empty "
            "value selects entities below every level)",
        ),
        (
            "scorecard.Basics.grade=A",
            "Unknown scorecard field 'scorecard.basics.grade': filter by scorecard.<name>.level",
        ),
    ],
)
def test_an_unknown_scorecard_level_or_field_is_a_400_naming_it(levels, api, filters, message):
    response = api.get(f"{API}/entities/by-query", {"filter": filters})
    assert response.status_code == 400
    assert response.json()["error"] == {"name": "InputError", "message": message}


def test_the_api_orders_by_a_score_unscored_entities_last(levels, api):
    assert names(api, orderField="scorecard.Basics.score,desc") == [
        "alpha",
        "single",
        "empty",
        "loner",
    ]
    assert names(api, orderField="scorecard.basics.score,asc") == [
        "empty",
        "loner",
        "single",
        "alpha",
    ]
    assert names(api, orderField="scorecard.Services.score,asc") == [
        "alpha",
        "empty",
        "loner",
        "single",
    ]
    response = api.get(f"{API}/entities", {"order": "desc:scorecard.Nope.score"})
    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        "No scorecard named 'nope' (in 'scorecard.nope.score')"
    )


def test_pages_ordered_by_a_score_walk_every_entity_once(levels, api):
    seen = []
    params = {"orderField": "scorecard.Basics.score,desc", "limit": 1}
    while True:
        body = api.get(f"{API}/entities/by-query", params).json()
        seen += [item["metadata"]["name"] for item in body["items"]]
        if "nextCursor" not in body["pageInfo"]:
            break
        params = {"cursor": body["pageInfo"]["nextCursor"], "limit": 1}
    assert seen == ["alpha", "single", "empty", "loner"]


def test_a_level_filter_or_score_order_costs_one_statement_whatever_the_page(levels, api):
    def statements(**params) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert api.get(f"{API}/entities/by-query", params).status_code == 200
        return len(captured)

    api.get(f"{API}/entities")  # the token's first use is written once
    plain = statements(filter="kind=component", fields="metadata.name")
    assert statements(filter="scorecard.Basics.level=", fields="metadata.name") == plain + 1
    assert statements(filter="scorecard.Basics.level=", fields="metadata.name", limit=1) == (
        plain + 1
    )
    assert statements(
        filter="kind=component", orderField="scorecard.Basics.score,desc", fields="metadata.name"
    ) == (plain + 1)


@pytest.fixture
def ui(client):
    client.force_login(get_user_model().objects.create_user("ada", password="pw-unused-123"))
    return client


def listed(response) -> list[str]:
    return [entity.name for entity in response.context["entities"]]


def test_the_list_offers_the_scorecard_levels_and_filters_by_one(levels, ui):
    page = ui.get("/catalog/")
    body = page.content.decode()
    assert "Scorecard level" in body
    assert '<option value="scorecard.Basics.level=Gold">Basics: Gold</option>' in body
    assert '<option value="scorecard.Basics.level=">Basics: no level</option>' in body
    assert listed(ui.get("/catalog/", {"level": "scorecard.Basics.level=Bronze"})) == ["single"]
    assert listed(ui.get("/catalog/", {"level": "scorecard.Basics.level="})) == ["empty", "loner"]


def test_the_list_sorts_by_a_score_and_shows_it(levels, ui):
    response = ui.get("/catalog/", {"sort": "-scorecard.Basics.score"})
    assert listed(response) == ["alpha", "single", "empty", "loner"]
    body = response.content.decode()
    assert '<th scope="col" aria-sort="descending">Score</th>' in body
    assert "<td>66.67</td>" in body and "<td>100</td>" in body
    services_sorted = ui.get("/catalog/", {"sort": "scorecard.Services.score"})
    assert "not scored" in services_sorted.content.decode()


def test_an_unknown_level_choice_is_an_error_message(levels, ui):
    response = ui.get("/catalog/", {"level": "scorecard.Gone.level=Gold"})
    assert response.status_code == 200
    assert "No such filter: &#x27;scorecard.Gone.level=Gold&#x27;" in response.content.decode()


def test_without_scorecards_the_list_offers_no_scorecard_filter_or_sort(small_world, ui):
    body = ui.get("/catalog/").content.decode()
    assert "Scorecard level" not in body and "score (high–low)" not in body


def test_the_list_filtered_and_sorted_by_scorecards_keeps_a_constant_statement_count(levels, ui):
    def statements(params) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert ui.get("/catalog/", params).status_code == 200
        return len(captured)

    # the list's 13 (tests/catalog/test_views.py), plus resolving the scorecard of the filter
    # and of the sort
    assert statements({}) == 13
    assert statements({"level": "scorecard.Basics.level=", "sort": "-scorecard.Basics.score"}) == 15
