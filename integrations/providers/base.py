"""The provider interface: what the sync engine needs from any source of repositories.

Records are plain dataclasses holding the raw JSON too; nothing here touches the database.
"""

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from integrations.models import Connector, Integration
    from integrations.providers.writes import WriteRequest, WriteResult


class ProviderError(Exception):
    """Any failure talking to a provider; ``message`` is safe to show a user (no secrets)."""

    # A failure of the whole run whatever it was reading (a spent request budget).
    run_scoped = False

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.status = status


def repository_scoped(exc: ProviderError) -> bool:
    """Whether a failure concerns the one repository being read (recorded on it, and the run
    goes on) rather than the whole run: refused credentials (401 or no status) and a spent
    request budget stop the run; a 403, 404 or 410 on one repository's data, or retries
    exhausted on it, do not."""
    if exc.run_scoped or exc.status == 401:
        return False
    return not (isinstance(exc, ProviderAuthError) and exc.status is None)


class ProviderAuthError(ProviderError):
    """Credentials missing, wrong, expired or lacking a scope."""


class ProviderNotFound(ProviderError):
    """The workspace, project or repository does not exist (or is not visible)."""


class ProviderUnavailable(ProviderError):
    """The provider could not be reached or kept failing after retries."""


@dataclass(frozen=True)
class AuthKindSpec:
    """One way to authenticate to a provider, declared by the provider (``Provider.auth_kinds``)
    so that forms, the API, ``apply_config``, the admin and the services know it without a list
    of their own.

    ``public_fields`` are stored in the clear in ``Connector.config``; ``secret_fields`` are
    stored encrypted (including tokens the provider obtains at run time); ``required``: what
    must be given, each item a set of alternatives. The wizard's identity field writes the first
    public field and its secret field the first secret field. ``build_credential(provider)``
    returns the credentials the provider's client signs requests with.
    """

    key: str
    label: str
    public_fields: tuple[str, ...] = ()
    secret_fields: tuple[str, ...] = ()
    required: tuple[tuple[str, ...], ...] = ()
    field_labels: Mapping[str, str] = field(default_factory=dict, compare=False)
    help_text: str = ""
    build_credential: "Callable[[Provider], list] | None" = field(default=None, compare=False)

    @property
    def identity_field(self) -> str | None:
        return self.public_fields[0] if self.public_fields else None

    @property
    def identity_label(self) -> str | None:
        key = self.identity_field
        return self.field_labels.get(key, key) if key else None

    @property
    def form_secret_field(self) -> str | None:
        return self.secret_fields[0] if self.secret_fields else None


@dataclass(frozen=True)
class TargetField:
    """One key of ``Integration.target`` a provider reads, as forms ask for it: text, or a
    comma-separated list (``many``). Values are checked by ``Provider.validate_target``, whose
    errors name the field."""

    name: str
    label: str
    help_text: str = ""
    many: bool = False
    max_length: int | None = None


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    message: str
    details: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RepoRecord:
    """A repository. ``data`` is what correlation rules and field mappings read (JMESPath)."""

    external_id: str
    name: str
    data: dict
    updated_at: datetime | None = None
    raw: dict = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class PullRequestRecord:
    external_id: str
    title: str
    state: str
    updated_on: datetime
    created_on: datetime | None = None
    author: str = ""
    source_branch: str = ""
    destination_branch: str = ""
    url: str = ""
    raw: dict = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class CommitRecord:
    hash: str
    date: datetime
    message: str = ""
    author: str = ""
    url: str = ""
    raw: dict = field(default_factory=dict, repr=False)


class WebhookPayloadError(ValueError):
    """A delivery (already verified) whose body or headers cannot be understood; the message is
    safe to send back to the provider."""


@dataclass(frozen=True)
class RefChange:
    """One ref a push moved. ``old`` is ``None`` for a new ref, ``new`` for a deleted one (Data
    Center's all-zero hashes become ``None`` here, so they never reach an API call)."""

    ref: str
    old: str | None
    new: str | None


@dataclass(frozen=True)
class WebhookEvent:
    """A verified delivery, reduced to what the engine acts on: a hint of which repository
    changed (the engine re-reads it from the API; the payload may be stale or reordered)."""

    event: str
    delivery_id: str
    repository_external_id: str | None = None
    repository_name: str | None = None
    ignored: bool = False
    payload: dict = field(default_factory=dict, repr=False)
    pull_request_id: str | None = None
    refs: tuple[RefChange, ...] = ()


@dataclass
class RequestStats:
    """Requests and pages a provider instance made, for the SyncRun; ``unchanged``: the
    repositories a listing found unchanged since the data ``known`` gave it (so it skipped
    reading them further)."""

    requests: int = 0
    pages: int = 0
    unchanged: int = 0


class Provider:
    """Base class of providers. Subclasses describe themselves at class level.

    An instance is bound to one integration (and its connector); the engine builds it through
    the registry and only calls the methods below.
    """

    key: ClassVar[str]
    name: ClassVar[str]
    properties_key: ClassVar[str]
    # The ways to authenticate (empty: any auth kind a registered provider declares).
    auth_kinds: ClassVar[tuple[AuthKindSpec, ...]] = ()
    # catalog path → JMESPath over RepoRecord.data
    default_field_mappings: ClassVar[dict[str, str]] = {}
    # A file in each repository's default branch that enriches its entity, if any.
    catalog_file: ClassVar[str | None] = None
    # What an integration's target holds for this provider, as forms ask for it; its keys are
    # ``target_keys`` unless the class names those itself.
    target_fields: ClassVar[tuple[TargetField, ...]] = ()
    # Keys of ``Integration.target`` this provider understands.
    target_keys: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "target_fields" in cls.__dict__ and "target_keys" not in cls.__dict__:
            cls.target_keys = tuple(f.name for f in cls.target_fields)

    def __init__(
        self,
        *,
        connector: "Connector",
        integration: "Integration | None" = None,
        store_tokens: Callable[[dict], None] | None = None,
        mark_down: Callable[[str], None] | None = None,
    ):
        self.connector = connector
        self.integration = integration
        self.stats = RequestStats()
        # What the provider may change of its connector, written by whoever builds it (the
        # registry hands in the engine's writes): renewed OAuth tokens, and a credential that
        # stopped working. A provider never writes rows itself.
        self.store_tokens = store_tokens or _keep_in_memory(connector)
        self.mark_down = mark_down or _ignore

    def reads_in_background(self) -> bool:
        """Whether the engine may make this instance's reads (listing pages, pull requests,
        commits) on a worker thread — one at a time, never alongside another of its requests —
        to overlap them with its database writes. Not when a read may write to the database
        itself (a credential renewing its token stores it): only the run's own thread may."""
        return False

    @classmethod
    def auth_kind_keys(cls) -> tuple[str, ...]:
        return tuple(spec.key for spec in cls.auth_kinds)

    def credentials(self) -> list:
        """The credentials of the connector's auth kind, built as its spec says."""
        kind = self.connector.auth_kind
        spec = next((spec for spec in self.auth_kinds if spec.key == kind), None)
        if spec is None or spec.build_credential is None:
            raise ProviderAuthError(f"{self.name} does not support the auth kind {kind!r}")
        return spec.build_credential(self)

    @classmethod
    def is_enabled(cls) -> tuple[bool, str]:
        """Whether this provider may be used here, and why not."""
        return True, ""

    @classmethod
    def validate_connector(cls, *, ca_pem: str = "") -> dict[str, str]:
        """Errors by field of the provider's own connector settings (empty when valid)."""
        return {}

    @classmethod
    def validate_target(cls, target: dict) -> dict[str, str]:
        """Errors by key for an integration's target settings (empty when valid)."""
        unknown = set(target) - set(cls.target_keys)
        return {key: "unknown setting for this provider" for key in sorted(unknown)}

    def probe(self) -> ProbeResult:
        raise NotImplementedError

    def iter_repositories(
        self,
        since: datetime | None = None,
        known: Callable[[list[str]], dict[str, dict]] | None = None,
    ) -> Iterator[list[RepoRecord]]:
        """Pages of repositories (one list per provider page, so the engine writes in bulk).

        ``since``: only those changed after it, where the provider can filter. ``known``: what
        the engine stored of repositories, ``known(external_ids) -> {external_id: data}`` (the
        ``DiscoveredEntity.data`` of those it has; asked at most once per page), so a provider
        that must read more than the listing per repository can skip what did not change, and
        count it in ``stats.unchanged``. Providers that do not need it ignore it."""
        raise NotImplementedError

    def get_repository(self, external_id: str, name: str | None = None) -> RepoRecord | None:
        """One repository by external id (or name, when the id is unknown); ``None`` when the
        provider answers that it does not exist."""
        raise NotImplementedError

    def in_target(self, record: RepoRecord) -> bool:
        """Whether a repository read on its own (a webhook's) is one the integration's target
        selects — the filters ``iter_repositories`` applies (projects, name pattern)."""
        return True

    def iter_pull_requests(
        self,
        repo: RepoRecord | dict,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int,
    ) -> Iterator[PullRequestRecord]:
        """Pull requests of all states, most recently updated first, ``since < updated_on <
        until`` (both bounds exclusive and optional), at most ``limit``."""
        raise NotImplementedError

    def iter_commits(
        self,
        repo: RepoRecord | dict,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int,
    ) -> Iterator[CommitRecord]:
        """Commits of the default branch, newest first, within the same bounds."""
        raise NotImplementedError

    def read_file(self, repo: RepoRecord | dict, path: str) -> bytes | None:
        raise NotImplementedError

    def ensure_webhook(self, url: str, secret: str, events: list[str] | None = None) -> None:
        """Register (or update: events, secret) the integration's hook on the provider."""
        raise NotImplementedError(f"{self.name} cannot register webhooks")

    def remove_webhook(self, url: str) -> int:
        """Delete the hooks posting to ``url``; returns how many."""
        raise NotImplementedError(f"{self.name} cannot remove webhooks")

    def parse_webhook(self, headers: dict[str, str], body: bytes) -> WebhookEvent:
        raise NotImplementedError

    def write_files(self, request: "WriteRequest") -> "WriteResult":
        """Commit ``request.files`` to the repository (or propose them in a pull request),
        retrying a moved branch, never forcing, never overwriting a file changed upstream
        (see :mod:`integrations.providers.writes`)."""
        raise NotImplementedError(f"{self.name} cannot write to repositories")

    def write_access(self, repo: RepoRecord | dict | None = None) -> tuple[bool, str]:
        """Whether the connector's credential may write back (to ``repo``, or to any repository
        of the target), and otherwise which scope or permission is missing."""
        return False, f"{self.name} cannot write to repositories"

    @classmethod
    def properties(cls, data: dict) -> dict[str, Any]:
        """``integration_properties.<properties_key>`` of an imported entity, from the record."""
        return dict(data)


def _keep_in_memory(connector: "Connector") -> Callable[[dict], None]:
    def store(tokens: dict) -> None:
        connector.secrets = {**connector.secrets, **tokens}

    return store


def _ignore(message: str) -> None:
    return None
