"""User text reaches two kinds of HTML, the browser inbox page and the emails; neither may ever build markup
from it (docs/architecture.md, Security). The behaviour is tested end to end (tests/e2e/test_browser.py, and
tests/unit/test_email_render.py); this guards the code against the constructs that would undo it."""

from __future__ import annotations

import re
from pathlib import Path

from herald.channels import email_render
from herald.gateway.http import STATIC_DIR

# DOM sinks that parse a string as HTML or code.
_JS_SINKS = re.compile(r"\.innerHTML\b|\.outerHTML\b|insertAdjacentHTML|document\.write|\beval\(|new Function\(")
# Jinja constructs that switch escaping off.
_TEMPLATE_BYPASS = re.compile(r"\|\s*safe\b|autoescape\s+false|Markup\(")


def test_the_inbox_page_never_parses_text_as_html() -> None:
    own = [p for p in STATIC_DIR.glob("*") if p.suffix in {".js", ".html"}]
    assert own, f"no page sources under {STATIC_DIR}"
    for path in own:
        found = _JS_SINKS.findall(path.read_text())
        assert not found, f"{path.name} uses {found}: set textContent instead"


def test_email_templates_never_switch_escaping_off() -> None:
    templates = Path(email_render.__file__).parent / "templates"
    sources = [*templates.glob("*.html"), Path(email_render.__file__)]
    for path in sources:
        found = _TEMPLATE_BYPASS.findall(path.read_text())
        assert not found, f"{path.name} uses {found}"
    assert "autoescape=True" in Path(email_render.__file__).read_text()
