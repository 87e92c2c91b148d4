"""The provider interface: what the sync engine needs from any source of repositories.

Records are plain dataclasses holding the raw JSON too; nothing here touches the database.
"""

import ipaddress
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import unquote, urlsplit

from django.conf import settings

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
    # The kind's tokens come from a person authorising Lantern in the provider's web UI (the
    # connector page's Connect: ``Provider.oauth_authorize_url`` and ``oauth_complete``).
    browser_authorization: bool = False

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
    # Refused when missing by the provider's ``validate_target``; forms mark it required.
    required: bool = False


@dataclass(frozen=True)
class ProbeResult:
    """What a probe found. ``target_error``: the failure is the target's (no such workspace or
    project, or no access to it) rather than the connector's (its address, TLS or credential),
    so the connector's health is left as it is: a wrong workspace typed in the wizard does not
    mark a working connector down."""

    ok: bool
    message: str
    details: dict = field(default_factory=dict)
    target_error: bool = False


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


@dataclass(frozen=True)
class RepositoryLocation:
    """What a URL names in an integration's repositories (a catalog location, a link a person
    pasted): the repository (what ``get_repository(name=...)`` takes), and a file in it at
    ``ref`` (``None``: the default branch); ``path`` ``None``: the repository itself."""

    repository: str
    ref: str | None = None
    path: str | None = None


def url_segments_under(url: str, base: str) -> tuple[list[str], str] | None:
    """The path segments of ``url`` below ``base`` (same scheme, host and port, and under its
    path), percent-decoded, with the query string; ``None`` when ``url`` is not under it."""
    parts, root = urlsplit(url), urlsplit(base)
    if (parts.scheme.lower(), parts.netloc.lower()) != (root.scheme.lower(), root.netloc.lower()):
        return None
    prefix = root.path.rstrip("/")
    if prefix and not (parts.path == prefix or parts.path.startswith(prefix + "/")):
        return None
    return [unquote(s) for s in parts.path[len(prefix) :].split("/") if s], parts.query


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
    # The address a connector without a base URL talks to (empty: a base URL is required).
    default_base_url: ClassVar[str] = ""
    # The events Lantern's hooks subscribe to (empty: the provider's defaults).
    webhook_events: ClassVar[tuple[str, ...]] = ()
    # Whether a base URL may be plain http:// when its host is in LANTERN_OUTBOUND_ALLOWLIST (a
    # sandbox on loopback); otherwise only https:// is accepted.
    plain_http_when_allowlisted: ClassVar[bool] = False

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
    def instance_key(cls, connector: "Connector") -> str:
        """Which provider instance a connector reaches, the same for every connector that does
        (a blank base URL and the default one spelled out are one instance): repositories of
        one instance with one external id are one repository, and share one webhook."""
        return (connector.base_url or cls.default_base_url).strip().rstrip("/").lower()

    @classmethod
    def is_enabled(cls) -> tuple[bool, str]:
        """Whether this provider may be used here, and why not."""
        return True, ""

    @classmethod
    def validate_connector(
        cls,
        *,
        auth_kind: str,
        base_url: str | None = None,
        secrets: Mapping | None = None,
        config: Mapping | None = None,
        ca_pem: str | None = None,
    ) -> dict[str, str]:
        """Errors by field of a connector about to be stored (empty when valid): the auth kind
        is one of this provider's, what its spec requires is given (public fields in
        ``config``, secret fields in ``secrets``: an update passes the stored secrets when it
        keeps them), and the base URL, when set, passes :func:`connector_url_errors`.
        ``base_url`` / ``ca_pem`` None: not being set (an update that keeps them), so not
        checked again. Every face (UI, API, admin, ``apply_config``) reaches this through
        ``services.connector_validate`` before anything is written."""
        errors: dict[str, str] = {}
        spec = next((spec for spec in cls.auth_kinds if spec.key == auth_kind), None)
        if cls.auth_kinds and spec is None:
            allowed = ", ".join(cls.auth_kind_keys())
            return {
                "auth_kind": f"{cls.name} has no auth kind {auth_kind!r} (its kinds: {allowed})"
            }
        if spec is not None:
            errors.update(auth_required_errors(spec, secrets=secrets or {}, config=config or {}))
        if base_url:
            message = connector_url_errors(
                base_url, plain_http_allowlisted=cls.plain_http_when_allowlisted
            )
            if message:
                errors["base_url"] = message
        return errors

    @classmethod
    def validate_target(cls, target: dict) -> dict[str, str]:
        """Errors by key for an integration's target settings (empty when valid)."""
        unknown = set(target) - set(cls.target_keys)
        return {key: "unknown setting for this provider" for key in sorted(unknown)}

    def probe(self) -> ProbeResult:
        raise NotImplementedError

    @classmethod
    def oauth_redirect_uri(cls, connector: "Connector") -> str:
        """Where the provider sends the person back after the authorisation: what the admin
        registers with the provider (for example a Data Center application link)."""
        raise NotImplementedError(f"{cls.name} has no browser authorisation")

    @classmethod
    def oauth_authorize_url(cls, connector: "Connector", *, state: str, code_challenge: str) -> str:
        """Where a person authorises Lantern for ``connector`` (OAuth 2.0 authorization code
        with PKCE S256): only providers whose auth kinds declare ``browser_authorization``
        implement it. Cloud's OAuth consumer uses client credentials and needs no browser."""
        raise NotImplementedError(f"{cls.name} has no browser authorisation")

    @classmethod
    def oauth_complete(cls, connector: "Connector", *, code: str, verifier: str) -> dict:
        """Exchange an authorization code for tokens (``access_token``, ``refresh_token``,
        ``expires_at``), which the caller stores encrypted on the connector; a refusal is a
        ``ProviderAuthError`` whose message says what to fix."""
        raise NotImplementedError(f"{cls.name} has no browser authorisation")

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

    @classmethod
    def repository_location(
        cls, url: str, *, connector: "Connector", target: dict
    ) -> RepositoryLocation | None:
        """Which repository (and file) of an integration with this connector and target ``url``
        names, by its web address; ``None`` for any other URL (another host, workspace or
        project), without a request: a catalog location is read only through the integration
        it belongs to."""
        return None

    @classmethod
    def file_url(
        cls, *, connector: "Connector", target: dict, repository: str, ref: str, path: str
    ) -> str:
        """The web address of a file, as :meth:`repository_location` reads it back."""
        raise NotImplementedError(f"{cls.name} has no file URLs")

    def webhook_scopes(self) -> list[str]:
        """The subjects the integration's hooks live on, as scope keys
        (``workspace:<slug>``, ``project:<KEY>``, ``repository:<KEY>/<slug>``): integrations
        with the same scope key on one host share one hook (``WebhookSubscription``)."""
        raise NotImplementedError(f"{self.name} cannot register webhooks")

    @classmethod
    def webhook_scope_target(cls, scope: str) -> dict:
        """A target covering one webhook scope: what a provider built only to remove that
        scope's hook (after its last integration went) is given."""
        return {}

    @classmethod
    def webhook_concerns(cls, target: dict, event: WebhookEvent) -> bool:
        """Whether a delivery's repository is one an integration with ``target`` selects (the
        semantics of :meth:`in_target`, answered from the payload without any request)."""
        return True

    def ensure_webhook(
        self, url: str, secret: str, events: list[str] | None = None, *, scope: str | None = None
    ) -> str:
        """Register (or update: events, secret) the hook posting to ``url`` on one scope (all
        of the integration's without one); returns the remote hook id(s), comma separated."""
        raise NotImplementedError(f"{self.name} cannot register webhooks")

    def remove_webhook(self, url: str, *, scope: str | None = None) -> int:
        """Delete the hooks posting to ``url`` (on one scope, or all of the integration's);
        returns how many."""
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


def auth_required_errors(spec: AuthKindSpec, *, secrets: Mapping, config: Mapping) -> dict:
    """What ``spec.required`` asks for and is missing: each item a set of alternatives, looked
    up in ``secrets`` (secret fields) or ``config`` (public fields); the error is on
    ``secrets`` or ``config``, naming the field."""
    errors: dict[str, list[str]] = {}
    for alternatives in spec.required:
        if any(
            secrets.get(key) if key in spec.secret_fields else config.get(key)
            for key in alternatives
        ):
            continue
        where = "secrets" if alternatives[0] in spec.secret_fields else "config"
        names = " or ".join(spec.field_labels.get(key, key) for key in alternatives)
        errors.setdefault(where, []).append(f"{names} is required for {spec.label}")
    return {where: "; ".join(messages) for where, messages in errors.items()}


def _host_allowlisted(host: str) -> bool:
    """Whether ``host`` (a name, or an address literal) is in LANTERN_OUTBOUND_ALLOWLIST."""
    host = host.lower().strip("[]")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for item in settings.LANTERN_OUTBOUND_ALLOWLIST:
        try:
            network = ipaddress.ip_network(item, strict=False)
        except ValueError:
            if item.lower() == host:
                return True
            continue
        if address is not None and address.version == network.version and address in network:
            return True
    return False


def connector_url_errors(url: str, *, plain_http_allowlisted: bool = False) -> str | None:
    """Why a connector's base URL is refused, or None: it must be ``https://`` (plain
    ``http://`` only for an allowlisted host, where the provider allows it), and its host must
    resolve, only to public addresses unless allowlisted. The host is resolved, never
    connected to (the outbound guard checks again at every connection)."""
    from integrations.providers.outbound import OutboundAddressError, outbound_check

    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 (a port that is not a number raises here)
    except ValueError as exc:
        return f"{url!r} is not a valid URL ({exc})"
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not host:
        return f"must be an https:// URL (got {scheme + '://' if scheme else url!r})"
    try:
        outbound_check(url)
    except OutboundAddressError as exc:
        return exc.message
    if scheme == "http":
        if not plain_http_allowlisted:
            return "must start with https:// (plain http is not accepted)"
        if not _host_allowlisted(host):
            return (
                f"must start with https://: plain http is accepted only for hosts in "
                f"LANTERN_OUTBOUND_ALLOWLIST, and {host} is not one"
            )
    return None


def _keep_in_memory(connector: "Connector") -> Callable[[dict], None]:
    def store(tokens: dict) -> None:
        connector.secrets = {**connector.secrets, **tokens}

    return store


def _ignore(message: str) -> None:
    return None
