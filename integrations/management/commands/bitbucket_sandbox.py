"""Run a Bitbucket sandbox in the foreground for demos and manual testing.

The one place outside the tests that imports :mod:`integrations.sandbox`.
"""

from django.core.management.base import BaseCommand, CommandError

from integrations.sandbox import READ_SCOPES, SandboxServer, World

DEFAULT_TOKEN = "sandbox-token"  # noqa: S105 (a sandbox credential, printed on start)
API_TOKEN = "sandbox-api-token"  # noqa: S105
OAUTH_CLIENT_ID = "sandbox-client"
OAUTH_SECRET = "sandbox-secret"  # noqa: S105


class Command(BaseCommand):
    help = (
        "Start a Bitbucket Cloud sandbox (REST 2.0, OAuth, webhooks and the /_sandbox control API) "
        "over a generated or loaded world, and print its URL and credentials."
    )

    def add_arguments(self, parser):
        parser.add_argument("--cloud", action="store_true", help="Bitbucket Cloud (the default)")
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8990)
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

    def handle(self, *args, **options):
        world = self._world(options)
        lines = self._credentials(world, options)
        if options["dump"]:
            world.dump_to(options["dump"])
        try:
            server = SandboxServer(world, kind="cloud").start(options["host"], options["port"])
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

    def _world(self, options) -> World:
        if options["data"]:
            try:
                return World.load_from(options["data"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise CommandError(f"Cannot load {options['data']}: {exc}") from exc
        return World.generate(
            options["seed"],
            workspaces=options["workspaces"],
            projects=options["projects"],
            repos=options["repos"],
            prs_per_repo=options["prs"],
            commits_per_repo=options["commits"],
        )

    def _credentials(self, world: World, options) -> list[str]:
        """One workspace access token per workspace (all read scopes), an API token and an
        OAuth consumer for the first member; credentials already in a loaded world are kept."""
        credentials = world.credentials
        credentials.settings.app_passwords_enabled = options["app_passwords"]
        lines = []
        for index, ws in enumerate(world.workspaces.values()):
            token = options["token"] if index == 0 else f"{options['token']}-{ws.slug}"
            if token not in credentials.access_tokens:
                credentials.add_access_token(token, workspace=ws.slug, scopes=READ_SCOPES)
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
                scopes=(*READ_SCOPES, "email"),
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
