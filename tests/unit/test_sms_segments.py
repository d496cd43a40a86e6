"""SMS text arithmetic: GSM-7 versus UCS-2, part boundaries, and shortening to a part budget."""

from __future__ import annotations

import pytest

from herald.channels import sms_text
from herald.channels.sms_text import encoding, fit, is_gsm7, render, segments, units


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),  # 2 x 153
        ("a" * 307, 3),
        ("é" * 70, 1),  # é is GSM-7: still 160 to a lone SMS
        ("ж" * 70, 1),
        ("ж" * 71, 2),
        ("ж" * 134, 2),  # 2 x 67
        ("ж" * 135, 3),
        ("", 1),
    ],
)
def test_part_boundaries(text: str, expected: int) -> None:
    assert segments(text) == expected


def test_encoding_follows_the_gsm_0338_table() -> None:
    assert is_gsm7("John and 2 others liked your post @ £5 ¿ñ?")
    assert encoding("Ünïcode?") == "UCS-2"  # ï is not in the basic set
    assert encoding("price 5€ [ok]") == "GSM-7"
    assert encoding("smart \u2019quotes\u2019") == "UCS-2"  # typographic quotes are not GSM-7
    assert not is_gsm7("\x1b")  # the escape septet alone is not a character


@pytest.mark.parametrize("ch", list("^{}\\[~]|€"))
def test_extension_characters_cost_two_septets(ch: str) -> None:
    assert encoding(ch) == "GSM-7"
    assert units("a" + ch) == 3
    assert segments(ch * 80) == 1
    assert segments(ch * 81) == 2


def test_an_escape_pair_is_never_split_across_parts() -> None:
    # 306 septets would be two full parts by division, but the euro sign cannot straddle the boundary.
    straddling = "a" * 152 + "€" + "a" * 152
    assert units(straddling) == 306
    assert segments(straddling) == 3
    assert segments("a" * 151 + "€" + "a" * 153) == 2


def test_emoji_count_two_code_units() -> None:
    assert units("😀") == 2
    assert segments("😀" * 35) == 1
    assert segments("😀" * 35 + "a") == 2
    # 67 code units per part cannot hold a 34th pair: the 34th emoji opens the second part.
    assert segments("😀" * 67) == 3
    assert segments("😀" * 66) == 2


def test_fit_keeps_a_text_that_fits() -> None:
    assert fit("a" * 160, 1) == "a" * 160
    assert fit("ж" * 70, 1) == "ж" * 70
    assert fit("a" * 306, 2) == "a" * 306


def test_fit_shortens_gsm7_with_three_dots_and_stays_gsm7() -> None:
    shortened = fit("a" * 161, 1)
    assert shortened == "a" * 157 + "..."
    assert encoding(shortened) == "GSM-7"
    assert segments(shortened) == 1


def test_fit_shortens_unicode_with_the_ellipsis_character() -> None:
    shortened = fit("ж" * 71, 1)
    assert shortened == "ж" * 69 + "…"
    assert segments(shortened) == 1


def test_fit_does_not_split_an_emoji() -> None:
    shortened = fit("😀" * 40, 1)
    assert shortened == "😀" * 34 + "…"  # 68 code units + 1
    assert units(shortened) == 69


def test_fit_prefers_gsm7_when_the_unicode_lies_in_the_cut_tail() -> None:
    shortened = fit("a" * 200 + "😀", 1)
    assert shortened == "a" * 157 + "..."
    assert encoding(shortened) == "GSM-7"


@pytest.mark.parametrize("max_segments", [1, 2, 3, 5])
@pytest.mark.parametrize("text", ["word " * 200, "слово " * 200, "{x} " * 300, "hi 😀 " * 150])
def test_fit_respects_max_segments_and_uses_the_room(text: str, max_segments: int) -> None:
    shortened = fit(text, max_segments)
    assert segments(shortened) <= max_segments
    assert shortened.endswith("..." if encoding(text) == "GSM-7" else "…")
    assert text.startswith(shortened.rstrip(".…"))
    enc = encoding(shortened)
    room = sms_text.SINGLE_LIMIT[enc] if max_segments == 1 else sms_text.PART_LIMIT[enc] * max_segments
    # At most a trimmed space and, per part, one unit left over by a two-unit character.
    assert units(shortened) >= room - 1 - 2 * max_segments


def test_fit_trims_the_space_before_the_ellipsis() -> None:
    assert fit("a" * 156 + " bcdef", 1) == "a" * 156 + "..."


def test_fit_rejects_no_room() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        fit("x", 0)


def test_render_a_notification_and_a_digest() -> None:
    assert render({"text": "John and 2 others liked your post", "title": "t"}) == "John and 2 others liked your post"
    assert render({"text": "", "title": "Server down"}) == "Server down"
    assert render({"digest": {"count": 4, "items": []}}) == "You have 4 new notifications"
    assert render({"digest": {"count": 1, "items": [{}]}}) == "You have 1 new notification"
    assert render({"digest": {"items": [{}, {}]}}) == "You have 2 new notifications"


def test_tables_do_not_overlap() -> None:
    assert not (sms_text.GSM7_BASIC & sms_text.GSM7_EXTENSION)
    assert len(sms_text.GSM7_BASIC) == 127  # 128 code points less the escape
