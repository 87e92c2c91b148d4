"""Scorecards in a real browser: the entity's Scorecards tab with its levels and fixes, the
Overview's Delivery metrics with the weekly cycle-time chart, the Scorecards page's level
bars (drawn as wide as each level's share) and a scorecard's failing entities filtered by
owner. The reader belongs to one scope: the entity of another never shows or counts."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from integrations.models import PullRequest
from tests.integrations.conftest import (  # noqa: F401
    connector,
    fake_provider,
    make_entities,
    make_integration,
    world,
)
from tests.scorecards.conftest import small_world  # noqa: F401
from tests.scorecards.scored import OPEN_FIX, OWNED_FIX, member_of, scored_world
from tests.ui.conftest import sign_in

pytestmark = pytest.mark.django_db(transaction=True)


def _expect():
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect


@pytest.fixture
def scored(small_world, make_entities):  # noqa: F811
    return scored_world(small_world, make_entities)


def _merged(discovered, number: int, merged_ago: timedelta, cycle: timedelta) -> None:
    now = timezone.now()
    PullRequest.objects.create(
        discovered=discovered,
        external_id=str(number),
        title=f"PR {number}",
        state="MERGED",
        created_on=now - merged_ago - cycle,
        updated_on=now - merged_ago,
    )


def _reader(scored) -> tuple[str, str]:
    password = "pw-reader-Secret-1"
    user = get_user_model().objects.create_user("reader", password=password)
    member_of(user, scored["team"])
    return "reader", password


def _widths(page, selector: str) -> dict[str, float]:
    """Each drawn segment's on-screen width as a share of its bar's."""
    return page.eval_on_selector_all(
        selector,
        """rects => Object.fromEntries(rects.map(r => [r.dataset.level,
            r.getBoundingClientRect().width / r.ownerSVGElement.getBoundingClientRect().width]))""",
    )


def test_the_entity_tab_the_metrics_chart_and_the_scorecards_pages(page, screenshot, scored):
    expect = _expect()
    alpha = scored["entities"]["alpha"]
    discovered = alpha.imports.get().discovered
    _merged(discovered, 91, timedelta(days=1), timedelta(days=2))  # this week or last: 2 days
    _merged(discovered, 92, timedelta(days=22), timedelta(days=4))  # three weeks before: 4 days
    sign_in(page, *_reader(scored))

    # The Overview: the metrics with n and too little data, and two points on the trend.
    page.goto(f"/catalog/default/component/{alpha.name}/")
    card = page.locator("[data-delivery-metrics]")
    expect(card.get_by_role("heading", name="Delivery metrics")).to_be_visible()
    median = card.locator('tr[data-metric="pr_cycle_time_median_days"]')
    expect(median.locator('td[data-window="90"]')).to_contain_text("2.5 days")
    expect(median.locator('td[data-window="90"]')).to_contain_text("n = 4")
    p85 = card.locator('tr[data-metric="pr_cycle_time_p85_days"]')
    expect(p85.locator(".badge.warn")).to_have_count(2)
    points = card.locator("svg circle.point")
    expect(points).to_have_count(2)
    boxes = [points.nth(i).bounding_box() for i in range(2)]
    medians = [float(points.nth(i).get_attribute("data-median")) for i in range(2)]
    assert medians == [4.0, 2.0]
    # later weeks to the right; the 4-day week drawn higher than the 2-day one, and on a 0..5
    # axis the 2-day point sits at 0.6 of the plot's height from its top
    assert boxes[0]["x"] < boxes[1]["x"] and boxes[0]["y"] < boxes[1]["y"]
    svg = card.locator("svg").bounding_box()
    scale = svg["height"] / 180
    centre = boxes[1]["y"] + boxes[1]["height"] / 2
    assert abs(centre - (svg["y"] + (12 + 140 * (1 - 2 / 5)) * scale)) < 2
    screenshot("scorecards-01-overview")

    # The Scorecards tab: score, level, what the next level takes, each check with its fix.
    page.get_by_role("navigation", name="Entity sections").get_by_role(
        "link", name="Scorecards"
    ).click()
    result = page.locator('[data-scorecard="Delivery"]')
    expect(result.get_by_role("heading", name="Delivery")).to_be_visible()
    expect(result.locator("[data-level]")).to_have_text("Silver")
    expect(result.locator("[data-next-level]")).to_contain_text(
        "To reach Gold it takes a score of 75: 25 more points."
    )
    owned = result.locator('tr[data-check="owned"]')
    expect(owned).to_contain_text("fail")
    expect(owned).to_contain_text("unknown")
    expect(owned).to_contain_text(OWNED_FIX)
    expect(result.locator('tr[data-check="few-open"]')).to_contain_text(OPEN_FIX)
    expect(result.locator('tr[data-check="fast-reviews"]')).to_contain_text("pass")
    screenshot("scorecards-02-entity-tab")

    # The Scorecards page: 5 readable entities (secret, of another scope, is not counted),
    # drawn 3 : 1 : 1.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Scorecards").click()
    bar = page.locator('[data-scorecard="Delivery"] [data-level-bar]')
    expect(bar).to_have_attribute("data-total", "5")
    expect(bar.get_by_role("img")).to_have_attribute(
        "aria-label", "Delivery: No level 0, Bronze 3, Silver 1, Gold 1 of 5 entities"
    )
    widths = _widths(page, "[data-level-bar] rect[data-level]")
    assert widths.keys() == {"Bronze", "Silver", "Gold"}
    assert widths["Bronze"] == pytest.approx(0.6, abs=0.01)
    assert widths["Silver"] == pytest.approx(0.2, abs=0.01)
    assert widths["Gold"] == pytest.approx(0.2, abs=0.01)
    screenshot("scorecards-03-list")

    # One scorecard: failing entities lowest first; by owner, the bar follows.
    page.get_by_role("link", name="Delivery").click()
    rows = page.locator("tr[data-entity]")
    expect(rows).to_have_count(5)
    expect(rows.first).to_have_attribute("data-entity", "component:default/empty")
    expect(page.locator('tr[data-entity="component:default/secret"]')).to_have_count(0)
    page.get_by_label("Owner").select_option("unknown")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(3)
    expect(page.locator("[data-level-bar]")).to_have_attribute("data-total", "3")
    widths = _widths(page, "[data-level-bar] rect[data-level]")
    assert all(share == pytest.approx(1 / 3, abs=0.01) for share in widths.values()), widths
    screenshot("scorecards-04-detail")
