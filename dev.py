#!/usr/bin/env python3
"""Lantern's two entry points for a fresh machine that has only Python 3.11+.

    python3 dev.py demo   install, migrate, start the demo and serve on http://127.0.0.1:8000
                          (--check: start, sync, check the catalog over HTTP, stop; for CI)
    python3 dev.py test   install (with test extras) and run the whole test suite

Everything is installed into ./.venv. DATABASE_URL and CELERY_BROKER_URL are honoured when set;
otherwise Lantern uses a SQLite file under ./var and runs tasks in process.
"""

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
CLIENT_DIR = ROOT / "tests" / "contract" / "catalog_client"


def run(*command: str, **kwargs) -> None:
    print("+", " ".join(command), flush=True)
    kwargs.setdefault("cwd", ROOT)
    subprocess.run(command, check=True, **kwargs)  # noqa: S603


def install() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py may run under an older python3
        sys.exit("Lantern needs Python 3.11 or newer.")
    if not PYTHON.exists():
        venv.EnvBuilder(with_pip=True).create(VENV)
    run(str(PYTHON), "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    run(str(PYTHON), "-m", "pip", "install", "--quiet", "-e", ".[dev]")


def install_contract_client() -> None:
    """The Backstage catalog-client contract test needs Node; without it the test skips."""
    npm = shutil.which("npm")
    if npm is None:
        print("npm not found: the @backstage/catalog-client contract test will be skipped.")
        return
    run(npm, "ci", "--no-audit", "--no-fund", "--silent", cwd=CLIENT_DIR)


def demo(args: list[str]) -> None:
    install()
    manage = [str(PYTHON), "manage.py"]
    run(*manage, "migrate", "--no-input", "-v", "0")
    flags = [arg for arg in args if arg.startswith("--")]
    positional = [arg for arg in args if not arg.startswith("--")]
    address = positional[0] if positional else "127.0.0.1:8000"
    # The demo's Bitbucket sandboxes listen on loopback, which Lantern refuses by default.
    os.environ.setdefault("LANTERN_OUTBOUND_ALLOWLIST", "127.0.0.1")
    os.environ.setdefault("LANTERN_PUBLIC_URL", f"http://{address}")
    # runserver serves the static files (stylesheet, script) without DEBUG too (--insecure).
    os.execv(str(PYTHON), [*manage, "demo", address, *flags])  # noqa: S606


def test(args: list[str]) -> None:
    install()
    install_contract_client()
    os.execv(str(PYTHON), [str(PYTHON), "-m", "pytest", *args])  # noqa: S606


def main() -> None:
    commands = {"demo": demo, "test": test}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(__doc__)
    commands[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
