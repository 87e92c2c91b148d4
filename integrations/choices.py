from django.db import models


class AuthKind(models.TextChoices):
    WORKSPACE_ACCESS_TOKEN = "workspace_access_token", "Workspace access token"
    PROJECT_ACCESS_TOKEN = "project_access_token", "Project access token"
    REPOSITORY_ACCESS_TOKEN = "repository_access_token", "Repository access token"
    API_TOKEN = "api_token", "API token (email + token)"
    APP_PASSWORD = "app_password", "App password (legacy)"
    OAUTH_CONSUMER = "oauth_consumer", "OAuth consumer"
    PERSONAL_ACCESS_TOKEN = "personal_access_token", "Personal access token"
    OAUTH_APPLICATION_LINK = "oauth_application_link", "OAuth 2.0 application link"
    NONE = "none", "None (tests)"


class Health(models.TextChoices):
    UNKNOWN = "unknown", "Unknown"
    UP = "up", "Up"
    DOWN = "down", "Down"


class Registration(models.TextChoices):
    REGISTER_AND_MERGE = "register_and_merge", "Register & Merge"
    REGISTER = "register", "Register"
    MERGE = "merge", "Merge"


class IntegrationState(models.TextChoices):
    ENABLED = "enabled", "Enabled"
    SUSPENDED = "suspended", "Suspended"


class SecondaryKind(models.TextChoices):
    PULL_REQUESTS = "pull_requests", "Pull requests"
    COMMITS = "commits", "Commits"


class Operator(models.TextChoices):
    EQUALS = "equals", "equals"
    CONTAINS = "contains", "contains"


class RecommendedAction(models.TextChoices):
    REGISTER = "register", "Register"
    MERGE = "merge", "Merge"
    # Registering would take a name the catalog already holds, and the correlation rules do not
    # match the holder: a person decides (merge into it, or change the mappings).
    CONFLICT = "conflict", "Name taken"


class ProcessingStage(models.TextChoices):
    """Where handling one discovered record failed (``DiscoveredEntity.processing_errors``)."""

    IMPORT = "import", "Import"
    REFRESH = "refresh", "Refresh"
    CATALOG_FILE = "catalog_file", "catalog-info.yaml"
    PULL_REQUESTS = "pull_requests", "Pull requests"
    COMMITS = "commits", "Commits"


class DiscoveredState(models.TextChoices):
    DISCOVERED = "discovered", "Discovered"
    IMPORTED = "imported", "Imported"
    GONE = "gone", "Gone"


class ImportAction(models.TextChoices):
    REGISTER = "REGISTER", "Registered"
    MERGE = "MERGE", "Merged"


class LinkState(models.TextChoices):
    LINKED = "linked", "Linked"
    UNLINKED = "unlinked", "Unlinked"


class SyncTrigger(models.TextChoices):
    SCHEDULE = "schedule", "Schedule"
    MANUAL = "manual", "Manual"
    WEBHOOK = "webhook", "Webhook"


class SyncMode(models.TextChoices):
    FULL = "full", "Full listing"
    INCREMENTAL = "incremental", "Changed repositories"
    REPOSITORY = "repository", "One repository"


class WebhookRegistration(models.TextChoices):
    REGISTERED = "registered", "Registered on the provider"
    MANUAL = "manual", "Set up by hand"
    FAILED = "failed", "Registration failed"


class WebhookOutcome(models.TextChoices):
    QUEUED = "queued", "Queued"
    PROCESSED = "processed", "Processed"
    FAILED = "failed", "Failed"
    IGNORED = "ignored", "Ignored"
    SKIPPED = "skipped", "Skipped"
    REJECTED = "rejected", "Rejected"
    # The integration's claim was held: the run holding it (or the one right after it) refreshes
    # the repository before it ends.
    COALESCED = "coalesced", "Waiting for the running sync"


class SyncState(models.TextChoices):
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    # The listing succeeded but some repositories could not be handled (see the run's errors).
    PARTIAL = "partial", "Partial"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped"


# Update frequency choices, in minutes: 15 minutes to 24 hours.
UPDATE_FREQUENCIES = {
    "15m": 15,
    "30m": 30,
    "1h": 60,
    "3h": 180,
    "6h": 360,
    "12h": 720,
    "24h": 1440,
}
UPDATE_FREQUENCY_CHOICES = [(minutes, label) for label, minutes in UPDATE_FREQUENCIES.items()]
DEFAULT_UPDATE_FREQUENCY = 180
