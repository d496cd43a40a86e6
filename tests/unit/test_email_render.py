"""The mail a delivery becomes (herald/channels/email_render.py): both parts, subject, escaping, encoded names,
digest order, and a Message-ID that stays the same across retries of one delivery."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest

from herald.channels.base import Recipient
from herald.channels.email_render import DIGEST_MAX_ITEMS, SUBJECT_MAX_CHARS, message_id, render_email
from tests.support.email_jobs import body, job

SENDER = "Herald <notifications@herald.example>"
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
SCRIPT = "<script>alert(1)</script>"


def parts(mail: EmailMessage) -> tuple[str, str]:
    """The text and HTML parts as a receiving client decodes them, after a round trip through bytes."""
    parsed = message_from_bytes(mail.as_bytes(), policy=policy.default)
    assert parsed.get_content_type() == "multipart/alternative"
    plain, html = parsed.get_body(("plain",)), parsed.get_body(("html",))
    assert plain is not None
    assert html is not None
    return plain.get_content(), html.get_content()


def test_a_notification_has_a_text_and_an_html_part_and_the_headers() -> None:
    mail = render_email(job(body()), sender=SENDER, now=NOW)
    assert [p.get_content_type() for p in mail.iter_parts()] == ["text/plain", "text/html"]
    assert mail["Subject"] == "Bob liked your post"
    assert mail["From"] == SENDER
    assert mail["To"] == "Alice Example <alice@example.org>"
    assert mail["X-Herald-Delivery-Id"] == "n1:1:EMAIL"
    assert mail["Date"] == "Sun, 29 Nov 2026 12:00:00 +0000"
    plain, html = parts(mail)
    assert "Bob liked your post" in plain
    assert "2026-11-29 10:00 UTC" in plain
    assert "Bob liked your post" in html
    assert "<html" not in plain


def test_script_in_names_and_texts_is_escaped_in_html_and_literal_in_text() -> None:
    payload = body(
        text=f"{SCRIPT} liked your post",
        actors=[{"id": "x", "name": SCRIPT, "avatarUrl": "https://cdn.example/x.png"}],
        title=f"<b>{SCRIPT}</b>",
        message=f"{SCRIPT} & friends",
    )
    plain, html = parts(render_email(job(payload), sender=SENDER, now=NOW))
    assert f"{SCRIPT} liked your post" in plain
    assert f"<b>{SCRIPT}</b>" in plain
    assert f"{SCRIPT} & friends" in plain
    assert "<script" not in html
    assert "<b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; liked your post" in html
    assert 'alt="&lt;script&gt;alert(1)&lt;/script&gt;"' in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; friends" in html


def test_only_web_links_become_links() -> None:
    payload = body(actionUrl="javascript:alert(1)", actors=[{"id": "x", "name": "X", "avatarUrl": "data:x"}])
    plain, html = parts(render_email(job(payload), sender=SENDER, now=NOW))
    assert "javascript:" not in html
    assert "javascript:" not in plain
    assert "data:x" not in html
    plain, html = parts(render_email(job(body(actionUrl="https://app.example/p/1")), sender=SENDER, now=NOW))
    assert 'href="https://app.example/p/1"' in html
    assert "https://app.example/p/1" in plain


def test_the_subject_is_one_line_and_truncated() -> None:
    long_text = "Bob\r\nBcc: evil@example.org   replied: " + "word " * 60
    mail = render_email(job(body(text=long_text)), sender=SENDER, now=NOW)
    subject = mail["Subject"]
    assert "\n" not in subject
    assert "\r" not in subject
    assert subject.startswith("Bob Bcc: evil@example.org replied: word")
    assert len(subject) <= SUBJECT_MAX_CHARS
    assert subject.endswith("…")
    assert mail["Bcc"] is None
    assert message_from_bytes(mail.as_bytes(), policy=policy.default)["Bcc"] is None


def test_a_non_ascii_display_name_is_encoded_and_decodes_back() -> None:
    recipient = Recipient("u1", name="Jürgen Çelik, 東京", email="juergen@example.org")
    raw = render_email(job(body(), recipient), sender=SENDER, now=NOW).as_bytes()
    to_line = next(line for line in raw.split(b"\n") if line.startswith(b"To:"))
    to_line.decode("ascii")  # encoded words on the wire, nothing raw
    assert b"=?utf-8?" in to_line
    parsed = message_from_bytes(raw, policy=policy.default)
    [address] = parsed["To"].addresses
    assert (address.display_name, address.addr_spec) == ("Jürgen Çelik, 東京", "juergen@example.org")


def test_a_recipient_without_a_name_gets_the_bare_address() -> None:
    mail = render_email(job(body(), Recipient("u1", email="a@example.org")), sender=SENDER, now=NOW)
    assert mail["To"] == "a@example.org"


@pytest.mark.parametrize("recipient", [None, Recipient("u1", name="No Mail")])
def test_no_address_is_refused(recipient: Recipient | None) -> None:
    with pytest.raises(ValueError, match="user u1 has no email address"):
        render_email(job(body(), recipient), sender=SENDER, now=NOW)


def test_the_message_id_is_stable_per_delivery_and_differs_between_deliveries() -> None:
    first = render_email(job(body()), sender=SENDER, now=NOW)
    again = render_email(job(body()), sender=SENDER, now=datetime(2026, 11, 30, tzinfo=UTC))
    other = render_email(job(body(), delivery_id="n1:2:EMAIL"), sender=SENDER, now=NOW)
    assert first["Message-ID"] == again["Message-ID"] == message_id("n1:1:EMAIL")
    assert first["Message-ID"] != other["Message-ID"]
    assert first["Message-ID"].startswith("<")
    assert first["Message-ID"].endswith("@herald>")


def digest(*items: dict[str, Any], period: str | None = "daily") -> dict[str, Any]:
    inner: dict[str, Any] = {"count": len(items), "items": list(items)}
    if period:
        inner["period"] = period
    return {"digest": inner}


def test_a_digest_lists_its_items_newest_first_with_their_times() -> None:
    payload = digest(
        body("n1", "Oldest: Carol followed you", "2026-11-29T08:00:00.000Z"),
        body("n3", f"Newest: {SCRIPT} mentioned you", "2026-11-29T11:30:00.000Z"),
        body("n2", "Middle: Dan replied", "2026-11-29T09:15:00.000Z"),
    )
    mail = render_email(job(payload, delivery_id="digest:u1:EMAIL:1"), sender=SENDER, now=NOW)
    assert mail["Subject"] == "You have 3 new notifications"
    plain, html = parts(mail)
    assert "Your daily digest: 3 new notifications" in plain
    positions = [plain.index(t) for t in ("Newest:", "Middle:", "Oldest:")]
    assert positions == sorted(positions)
    assert "2026-11-29 11:30 UTC  Newest: <script>alert(1)</script> mentioned you" in plain
    assert "2026-11-29 08:00 UTC  Oldest: Carol followed you" in plain
    html_positions = [html.index(t) for t in ("Newest:", "Middle:", "Oldest:")]
    assert html_positions == sorted(html_positions)
    assert html.count('class="item"') == 3
    assert "<script" not in html
    assert "09:15 UTC" in html


def test_digest_times_are_in_the_recipients_time_zone() -> None:
    tokyo = Recipient("u1", email="a@example.org", timezone="Asia/Tokyo")
    plain, _ = parts(render_email(job(digest(body()), tokyo), sender=SENDER, now=NOW))
    assert "2026-11-29 19:00 JST  Bob liked your post" in plain
    nowhere = Recipient("u1", email="a@example.org", timezone="Not/AZone")
    plain, _ = parts(render_email(job(digest(body()), nowhere), sender=SENDER, now=NOW))
    assert "2026-11-29 10:00 UTC" in plain


def test_a_long_digest_is_cut_and_says_how_many_more() -> None:
    items = [
        body(f"n{i}", f"item {i}", f"2026-11-29T{i // 60:02d}:{i % 60:02d}:00.000Z")
        for i in range(DIGEST_MAX_ITEMS + 7)
    ]
    mail = render_email(job(digest(*items, period=None)), sender=SENDER, now=NOW)
    assert mail["Subject"] == f"You have {DIGEST_MAX_ITEMS + 7} new notifications"
    plain, html = parts(mail)
    assert "and 7 more" in plain
    assert "and 7 more" in html
    assert html.count('class="item"') == DIGEST_MAX_ITEMS
    assert f"item {DIGEST_MAX_ITEMS + 6}" in plain  # the newest are kept
    assert "item 0\n" not in plain


def test_a_digest_of_one() -> None:
    assert render_email(job(digest(body())), sender=SENDER, now=NOW)["Subject"] == "You have 1 new notification"
