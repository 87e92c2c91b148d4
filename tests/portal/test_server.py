"""Server entry points load every view and freeze what they loaded before serving."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("module", ["portal.wsgi", "portal.asgi"])
def test_the_entry_point_imports_the_views_and_freezes_them(module):
    script = (
        "import gc, sys\n"
        f"import {module}\n"
        "print('catalog.api.views' in sys.modules, gc.get_freeze_count() > 10_000)\n"
    )
    result = subprocess.run(  # noqa: S603 (a fresh interpreter: freezing is process-wide)
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["True", "True"]
