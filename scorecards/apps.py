from django.apps import AppConfig


class ScorecardsConfig(AppConfig):
    name = "scorecards"
    verbose_name = "Scorecards"

    def ready(self) -> None:
        from catalog.query import query_field_register
        from catalog.selectors import document_section_register
        from catalog.services import entity_changes_subscribe
        from catalog.views import (
            EntityOverviewPanel,
            EntityTab,
            entity_overview_panel_register,
            entity_tab_register,
        )
        from integrations.config import config_section_register
        from integrations.events import secondary_changes_subscribe
        from scorecards import documents
        from scorecards.config import CHECKS_SECTION, SCORECARDS_SECTION
        from scorecards.query import SCORECARD_QUERY_FIELD
        from scorecards.services import (
            scorecards_follow_catalog,
            scorecards_follow_ingestion,
        )
        from scorecards.views import delivery_metrics_panel

        # Metrics and results follow what they are computed from: entities written by anything,
        # and pull requests or commits an integration ingested (a sync or a webhook refresh).
        entity_changes_subscribe(scorecards_follow_catalog)
        secondary_changes_subscribe(scorecards_follow_ingestion)
        # apply_config's checks: and scorecards: keys, checks first (scorecards name them).
        config_section_register(CHECKS_SECTION)
        config_section_register(SCORECARDS_SECTION)
        # Entity documents' Lantern-only scorecards: and metrics: sections.
        document_section_register(documents.SCORECARDS_SECTION)
        document_section_register(documents.METRICS_SECTION)
        # The catalog's scorecard.<name>.level filter and scorecard.<name>.score order.
        query_field_register(SCORECARD_QUERY_FIELD)
        # The entity page's Scorecards tab and the Overview's Delivery metrics card.
        entity_tab_register(EntityTab("scorecards", "Scorecards", "scorecards-entity:scorecards"))
        entity_overview_panel_register(
            EntityOverviewPanel(
                "delivery-metrics", "scorecards/entity_metrics_panel.html", delivery_metrics_panel
            )
        )
