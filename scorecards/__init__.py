"""Scorecards: delivery metrics from ingested pull requests and commits, checks over entity
documents, and scorecards that weigh checks into levels."""
