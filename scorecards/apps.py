from django.apps import AppConfig


class ScorecardsConfig(AppConfig):
    name = "scorecards"
    verbose_name = "Scorecards"

    def ready(self) -> None:
        # Metrics and results follow what they are computed from: entities written by anything,
        # and pull requests or commits an integration ingested (a sync or a webhook refresh).
        from catalog.services import entity_changes_subscribe
        from integrations.events import secondary_changes_subscribe
        from scorecards.services import (
            scorecards_follow_catalog,
            scorecards_follow_ingestion,
        )

        entity_changes_subscribe(scorecards_follow_catalog)
        secondary_changes_subscribe(scorecards_follow_ingestion)

        from catalog.views import (
            EntityOverviewPanel,
            EntityTab,
            entity_overview_panel_register,
            entity_tab_register,
        )
        from scorecards.views import delivery_metrics_panel

        entity_tab_register(EntityTab("scorecards", "Scorecards", "scorecards-entity:scorecards"))
        entity_overview_panel_register(
            EntityOverviewPanel(
                "delivery-metrics", "scorecards/entity_metrics_panel.html", delivery_metrics_panel
            )
        )
