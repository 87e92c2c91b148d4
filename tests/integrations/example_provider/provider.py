"""A fictional third provider, test-only: everything about it is declared here (its key, its
auth kind, its target field, its client calls, records and webhook parsing), and nothing
outside this folder names it. ``conftest.py`` registers it; the contract runs against it."""

import json
import re
from collections.abc import Iterator

from integrations.providers.base import (
    AuthKindSpec,
    ProbeResult,
    Provider,
    ProviderAuthError,
    ProviderUnavailable,
    TargetField,
    WebhookEvent,
    WebhookPayloadError,
)
from tests.integrations.example_provider import records
from tests.integrations.example_provider.source import ExampleSource, Refused, Transient

# Sources by name (``Connector.config["source"]``), as a test sets them up.
SOURCES: dict[str, ExampleSource] = {}
RETRIES = 3


def _api_key(provider: "ExampleProvider") -> list:
    return [provider.connector.secrets.get("api_key", "")]


API_KEY = AuthKindSpec(
    key="example_api_key",
    label="Example API key",
    public_fields=("account",),
    secret_fields=("api_key",),
    required=(("account",), ("api_key",)),
    field_labels={"account": "Example account"},
    help_text="An API key of the example service, with its account name.",
    build_credential=_api_key,
)
COLLECTION = TargetField(
    name="collection",
    label="Collection",
    help_text="The example service's collection of repositories.",
    max_length=100,
)


class ExampleProvider(Provider):
    key = "example"
    name = "Example"
    properties_key = "Example"
    auth_kinds = (API_KEY,)
    target_fields = (COLLECTION,)
    catalog_file = "catalog-info.yaml"
    default_field_mappings = {"metadata.description": "name"}

    def __init__(self, *, connector, integration=None, **callbacks):
        super().__init__(connector=connector, integration=integration, **callbacks)
        (self.api_key,) = self.credentials()

    @classmethod
    def validate_target(cls, target: dict) -> dict[str, str]:
        errors = super().validate_target(target)
        if not re.fullmatch(r"[a-z0-9-]+", str(target.get("collection") or "")):
            errors["collection"] = "the collection name is required (a-z, 0-9, -)"
        return errors

    @property
    def source(self) -> ExampleSource:
        return SOURCES[self.connector.config["source"]]

    @property
    def collection(self) -> str:
        return ((self.integration.target if self.integration else {}) or {})["collection"]

    def _call(self, method, *args):
        """One request to the source, retried on a transient fault; a refused key is an
        auth error."""
        for attempt in range(RETRIES + 1):
            self.stats.requests += 1
            try:
                return method(self.api_key, *args)
            except Refused as exc:
                raise ProviderAuthError(str(exc), status=401) from None
            except Transient as exc:
                if attempt == RETRIES:
                    raise ProviderUnavailable(f"The example service kept failing ({exc})") from None
        raise AssertionError("unreachable")

    def probe(self) -> ProbeResult:
        try:
            self._call(self.source.page, self.collection, 0)
        except ProviderAuthError as exc:
            return ProbeResult(False, exc.message)
        return ProbeResult(True, "The example service answers")

    def iter_repositories(self, since=None, known=None):
        start: int | None = 0
        while start is not None:
            page, start = self._call(self.source.page, self.collection, start)
            self.stats.pages += 1
            yield [records.repository_record(raw) for raw in page]

    def get_repository(self, external_id, name=None):
        repo = self._call(self.source.repo, self.collection, external_id)
        return records.repository_record(repo.raw()) if repo else None

    def _repo(self, record):
        data = record.data if hasattr(record, "data") else record
        return self._call(self.source.repo, self.collection, data["id"])

    @staticmethod
    def _bounded(items, stamp, since, until, limit) -> Iterator:
        ordered = sorted(items, key=stamp, reverse=True)
        within = [
            item
            for item in ordered
            if (since is None or stamp(item) > since) and (until is None or stamp(item) < until)
        ]
        return iter(within[:limit])

    def iter_pull_requests(self, repo, *, since=None, until=None, limit):
        prs = [records.pull_request_record(raw) for raw in self._repo(repo).pull_requests]
        return self._bounded(prs, lambda pr: pr.updated_on, since, until, limit)

    def iter_commits(self, repo, *, since=None, until=None, limit):
        commits = [records.commit_record(raw) for raw in self._repo(repo).commits]
        return self._bounded(commits, lambda commit: commit.date, since, until, limit)

    def read_file(self, repo, path):
        return self._repo(repo).files.get(path)

    @staticmethod
    def parse_webhook(headers, body):
        event = headers.get("X-Example-Event", "")
        try:
            payload = json.loads(body)
        except ValueError:
            raise WebhookPayloadError("The body is not JSON") from None
        delivery_id = headers.get("X-Example-Delivery", "")
        if event != "push":
            return WebhookEvent(event=event, delivery_id=delivery_id, ignored=True)
        repository = payload.get("repository") or {}
        return WebhookEvent(
            event=event,
            delivery_id=delivery_id,
            repository_external_id=repository.get("id"),
            repository_name=repository.get("name"),
            payload=payload,
        )
