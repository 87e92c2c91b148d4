"""Run a Bitbucket sandbox in the foreground for demos and manual testing.

With ``demo``, the one place outside the tests and the bench that imports the top-level
:mod:`sandbox` package. It does so inside ``handle()``: the wheel ships no sandbox, and an installed
Lantern must still load this module (``manage.py help`` lists every command).
"""

import tempfile
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from django.core.management.base import BaseCommand, CommandError

if TYPE_CHECKING:
    from sandbox import World

DEFAULT_TOKEN = "sandbox-token"  # noqa: S105 (a sandbox credential, printed on start)
API_TOKEN = "sandbox-api-token"  # noqa: S105
OAUTH_CLIENT_ID = "sandbox-client"
OAUTH_SECRET = "sandbox-secret"  # noqa: S105
DC_REDIRECT_URI = "http://127.0.0.1:8000/org/bitbucket-dc/1/callback"
DEFAULT_PORTS = {"cloud": 8990, "dc": 8991}
SOURCE_ONLY = "the Bitbucket sandbox ships only with a source checkout"


def sandbox_package() -> ModuleType:
    """The top-level ``sandbox`` package, or a CommandError where it is not installed."""
    try:
        import sandbox
    except ModuleNotFoundError as exc:
        if exc.name != "sandbox":
            raise
        raise CommandError(SOURCE_ONLY) from None
    return sandbox


class Command(BaseCommand):
    help = (
        "Start a Bitbucket Cloud sandbox (REST 2.0, OAuth, webhooks and the /_sandbox control API) "
        "or, with --dc, a Bitbucket Data Center one (REST 1.0 over HTTPS with a private CA) over "
        "a generated or loaded world, and print its URL and credentials."
    )

    def add_arguments(self, parser):
        kind = parser.add_mutually_exclusive_group()
        kind.add_argument("--cloud", action="store_true", help="Bitbucket Cloud (the default)")
        kind.add_argument(
            "--dc", action="store_true", help="Bitbucket Data Center (HTTPS, private CA)"
        )
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, help="default 8990 (Cloud), 8991 (Data Center)")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--workspaces", type=int, default=1)
        parser.add_argument("--projects", type=int, default=3)
        parser.add_argument("--repos", type=int, default=300)
        parser.add_argument("--prs", type=int, default=5, help="pull requests per repository")
        parser.add_argument("--commits", type=int, default=10, help="commits per repository")
        parser.add_argument("--data", help="load the world from this JSON file instead")
        parser.add_argument("--dump", help="write the world (generated or loaded) to this file")
        parser.add_argument("--token", default=DEFAULT_TOKEN, help="the workspace access token")
        parser.add_argument(
            "--oauth-callback",
            default="http://localhost:8000/accounts/bitbucket_oauth2/login/callback/",
        )
        parser.add_argument(
            "--app-passwords",
            action="store_true",
            help="accept app passwords (Bitbucket retired them on 2026-06-09)",
        )
        parser.add_argument(
            "--ca-file",
            help="Data Center: where to write the private CA's PEM "
            "(default: lantern-dc-sandbox-ca.pem in the temporary directory)",
        )
        parser.add_argument(
            "--dc-version", default="9.4.1", help="Data Center: the version it reports"
        )
        parser.add_argument(
            "--edge-cases",
            action="store_true",
            help="add what real instances have: a personal project (~user), unicode, spaces, "
            "dots and long names (and, on Cloud, a repository in no project)",
        )
        parser.add_argument(
            "--dc-redirect-uri",
            default=DC_REDIRECT_URI,
            help="Data Center: the redirect URL of the sandbox's OAuth application link",
        )

    def handle(self, *args, **options):
        self.sandbox = sandbox_package()
        if options["port"] is None:
            options["port"] = DEFAULT_PORTS["dc" if options["dc"] else "cloud"]
        if options["dc"]:
            return self._handle_dc(options)
        world = self._world(options)
        lines = self._credentials(world, options)
        if options["dump"]:
            world.dump_to(options["dump"])
        try:
            server = self.sandbox.SandboxServer(world, kind="cloud").start(
                options["host"], options["port"]
            )
        except OSError as exc:
            where = f"{options['host']}:{options['port']}"
            raise CommandError(f"Cannot listen on {where}: {exc}") from exc
        summary = world.summary()
        self.stdout.write(
            "\n".join(
                [
                    f"Bitbucket Cloud sandbox on {server.url}",
                    f"  API base URL:  {server.api_url}",
                    f"  OAuth:         {server.url}/site/oauth2/authorize , "
                    f"{server.url}/site/oauth2/access_token",
                    f"  Control API:   {server.url}/_sandbox/world",
                    f"World: {summary['repositories']} repositories, "
                    f"{summary['pull_requests']} pull requests, {summary['commits']} commits in "
                    + ", ".join(
                        f"{ws['slug']} (projects {', '.join(ws['projects'])})"
                        for ws in summary["workspaces"]
                    ),
                    "Credentials:",
                    *lines,
                    "Lantern reaches it only with LANTERN_OUTBOUND_ALLOWLIST="
                    f"{options['host']}. Ctrl-C stops it.",
                ]
            )
        )
        self.stdout.flush()
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            self.stdout.write("Stopped.")

    def _handle_dc(self, options) -> None:
        world = self._world(options)
        lines = self._dc_credentials(world, options)
        if options["dump"]:
            world.dump_to(options["dump"])
        try:
            server = self.sandbox.SandboxServer(
                world, kind="dc", version=options["dc_version"]
            ).start(options["host"], options["port"])
        except OSError as exc:
            where = f"{options['host']}:{options['port']}"
            raise CommandError(f"Cannot listen on {where}: {exc}") from exc
        ca_file = Path(
            options["ca_file"] or Path(tempfile.gettempdir()) / "lantern-dc-sandbox-ca.pem"
        )
        ca_file.write_text(server.ca_pem)
        summary = world.summary()
        workspace = next(ws for ws in summary["workspaces"] if ws["slug"] == server.api.workspace)
        self.stdout.write(
            "\n".join(
                [
                    f"Bitbucket Data Center sandbox on {server.url} "
                    f"(version {options['dc_version']})",
                    f"  REST base URL: {server.api_url}",
                    f"  CA certificate (PEM): {ca_file}  (paste it into the connector's private "
                    "CA)",
                    f"  OAuth:         {server.url}/rest/oauth2/latest/authorize , "
                    f"{server.url}/rest/oauth2/latest/token",
                    f"  Control API:   {server.url}/_sandbox/world",
                    f"World: {workspace['repositories']} repositories in projects "
                    f"{', '.join(workspace['projects'])}",
                    "Credentials:",
                    *lines,
                    "Lantern reaches it only with BITBUCKET_DC_ENABLED=true and "
                    f"LANTERN_OUTBOUND_ALLOWLIST={options['host']}. Ctrl-C stops it.",
                ]
            )
        )
        self.stdout.flush()
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            self.stdout.write("Stopped.")

    def _dc_credentials(self, world: "World", options) -> list[str]:
        """A personal access token of the first member (PROJECT_READ on every project) and an
        OAuth application link; credentials already in a loaded world are kept."""
        dc = world.credentials.dc
        token = options["token"]
        if token not in dc.tokens:
            dc.add_token(token, name="sandbox")
        item = dc.tokens[token]
        user = world.account(item.account)
        scope = ", ".join(item.projects) if item.projects is not None else "every project"
        lines = [
            f"  personal access token: {token}  (user {user.nickname if user else '?'}, "
            f"{item.permission} on {scope})"
        ]
        if OAUTH_CLIENT_ID not in dc.clients:
            dc.add_client(
                client_id=OAUTH_CLIENT_ID,
                secret=OAUTH_SECRET,
                redirect_uri=options["dc_redirect_uri"],
            )
        client = dc.clients[OAUTH_CLIENT_ID]
        lines.append(
            f"  OAuth application link: {client.client_id} / {client.secret}  "
            f"redirect URL: {client.redirect_uri}"
        )
        return lines

    def _world(self, options) -> "World":
        if options["data"]:
            try:
                return self.sandbox.World.load_from(options["data"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise CommandError(f"Cannot load {options['data']}: {exc}") from exc
        world = self.sandbox.World.generate(
            options["seed"],
            workspaces=options["workspaces"],
            projects=options["projects"],
            repos=options["repos"],
            prs_per_repo=options["prs"],
            commits_per_repo=options["commits"],
        )
        if options.get("edge_cases"):
            world.edge_cases(projectless=not options["dc"])
        return world

    def _credentials(self, world: "World", options) -> list[str]:
        """One workspace access token per workspace (all read scopes), an API token and an
        OAuth consumer for the first member; credentials already in a loaded world are kept."""
        credentials = world.credentials
        credentials.settings.app_passwords_enabled = options["app_passwords"]
        lines = []
        for index, ws in enumerate(world.workspaces.values()):
            token = options["token"] if index == 0 else f"{options['token']}-{ws.slug}"
            if token not in credentials.access_tokens:
                credentials.add_access_token(
                    token, workspace=ws.slug, scopes=self.sandbox.READ_SCOPES
                )
            lines.append(
                f"  workspace access token ({ws.slug}): {token}  "
                f"scopes: {' '.join(credentials.access_tokens[token].scopes)}"
            )
        first = next((ws for ws in world.workspaces.values() if ws.members), None)
        if first is not None:
            account = world.account(first.members[0])
            if not any(item.account == account.uuid for item in credentials.api_tokens.values()):
                credentials.add_api_token(email=account.email, token=API_TOKEN)
            secret = next(i for i in credentials.api_tokens.values() if i.account == account.uuid)
            lines.append(f"  API token (Basic auth): {secret.login} / {secret.secret}")
        if OAUTH_CLIENT_ID not in credentials.consumers:
            credentials.add_oauth_consumer(
                client_id=OAUTH_CLIENT_ID,
                secret=OAUTH_SECRET,
                callback_url=options["oauth_callback"],
                scopes=(*self.sandbox.READ_SCOPES, "email"),
            )
        consumer = credentials.consumers[OAUTH_CLIENT_ID]
        lines.append(
            f"  OAuth consumer: {consumer.client_id} / {consumer.secret}  "
            f"callback: {consumer.callback_url}  scopes: {' '.join(consumer.scopes)}"
        )
        for item in credentials.app_passwords.values():
            state = "enabled" if credentials.settings.app_passwords_enabled else "refused"
            lines.append(f"  app password ({state}): {item.login} / {item.secret}")
        return lines
