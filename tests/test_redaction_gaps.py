"""Secret shapes the redactor once let through, each next to look-alikes that must stay as they are.

Short ``Bearer`` tokens in free text; AWS access key ids; ``password: x`` and ``password = x`` in prose;
JSON keys spelt with ``\\u`` escapes; more header and cookie names; URLs with JSON-escaped slashes; URL
passwords longer than 256 characters; card numbers grouped with dots; short JSON Web Tokens.
"""

from __future__ import annotations

from activity_audit.redaction import MASK, Redactor

M = MASK


def scrub(text: str) -> str:
    """``text`` as the default redactor writes it."""
    return Redactor().scrub_text(text) or text


def assert_scrubbed(cases: list[tuple[str, str]]) -> None:
    """Every ``(text, written)`` of ``cases`` is written so; the wrong ones are listed at once."""
    wrong = [(text, scrub(text), want) for text, want in cases if scrub(text) != want]
    assert wrong == []


def assert_kept(texts: list[str]) -> None:
    """Every text of ``texts`` is written unchanged."""
    assert [text for text in texts if Redactor().scrub_text(text) is not None] == []


# --- 1. short Bearer tokens --------------------------------------------------------------------------------


def test_a_short_bearer_token_in_a_header_line_was_masked_already() -> None:
    assert_scrubbed(
        [
            ("Authorization: Bearer abcdefgh", f"Authorization: Bearer {M}"),
            ("sent Authorization: Bearer abcdefgh", f"sent Authorization: Bearer {M}"),
            (
                "curl -H 'Authorization: Bearer abcdefgh' https://x",
                f"curl -H 'Authorization: Bearer {M}' https://x",
            ),
        ]
    )


def test_a_short_bearer_token_in_free_text_is_masked() -> None:
    assert_scrubbed(
        [
            ("retrying with Bearer abcdefgh", f"retrying with Bearer {M}"),
            ("bearer abcdefgh rejected", f"bearer {M} rejected"),
            ("BEARER ABCDEFGH", f"BEARER {M}"),
            ('{"note": "sent Bearer abcdefgh"}', f'{{"note": "sent Bearer {M}"}}'),
            ("auth=Bearer abcdefghijklmnopq", f"auth={M} {M}"),  # the token leaked after "auth=Bearer"
            ("Basic dXNlcjpwYXNz was sent", f"Basic {M} was sent"),
        ]
    )


def test_words_after_bearer_and_basic_in_prose_stay() -> None:
    assert_kept(
        [
            "Bearer authentication failed",
            "use Bearer authorization for this API",
            "Bearer credentials required",
            "bearer tokens expire after an hour",
            "the bearer of bad news",
            "Basic information about the account",
            "basic functionality is available",
            "Digest algorithm mismatch",
            "Bearer abc rejected",
            "Basic Authentication",
        ]
    )
