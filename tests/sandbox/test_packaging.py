"""The sandbox is a development package: the wheel leaves it out, product code never imports it."""

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from setuptools import find_namespace_packages

ROOT = Path(__file__).resolve().parents[2]
PRODUCT_PACKAGES = ("portal", "catalog", "integrations", "scorecards")


def shipped_packages() -> list[str]:
    """The packages a wheel of this checkout contains, found as ``pip wheel .`` finds them
    (``[tool.setuptools.packages.find]``, namespace packages included)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    find = config["tool"]["setuptools"]["packages"]["find"]
    return find_namespace_packages(
        where=str(ROOT), include=find.get("include", ["*"]), exclude=find.get("exclude", ())
    )


def test_the_wheel_ships_the_product_packages_and_no_sandbox_file():
    packages = shipped_packages()
    assert (ROOT / "sandbox" / "__init__.py").is_file()  # the checkout has it; the wheel does not
    assert {name.partition(".")[0] for name in packages} == set(PRODUCT_PACKAGES)
    shipped_dirs = [ROOT.joinpath(*name.split(".")) for name in packages]
    assert not [d for d in shipped_dirs if d == ROOT / "sandbox" or ROOT / "sandbox" in d.parents]


IMPORT_EVERY_PRODUCT_MODULE = """
import importlib, json, sys
from pathlib import Path

import django

django.setup()
names = []
for package in {packages!r}:
    for path in sorted(Path(package).rglob("*.py")):
        parts = path.with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
for name in names:
    importlib.import_module(name)
print(json.dumps({{"imported": len(names), "sandbox": sorted(
    m for m in sys.modules if m == "sandbox" or m.startswith("sandbox.")
)}}))
"""


def test_importing_every_product_module_imports_no_sandbox_module():
    # A fresh interpreter: this test process has imported the sandbox already. Its sys.path[0]
    # is the checkout, so the sandbox could be imported: it just must not be.
    script = IMPORT_EVERY_PRODUCT_MODULE.format(packages=PRODUCT_PACKAGES)
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "portal.settings"},
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["imported"] > 100
    assert outcome["sandbox"] == []


@pytest.mark.parametrize("command", ["bitbucket_sandbox", "demo"])
def test_without_the_sandbox_the_commands_load_and_refuse_clearly(monkeypatch, command):
    monkeypatch.setitem(sys.modules, "sandbox", None)  # as in an installed wheel
    with pytest.raises(
        CommandError, match="the Bitbucket sandbox ships only with a source checkout"
    ):
        call_command(command, "--check" if command == "demo" else "--cloud")
