"""Fixed value sets of the integrations app. Auth kinds are not here: each provider declares its
own (``Provider.auth_kinds``), read through ``providers.registry.auth_kinds()``."""

from django.db import models


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


class WritebackMode(models.TextChoices):
    """How write-back puts catalog-info.yaml into a repository: proposed in a pull request (the
    default), or committed straight to the default branch (only when an admin picks it)."""

    PULL_REQUEST = "pull_request", "Pull request"
    COMMIT = "commit", "Direct commit"


class WritebackState(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class PullRequestState(models.TextChoices):
    """The state of a pull request write-back opened, as the provider names it."""

    OPEN = "OPEN", "Open"
    MERGED = "MERGED", "Merged"
    DECLINED = "DECLINED", "Declined"


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
