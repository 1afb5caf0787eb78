"""Redaction time on hostile text: it must grow in proportion to the text, never faster.

    python benchmarks/redaction_worst_case.py

A client controls request bodies, headers and query strings, and every one of them goes through the
redactor on the audit worker. Text built to make a pattern rescan what it already read (nested brackets
after a key, ``://user:`` repeated without ``@``, endless ``key=value`` pairs ...) would make a quadratic
pattern take seconds per record and stall the worker for every other record. For each shape the script
times ``Redactor.scrub_text`` on 10 KB and on 100 KB of it (medians of 5) and prints the ratio: about 10
means linear; 100 would mean quadratic. Verdict: every ratio at most 20.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from activity_audit.redaction import Redactor

# Each shape repeats a unit that opens something a pattern may try to close further on.
SHAPES = {
    "nested lists after a key": '{"a":[',
    "nested lists after a sensitive key": '{"token":[',
    "nested objects, closed at the end": '{"a":',
    "scheme://user: without @": "://a:",
    "key=value pairs": "a=1&",
    '"key": "value" pairs': '"a": "b", ',
    "database error detail": "Key (a",
    "xml elements": "<a>",
    "xml attributes": 'x="',
    "card-like digit groups": "4111 ",
    "card-like digit groups with dots": "4111.",
    "dotted numbers of 3 to 6 digits": "411111.1",
    "jwt-like text": "eyJhbGciOi.",
    "jwt-like runs of eyJ and dashes": "eyJ-",
    "short jwt-like parts": "eyJabcd.eyJa",
    "digest parameters, unclosed": 'Digest nonce=x, realm="',
    "digest parameters without value": "Digest realm ",
    "vendor token prefixes, too short": "ghp_abc1 sk_live_x xoxb-1-",
    "vendor token prefixes in one run": "sk-1glpat-AIzaSG.",
    "webhook URL prefixes": "hooks.slack.com/services/a.",
    "scheme://user:pass'word without @": "://a:p'w",
    "scheme://token-like user without @": "://a1b2c3d4e5f6g7h8i9",
    "scheme:\\/\\/user: (escaped) without @": ":\\/\\/a:",
    "scheme://user:password@, passwords over 256": "://a:" + "p" * 300 + "@",
    "scheme://user:, @ and / in one stretch": "://a:b@c/",
    '\\"key\\": \\"value\\" pairs (escaped JSON)': '\\"a\\": \\"b\\", ',
    "escaped JSON lists after a sensitive key": '{\\"token\\":[\\"',
    "header lines": "X-Api-Key: a\nb-c-d:",
    "percent escapes": "%41%3D",
    "percent-encoded pairs": "a%3D1%26token%3D",
    "nested key=value in values": "?a=",
    "scheme words before letters": "Bearer abcdefghij Basic ",
    "aws key id prefixes, one character short": "AKIA0123456789ABCDE ASIA",
    "names and colons in prose": "password: x secret:\t",
    "spaced key = value": "a = b\t=  ",
    "long names before colons": "a_b.c-d" * 20 + ": ",
    "quoted keys with escapes, unclosed": '"\\u0061\\u0062: ',
    "escaped quoted keys with escapes": '\\"\\\\u0061:',
}
# Shapes that a pattern looks at only when the text also holds an "@".
NEEDS_AT = {
    "scheme://user: without @",
    "scheme://user:pass'word without @",
    "scheme://token-like user without @",
    "scheme:\\/\\/user: (escaped) without @",
}


def seconds(text: str, redactor: Redactor) -> float:
    times = []
    for _ in range(5):
        start = time.perf_counter()
        redactor.scrub_text(text)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    redactor = Redactor()
    worst = 0.0
    print(f"{'shape':<44} {'10 KB ms':>9} {'100 KB ms':>10} {'ratio':>7}")
    for name, unit in SHAPES.items():
        small = (unit * (10_000 // len(unit) + 1))[:10_000]
        large = (unit * (100_000 // len(unit) + 1))[:100_000]
        if name in NEEDS_AT:
            small, large = "@ " + small, "@ " + large  # an @ somewhere, so the pattern is tried at all
        t_small, t_large = seconds(small, redactor), seconds(large, redactor)
        ratio = t_large / t_small if t_small > 0 else 0.0
        worst = max(worst, ratio)
        print(f"{name:<44} {t_small * 1e3:>9.2f} {t_large * 1e3:>10.2f} {ratio:>7.1f}")
    verdict = "PASS" if worst <= 20 else "MISS"
    print(f"\nworst ratio 100 KB / 10 KB: {worst:.1f}  (linear: about 10; target <= 20)  {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
