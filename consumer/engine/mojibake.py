"""Text garbled on its way into a file, read as what it was: HTML character references ("&nbsp;") read, and
UTF-8 that was read as Windows-1252 ("mojibake") repaired where the bytes survive, compared only as a whole
where they do not (`repair`).

Why: files that went through one wrong decode are common (exports, scraped listings, old CRMs), and a later
step often lower-cases them and strips what looks like punctuation, which drops some of the bytes for good
("Björn" -> "BjÃ¶rn" -> "bjã rn"; Japanese becomes runs of "ã", "ƒ", "²" with every second byte gone). Read
as ordinary accented text such runs fold to a handful of short tokens ("ã²" -> "a2", "ãƒã" -> "afa") that
every garbled title shares, so two different garbled titles look like near-identical ones: in cddb (9,763
CDs, 412 titles garbled) 37 of the 122 false pairs were two garbled titles of different records. Repair
decodes each run whose bytes are whole ("mãºsicas" -> "músicas", "ultrasã³nica" -> "ultrasónica", whatever
the case); a stretch of words that still holds an undecodable run (a byte lost) becomes one opaque token
derived from its exact text, so it agrees with a copy of itself and with nothing else: what cannot be read
is evidence only by identity.

A run is a lead character (the bytes 0xC2-0xF4 as Latin-1, either case, since case folding moved them)
followed by continuation characters (the bytes 0x80-0xBF as Windows-1252, either case); in legitimate text
an accented letter is not followed by "³", "º", "ƒ" or "©", so text without such a run is returned unchanged.
"""

from __future__ import annotations

import hashlib
import html
import itertools
import re
from functools import lru_cache

__all__ = ["repair"]


def _char(byte: int) -> str:
    try:
        return bytes([byte]).decode("cp1252")
    except UnicodeDecodeError:  # 0x81, 0x8D, 0x8F, 0x90, 0x9D: no cp1252 character; Latin-1 reads a C1 control
        return bytes([byte]).decode("latin-1")


#: Character -> the byte it stands for (`_bytes_of` also tries the other case).
_BYTE: dict[str, int] = {_char(b): b for b in range(0x80, 0x100)}
_CONT = "".join(sorted({f for b in range(0x80, 0xC0) for f in (_char(b), _char(b).lower()) if len(f) == 1}))
_LEAD = "".join(sorted({f for b in range(0xC2, 0xF5) for f in (_char(b), _char(b).lower(), _char(b).upper())
                        if len(f) == 1} - set(_CONT)))
_RUN = re.compile(f"[{re.escape(_LEAD)}][{re.escape(_CONT)}]+")
#: A run that shows: its continuations include a visible one. An accented letter before a soft hyphen or a
#: no-break space (0xAD, 0xA0) is as often the writer's own text ("Ö\u00ad", inserted by a hyphenator) as the
#: mojibake of "í" or "à"; such runs are decoded only in a text that shows mojibake elsewhere.
_SHOWN = re.escape(_CONT.replace("\u00a0", "").replace("\u00ad", ""))
_SEEN = re.compile(f"[{re.escape(_LEAD)}][\u00a0\u00ad]*[{_SHOWN}]")
#: The two leads of nearly all Latin-script mojibake ("Ã" for U+00C0-U+00FF, "Â" for U+00A0-U+00BF and,
#: lower-cased, the lead of CJK and punctuation): alone in a garbled text they are a run whose byte was lost.
_LONE = re.compile("[ãâÃÂ]")
_LETTERS = "abcdefghijklmnop"
#: An HTML character reference, semicolon included (`html.unescape` alone also reads "&copy" without one).
_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,30});")


def _bytes_of(c: str, want_cont: bool) -> list[int]:
    """The bytes `c` may have stood for: as written, and in the other case (lower-casing moved the leads)."""
    out = []
    for form in (c, c.upper(), c.lower()):
        b = _BYTE.get(form) if len(form) == 1 else None
        if b is not None and (0x80 <= b <= 0xBF) == want_cont and b not in out:
            out.append(b)
    return out


def _decode(run: str) -> str | None:
    """One run (`_RUN`) decoded, or None when no reading of it is whole UTF-8 (a byte lost). Each character
    may stand for its byte as written or in the other case ("š" was "Š", 0x8A, before lower-casing)."""
    conts = [_bytes_of(c, True) for c in run[1:]]
    for lead in _bytes_of(run[0], False):
        if (1 if lead < 0xE0 else 2 if lead < 0xF0 else 3) != len(conts):
            continue
        for tail in itertools.product(*conts):
            try:
                return bytes([lead, *tail]).decode("utf-8")
            except UnicodeDecodeError:
                continue
    return None


def _opaque(stretch: str) -> str:
    """A token of letters only (no digits: never read as a product code) that only this exact text gives."""
    digest = hashlib.blake2b(stretch.lower().encode("utf-8"), digest_size=5).digest()
    return "q" + "".join(_LETTERS[b >> 4] + _LETTERS[b & 15] for b in digest)


def _fixed(word: str) -> str | None:
    """`word` with its runs decoded, or None when one is not whole or a lead stands alone (a byte lost)."""
    broken = False

    def fix(m: re.Match[str]) -> str:
        nonlocal broken
        got = _decode(m.group(0))
        broken = broken or got is None
        return got or ""

    out = _RUN.sub(fix, word)
    return None if broken or _LONE.search(out) else out


def repair(text: str) -> str:
    """`text` with its HTML character references read ("&nbsp;", "&rsquo;", "&amp;", "&#233;"), its mojibake
    decoded, and each stretch of words that cannot be decoded as one opaque token (module docstring); text
    with neither is returned as it is.

    Why the references: scraped listings carry them ("lights!&nbsp; camera!", "it&rsquo;s"), and read as text
    they become words ("nbsp", "rsquo", "amp") that two copies share or not depending on the shop's export,
    not on the product. Only a complete reference with its semicolon is read: "AT&T" and "R&D" stay."""
    if "&" in text and _ENTITY.search(text):
        text = _ENTITY.sub(lambda m: html.unescape(m.group(0)), text)
    return text if text.isascii() or not _SEEN.search(text) else _repair(text)


@lru_cache(maxsize=1 << 12)
def _repair(text: str) -> str:
    words = text.split(" ")
    fixed = [_fixed(w) for w in words]
    out: list[str] = []
    stretch: list[str] = []
    for word, got in zip(words, fixed):
        if got is None:
            stretch.append(word)
            continue
        if stretch:
            out.append(_opaque(" ".join(stretch)))
            stretch = []
        out.append(got)
    if stretch:
        out.append(_opaque(" ".join(stretch)))
    return " ".join(out)
