"""What the headless-Chromium tests need (tests/e2e/test_browser.py, ray_pipeline/test_dashboard.py): node,
playwright-core under tests/e2e/js, Debian's chromium; a clear failure naming what is missing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
JS_DIR = ROOT / "tests" / "e2e" / "js"
CHROMIUM = Path("/usr/bin/chromium")


def node_for_playwright(test: str, *more: tuple[str, bool]) -> str:
    """The node binary; fails `test` naming every missing piece (`more`: further (what, present) pairs)."""
    node = shutil.which("node")
    needs = [
        ("node", node is not None),
        (f"npm ci --prefix {JS_DIR}", (JS_DIR / "node_modules" / "playwright-core").is_dir()),
        ("apt-get install -y chromium", CHROMIUM.is_file()),
        *more,
    ]
    missing = [what for what, ok in needs if not ok]
    if missing or node is None:
        pytest.fail(f"the {test} test needs: {', '.join(missing)} (scripts/dev setup does all of it)")
    return node
