"""The scorecards pages: the entity's Scorecards tab (levels, values, how to fix, why it is
empty), the Overview's Delivery metrics card and cycle-time trend, the Scorecards pages (level
distribution, failing entities by owner and level), what a user outside a scope does not see,
and the statements each page takes."""

import re
from datetime import date, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from catalog import views as catalog_views
from scorecards import selectors, services
from scorecards.charts import TrendPoint, level_bar, weekly_trend
from tests.scorecards.conftest import NOW, add_pr
from tests.scorecards.scored import FAST_FIX, OPEN_FIX, OWNED_FIX, member_of, scored_world

pytestmark = pytest.mark.django_db


@pytest.fixture
def scored(small_world, make_entities):
    return scored_world(small_world, make_entities)


@pytest.fixture
def member(scored):
    """A user of the scope ``team``: sees ledger and the unscoped entities, never secret."""
    user = get_user_model().objects.create_user("member", password="pw-unused-123")
    member_of(user, scored["team"])
    client = Client()
    client.force_login(user)
    return client


def _tab(entity) -> str:
    return f"/catalog/{entity.namespace}/{entity.kind.lower()}/{entity.name}/scorecards"


def _overview(entity) -> str:
    return f"/catalog/{entity.namespace}/{entity.kind.lower()}/{entity.name}/"


def _row(html: str, attribute: str, value: str) -> str:
    match = re.search(rf'<tr {attribute}="{re.escape(value)}".*?</tr>', html, re.S)
    assert match, f"no row {attribute}={value}"
    return match.group(0)


def _statements(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured)


# -- the entity's Scorecards tab ----------------------------------------------------------------


def test_the_tab_shows_score_level_next_level_and_each_check_with_value_and_fix(scored, member):
    html = member.get(_tab(scored["entities"]["alpha"])).content.decode()
    assert 'data-score="50.00"' in html
    assert '<span class="badge ok" data-level>Silver</span>' in html
    assert "To reach <strong>Gold</strong> it takes a score of 75: 25 more points." in html
    owned = _row(html, "data-check", "owned")
    assert 'data-status="fail"' in owned
    assert '<td class="mono">unknown</td>' in owned
    assert "Someone answers for it · weight 1 (25 points)" in owned
    assert OWNED_FIX in owned
    few_open = _row(html, "data-check", "few-open")
    assert 'data-status="fail"' in few_open and '<td class="mono">2</td>' in few_open
    assert OPEN_FIX in few_open
    fast = _row(html, "data-check", "fast-reviews")
    assert 'data-status="pass"' in fast and '<td class="mono">2.5</td>' in fast
    assert "weight 2 (50 points)" in fast and FAST_FIX not in fast  # passing: nothing to fix
    # failing checks come first
    assert html.index('data-check="owned"') < html.index('data-check="fast-reviews"')


def test_the_tab_says_when_the_highest_level_is_reached(scored, member):
    services.scorecard_update(
        scorecard=scored["scorecard"], levels=[{"name": "Bronze", "threshold": 25}]
    )
    services.scorecard_results_refresh()
    html = member.get(_tab(scored["entities"]["single"])).content.decode()
    assert 'data-score="75.00"' in html and "The highest level is reached." in html


def test_the_tab_says_why_it_is_empty(scored, member, make_entities):
    (group,) = make_entities(
        {
            "apiVersion": "backstage.io/v1alpha1",
            "kind": "Group",
            "metadata": {"name": "team-a"},
            "spec": {"type": "team", "children": []},
        }
    )
    html = member.get(_tab(group)).content.decode()
    assert "No scorecard applies to this entity: none of the 1 scorecard selects it" in html
    services.scorecard_update(scorecard=scored["scorecard"], filter="")  # on commit: not run
    html = member.get(_tab(group)).content.decode()
    assert "The results are not computed yet for" in html
    assert f'<a href="/scorecards/{scored["scorecard"].pk}/">Delivery</a>, which selects' in html
    services.scorecard_delete(scorecard=scored["scorecard"])
    html = member.get(_tab(group)).content.decode()
    assert "No scorecards are defined yet" in html


def test_an_entity_the_user_cannot_read_has_no_tab(scored, member):
    assert member.get(_tab(scored["entities"]["secret"])).status_code == 404
    assert member.get(_tab(scored["entities"]["ledger"])).status_code == 200
    anonymous = Client().get(_tab(scored["entities"]["alpha"]))
    assert anonymous.status_code == 302 and "/accounts/login/" in anonymous["Location"]


def test_the_tab_adds_two_statements_to_the_entity_page(
    scored, member, monkeypatch, django_assert_num_queries
):
    """The entity page's own statements (the overview without its cards), then the results with
    their scorecards and the checks' advice; without results, the scorecards and one row saying
    which select the entity."""
    alpha, loner = scored["entities"]["alpha"], scored["entities"]["loner"]
    monkeypatch.setattr(catalog_views, "_overview_panels", [])
    base = _statements(member, _overview(alpha))
    monkeypatch.undo()
    with django_assert_num_queries(base + 2):
        member.get(_tab(alpha))
    with django_assert_num_queries(base + 2):
        member.get(_tab(loner))
    services.scorecard_update(scorecard=scored["scorecard"], filter="kind=api")
    services.scorecard_results_refresh()
    with django_assert_num_queries(base + 3):
        assert "No scorecard applies" in member.get(_tab(alpha)).content.decode()


# -- the Overview's Delivery metrics card ---------------------------------------------------------


def test_the_overview_shows_each_metric_with_n_units_and_too_little_data(scored, member):
    html = member.get(_overview(scored["entities"]["alpha"])).content.decode()
    assert "Delivery metrics" in html
    median = _row(html, "data-metric", "pr_cycle_time_median_days")
    assert (
        '<td data-window="30"><span data-value>2.0 days</span> <span class="muted small">n = 3'
        in (median)
    )
    assert '<span data-value>2.5 days</span> <span class="muted small">n = 4</span></td>' in median
    assert "too little data" not in median
    p85 = _row(html, "data-metric", "pr_cycle_time_p85_days")
    assert "<span data-value>2.7 days</span>" in p85
    assert p85.count("too little data") == 2  # n 3 and 4, below the minimum of 5
    assert "this metric needs at least 5" in p85
    ratio = _row(html, "data-metric", "declined_ratio")
    assert "<span data-value>0.25 (25 %)</span>" in ratio and "0.20 (20 %)" in ratio
    per_week = _row(html, "data-metric", "merged_prs_per_week")
    assert "<span data-value>0.7 per week</span>" in per_week
    open_prs = _row(html, "data-metric", "open_prs")
    assert 'colspan="2"' in open_prs and "Now: </span><span data-value>2</span>" in open_prs


def test_an_entity_without_metrics_has_no_metrics_card(scored, member):
    html = member.get(_overview(scored["entities"]["loner"])).content.decode()
    assert "Delivery metrics" not in html and "About" in html


def test_the_metrics_card_adds_two_statements_to_the_overview(
    scored, member, monkeypatch, django_assert_num_queries
):
    """Its metrics, then the weekly cycle-time aggregate; one (the metrics) where there are
    none."""
    alpha, loner = scored["entities"]["alpha"], scored["entities"]["loner"]
    monkeypatch.setattr(catalog_views, "_overview_panels", [])
    base = _statements(member, _overview(alpha))
    assert _statements(member, _overview(loner)) == base
    monkeypatch.undo()
    with django_assert_num_queries(base + 2):
        member.get(_overview(alpha))
    with django_assert_num_queries(base + 1):
        member.get(_overview(loner))


# -- the weekly cycle-time trend ------------------------------------------------------------------


def test_the_weekly_cycle_time_is_the_median_of_each_weeks_merges_with_gaps(scored):
    """NOW is Monday 2026-06-01. Merged: #1 Sat 05-23 (1 day), #4 Fri 05-22 by closedDate
    (2 days), #2 Fri 05-15 (3 days), #3 Mon 04-27 (5 days)."""
    alpha = scored["entities"]["alpha"]
    points = selectors.cycle_time_weekly(entity=alpha, now=NOW)
    assert len(points) == 12
    assert points[0].week == date(2026, 3, 16) and points[-1].week == date(2026, 6, 1)
    found = {p.week: (pytest.approx(p.value), p.n) for p in points if p.value is not None}
    assert found == {
        date(2026, 5, 18): (1.5, 2),
        date(2026, 5, 11): (3.0, 1),
        date(2026, 4, 27): (5.0, 1),
    }
    assert [p.n for p in points].count(0) == 9


def test_the_weekly_python_fallback_agrees_with_the_sql(scored):
    """On SQLite the other tests run the fallback itself."""
    if connection.vendor != "postgresql":
        pytest.skip("compares with the PostgreSQL aggregate")
    alpha = scored["entities"]["alpha"]
    since = NOW - timedelta(weeks=12)
    sql = selectors._weekly_sql(alpha, since)
    python = selectors._weekly_python(alpha, since)
    assert python.keys() == sql.keys() and len(sql) == 3
    for week, (median, n) in sql.items():
        assert python[week] == (pytest.approx(median), n)


def test_the_overview_draws_this_weeks_merges_as_a_point_and_other_weeks_as_gaps(scored, member):
    alpha = scored["entities"]["alpha"]
    now = timezone.now()
    add_pr(alpha.imports.get().discovered, 90, "MERGED", 0, 0)
    pr = alpha.imports.get().discovered.pull_requests.get(external_id="90")
    type(pr).objects.filter(pk=pr.pk).update(
        created_on=now - timedelta(hours=36), updated_on=now - timedelta(hours=12)
    )
    merged_on = (now - timedelta(hours=12)).date()
    week = merged_on - timedelta(days=merged_on.weekday())
    html = member.get(_overview(alpha)).content.decode()
    circles = re.findall(r'<circle class="point"[^>]*>', html)
    assert len(circles) == 1
    assert f'data-week="{week:%Y-%m-%d}" data-median="1.00" data-n="1"' in circles[0]
    assert "no merged pull request" in _row(
        html, "data-week", f"{week - timedelta(weeks=1):%Y-%m-%d}"
    )
    assert "<path" not in html.split("data-cycle-time-trend")[1]  # one point: no line


# -- the chart geometry ---------------------------------------------------------------------------


def test_the_level_bar_gives_each_level_its_share_from_no_level_up():
    bar = level_bar(
        distribution={"": 1, "Bronze": 2, "Gold": 1},
        levels=[
            {"name": "Gold", "threshold": 75},
            {"name": "Bronze", "threshold": 25},
            {"name": "Silver", "threshold": 50},
        ],
    )
    assert [(s.label, s.count, s.x, s.width) for s in bar.segments] == [
        ("No level", 1, 0.0, 25.0),
        ("Bronze", 2, 25.0, 50.0),
        ("Silver", 0, 75.0, 0.0),
        ("Gold", 1, 75.0, 25.0),
    ]
    assert bar.summary == "No level 1, Bronze 2, Silver 0, Gold 1 of 4 entities"


def test_the_trend_breaks_its_line_at_a_week_without_value():
    weeks = [date(2026, 5, 4) + timedelta(weeks=i) for i in range(5)]
    values = [None, 2.0, 4.0, None, 1.0]
    trend = weekly_trend(
        [TrendPoint(w, v, 1 if v else 0) for w, v in zip(weeks, values, strict=True)]
    )
    assert trend.maximum == 5.0
    # x from 40 in steps of (600 - 40 - 24) / 4 = 134; y = 152 - 140 × value / 5
    assert [(p.x, p.y) for p in trend.points] == [
        (40.0, None),
        (174.0, 96.0),
        (308.0, 40.0),
        (442.0, None),
        (576.0, 124.0),
    ]
    assert trend.ticks == [(0.0, 152), (2.5, 82.0), (5.0, 12)]
    assert trend.lines == ["M174.0,96.0 L308.0,40.0"]


# -- the Scorecards pages ----------------------------------------------------------------------


def _bar_rects(html: str) -> dict[str, tuple[str, str]]:
    return {
        level: (width, count)
        for width, level, count in re.findall(
            r'<rect x="[\d.]+" y="0" width="([\d.]+)" height="8" fill="#\w+" '
            r'data-level="([^"]+)" data-count="(\d+)">',
            html,
        )
    }


def test_the_list_draws_each_scorecards_distribution_of_readable_entities(scored, member):
    html = member.get("/scorecards/").content.decode()
    assert "<span data-entity-count>5</span> entities · 3 checks" in html
    assert _bar_rects(html) == {
        "Bronze": ("60.00", "3"),
        "Silver": ("20.00", "1"),
        "Gold": ("20.00", "1"),
    }
    assert 'aria-label="Delivery: No level 0, Bronze 3, Silver 1, Gold 1 of 5 entities"' in html
    admin = get_user_model().objects.create_superuser("root", password="pw-unused-123")
    client = Client()
    client.force_login(admin)
    assert _bar_rects(client.get("/scorecards/").content.decode())["Bronze"] == ("66.67", "4")


def test_the_detail_lists_failing_entities_lowest_first_with_their_failing_checks(scored, member):
    html = member.get(f"/scorecards/{scored['scorecard'].pk}/").content.decode()
    refs = re.findall(r'<tr data-entity="([^"]+)">', html)
    assert refs == [
        "component:default/empty",
        "component:default/ledger",
        "component:default/loner",
        "component:default/alpha",
        "component:default/single",
    ]
    alpha = _row(html, "data-entity", "component:default/alpha")
    assert "<td data-score>50</td>" in alpha and "<td>Silver</td>" in alpha
    assert "owned" in alpha and "few-open" in alpha and "fast-reviews" not in alpha
    assert "component:default/secret" not in html


@pytest.mark.parametrize(
    ("params", "refs", "bar"),
    [
        ({"owner": "team-b"}, ["component:default/ledger"], {"Bronze": ("100.00", "1")}),
        (
            {"owner": "unknown"},
            ["component:default/empty", "component:default/alpha", "component:default/single"],
            {"Bronze": ("33.33", "1"), "Silver": ("33.33", "1"), "Gold": ("33.33", "1")},
        ),
        ({"owner": "unknown", "level": "Bronze"}, ["component:default/empty"], None),
        ({"level": "Gold"}, ["component:default/single"], None),
        ({"level": "-"}, [], None),
    ],
)
def test_the_detail_filters_by_owner_and_level(scored, member, params, refs, bar):
    html = member.get(f"/scorecards/{scored['scorecard'].pk}/", params).content.decode()
    assert re.findall(r'<tr data-entity="([^"]+)">', html) == refs
    if bar is not None:
        assert _bar_rects(html) == bar
    if "owner" in params:
        assert f'<option value="{params["owner"]}" selected>' in html
    if "level" in params:
        assert f'<option value="{params["level"]}" selected>' in html


def _owner_options(html: str) -> list[str]:
    select = html.split('id="id_owner"')[1].split("</select>")[0]
    return re.findall(r'<option value="([^"]*)"', select)


def test_the_owner_filter_offers_only_owners_of_readable_entities(scored, member):
    url = f"/scorecards/{scored['scorecard'].pk}/"
    assert _owner_options(member.get(url).content.decode()) == ["", "team-a", "team-b", "unknown"]
    html = member.get(url, {"owner": "team-c"}).content.decode()  # secret's owner
    assert re.findall(r'<tr data-entity="', html) == []
    assert "<span data-entity-count>0</span>" in html
    admin = get_user_model().objects.create_superuser("root", password="pw-unused-123")
    client = Client()
    client.force_login(admin)
    html = client.get(url, {"owner": "team-c"}).content.decode()
    assert re.findall(r'<tr data-entity="([^"]+)">', html) == ["component:default/secret"]
    assert "team-c" in _owner_options(html)


def test_the_detail_says_when_a_level_does_not_exist(scored, member):
    response = member.get(f"/scorecards/{scored['scorecard'].pk}/", {"level": "Platinum"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "This scorecard has no level &#x27;Platinum&#x27;: showing every level." in html
    assert len(re.findall(r'<tr data-entity="', html)) == 5


def test_the_failing_entities_are_paginated(scored, member, monkeypatch):
    monkeypatch.setattr("scorecards.views.FAILING_PAGE_SIZE", 2)
    url = f"/scorecards/{scored['scorecard'].pk}/"
    second = member.get(url, {"page": 2}).content.decode()
    assert re.findall(r'<tr data-entity="([^"]+)">', second) == [
        "component:default/loner",
        "component:default/alpha",
    ]
    assert "Page 2 of 3 · 5 in all" in second
    assert member.get(url, {"page": "x"}).status_code == 200


def test_an_unknown_scorecard_is_a_404(member):
    assert member.get("/scorecards/999999/").status_code == 404


def test_the_scorecards_pages_take_a_fixed_number_of_statements(
    scored, member, django_assert_num_queries
):
    """Both start with the session and its user and end with the user's scopes for the
    header. List: the scorecards with their check counts, the user's scopes, the distribution.
    Detail: the scorecard, the scopes, the owners, the distribution, the page's count and
    rows."""
    with django_assert_num_queries(6):
        member.get("/scorecards/")
    with django_assert_num_queries(9):
        member.get(f"/scorecards/{scored['scorecard'].pk}/", {"owner": "unknown"})


def test_the_nav_links_to_the_scorecards_page(scored, member):
    html = member.get("/scorecards/").content.decode()
    assert '<a href="/scorecards/" aria-current="page">Scorecards</a>' in html


def test_a_scorecard_scoring_no_readable_entity_says_so_instead_of_an_empty_bar(scored, member):
    services.scorecard_create(name="APIs", filter="kind=api")
    services.scorecard_results_refresh()
    html = member.get("/scorecards/").content.decode()
    apis = html.split('data-scorecard="APIs"')[1].split("</section>")[0]
    assert "No entity you can read is scored by it yet." in apis
    assert "data-level-bar" not in apis and "<span data-entity-count>0</span>" in apis
