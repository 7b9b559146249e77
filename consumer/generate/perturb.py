"""Field-level variation for synthetic CRM records: names, cities, device spellings, login times.

Every function takes an explicit ``random.Random`` so generation stays byte-reproducible per seed.
The alias and nickname tables live here on purpose: the matcher keeps its own tables, so a
generated benchmark does not reward a matcher for knowing exactly the generator's quirks.

Why this module is long (~410 lines): most of it is the alias, nickname and spelling tables the noise is
drawn from; the functions that use them are short.
"""

from __future__ import annotations

import math
import random
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import accumulate

# QWERTY neighbours: most real typos hit an adjacent key, so substitutions are drawn from here.
_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
KEYBOARD: dict[str, str] = {}
for _r, _row in enumerate(_ROWS):
    for _c, _ch in enumerate(_row):
        _near = [_row[j] for j in (_c - 1, _c + 1) if 0 <= j < len(_row)]
        for _other in (_r - 1, _r + 1):
            if 0 <= _other < len(_ROWS):
                _near += [_ROWS[_other][j] for j in (_c - 1, _c) if 0 <= j < len(_ROWS[_other])]
        KEYBOARD[_ch] = "".join(_near)

# Formal given name -> informal forms. Reverse lookups (nickname in the original, formal form in
# the duplicate) are derived below, so each pair is useful in both directions.
NICKNAMES: dict[str, tuple[str, ...]] = {
    "Robert": ("Bob", "Rob", "Bobby", "Robbie"), "William": ("Bill", "Will", "Billy", "Liam"),
    "Elizabeth": ("Liz", "Beth", "Betsy", "Lizzie"), "Katherine": ("Kate", "Katie", "Kathy"),
    "Catherine": ("Cathy", "Cat", "Kate"), "Margaret": ("Maggie", "Peggy", "Meg"),
    "Richard": ("Rick", "Dick", "Rich", "Ricky"), "James": ("Jim", "Jimmy", "Jamie"),
    "John": ("Johnny", "Jack"), "Jonathan": ("Jon", "Jonny"), "José": ("Pepe",),
    "Alexander": ("Alex", "Sasha", "Xander"), "Alexandra": ("Alex", "Sasha", "Lexi"),
    "Michael": ("Mike", "Mikey", "Mick"), "Christopher": ("Chris", "Topher"),
    "Christine": ("Chris", "Tina"), "Christina": ("Tina", "Chrissy"), "Joseph": ("Joe", "Joey"),
    "Thomas": ("Tom", "Tommy"), "Charles": ("Charlie", "Chuck"), "Daniel": ("Dan", "Danny"),
    "Matthew": ("Matt",), "Anthony": ("Tony",), "Andrew": ("Andy", "Drew"), "Benjamin": ("Ben", "Benny"),
    "Samuel": ("Sam", "Sammy"), "Samantha": ("Sam", "Sammy"), "Nicholas": ("Nick", "Nicky"),
    "Patricia": ("Pat", "Patty", "Trish"), "Patrick": ("Pat", "Paddy"), "Jennifer": ("Jen", "Jenny"),
    "Jessica": ("Jess", "Jessie"), "Rebecca": ("Becky", "Becca"), "Deborah": ("Deb", "Debbie"),
    "Susan": ("Sue", "Susie"), "Barbara": ("Barb", "Babs"), "Victoria": ("Vicky", "Tori"),
    "Edward": ("Ed", "Eddie", "Ted", "Ned"), "Theodore": ("Ted", "Teddy", "Theo"), "Steven": ("Steve",),
    "Stephen": ("Steve",), "Timothy": ("Tim", "Timmy"), "Gregory": ("Greg",), "Jeffrey": ("Jeff",),
    "Kenneth": ("Ken", "Kenny"), "Ronald": ("Ron", "Ronnie"), "Donald": ("Don", "Donnie"),
    "Raymond": ("Ray",), "Lawrence": ("Larry",), "Gerald": ("Gerry", "Jerry"), "Jacqueline": ("Jackie",),
    "Dorothy": ("Dot", "Dottie"), "Abigail": ("Abby",), "Jacob": ("Jake",), "Zachary": ("Zach",),
    "Francisco": ("Paco", "Pancho", "Fran"), "Francesco": ("Franco", "Cesco"), "Giuseppe": ("Beppe", "Peppe"),
    "Giovanni": ("Gianni",), "Antonio": ("Toni", "Toño"), "Manuel": ("Manolo", "Manu"),
    "Jesús": ("Chucho", "Chuy"), "Guillermo": ("Memo", "Guille"), "Alejandro": ("Álex", "Alejo"),
    "Dolores": ("Lola",), "Johannes": ("Hans", "Jo"), "Friedrich": ("Fritz",), "Elisabeth": ("Lisa", "Elli"),
    "Katharina": ("Kathi", "Katja"), "Maximilian": ("Max",), "Stefanie": ("Steffi",),
    "Eduardo": ("Edu", "Dudu"), "Fernando": ("Nando",), "Roberto": ("Beto",), "Alberto": ("Beto",),
    "Nicolas": ("Nico",), "Cornelis": ("Kees",), "Johanna": ("Hanna",), "Frederick": ("Fred", "Freddie"),
    "Walter": ("Walt", "Wally"), "Leonard": ("Leo", "Len", "Lenny"), "Harold": ("Harry", "Hal"),
}


def _fold(text: str) -> str:
    """Lower-case and strip accents, so nickname lookups do not depend on how a name was typed."""
    return "".join(c for c in unicodedata.normalize("NFKD", text.lower()) if not unicodedata.combining(c))


_NICK_OF: dict[str, tuple[str, ...]] = {_fold(k): v for k, v in NICKNAMES.items()}
_FORMAL_OF: dict[str, list[str]] = {}
for _formal, _nicks in NICKNAMES.items():
    for _n in _nicks:
        _FORMAL_OF.setdefault(_fold(_n), []).append(_formal)

# Plain -> accented spellings: lets a duplicate gain accents the original lacked (not only lose them).
ACCENT_ADD: dict[str, str] = {
    "Jose": "José", "Rene": "René", "Andre": "André", "Zoe": "Zoë", "Muller": "Müller", "Garcia": "García",
    "Lopez": "López", "Martinez": "Martínez", "Gonzalez": "González", "Hernandez": "Hernández",
    "Perez": "Pérez", "Rodriguez": "Rodríguez", "Sanchez": "Sánchez", "Ramirez": "Ramírez",
    "Gomez": "Gómez", "Jesus": "Jesús", "Ines": "Inês", "Joao": "João", "Francois": "François",
    "Helene": "Hélène", "Noel": "Noël", "Bjorn": "Björn", "Jurgen": "Jürgen", "Schroder": "Schröder",
    "Chloe": "Chloé", "Raphael": "Raphaël", "Simon": "Simón", "Ruben": "Rubén", "Lucia": "Lucía",
}
_GERMAN = {"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue"}
_VOWELS = "aeiou"
_ABBREV = [("Saint", ("St.", "St")), ("Sainte", ("Ste.", "Ste")), ("Fort", ("Ft.", "Ft")),
           ("Mount", ("Mt.", "Mt")), ("North", ("N.",)), ("South", ("S.",)), ("East", ("E.",)),
           ("West", ("W.",)), ("Port", ("Pt.",)), ("San", ("S.",))]


def strip_accents(text: str, german: bool = False) -> str:
    """Drop diacritics (Müller -> Muller) or transliterate German-style (Müller -> Mueller)."""
    if german:
        text = "".join(_GERMAN.get(c, c) for c in text)
    text = text.replace("ß", "ss")
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def typo(word: str, rng: random.Random) -> str:
    """One keyboard-plausible edit: neighbour substitution, deletion, insertion or transposition."""
    if len(word) < 2:
        return word
    i = rng.randrange(len(word))
    kind = rng.choices(("sub", "del", "ins", "swap"), (0.35, 0.25, 0.2, 0.2))[0]
    ch = word[i]
    near = KEYBOARD.get(ch.lower(), "")
    if kind == "sub" and near:
        new = rng.choice(near)
        return word[:i] + (new.upper() if ch.isupper() else new) + word[i + 1:]
    if kind == "del" and len(word) > 3:
        return word[:i] + word[i + 1:]
    if kind == "swap" and i < len(word) - 1 and word[i] != word[i + 1]:
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    extra = rng.choice(near) if near and rng.random() < 0.6 else ch.lower()
    return word[:i + 1] + extra + word[i + 1:]


def vowel_swap(word: str, rng: random.Random) -> str:
    """Replace one inner vowel with another (Ricardo -> Ricerdo): a phonetic-ish misspelling."""
    spots = [i for i, c in enumerate(word) if i > 0 and c.lower() in _VOWELS]
    if not spots:
        return word
    i = rng.choice(spots)
    new = rng.choice([v for v in _VOWELS if v != word[i].lower()])
    return word[:i] + (new.upper() if word[i].isupper() else new) + word[i + 1:]


def nickname_of(given: str, rng: random.Random) -> str | None:
    """Informal form of a formal given name, or the formal form of a nickname; None when unknown."""
    key = _fold(given)
    if key in _NICK_OF:
        return rng.choice(_NICK_OF[key])
    if key in _FORMAL_OF:
        return rng.choice(_FORMAL_OF[key])
    return None


@dataclass
class NameParts:
    """A person's true name; each account renders it its own way."""

    given: str
    surname: str
    middle: str = ""
    title: str = ""
    suffix: str = ""
    female: bool = False


@dataclass
class NameStyle:
    """How a person habitually writes their name: the baseline that every account starts from."""

    use_nick: bool = False
    nick: str = ""  # the person's own informal/formal alternative, "" when none is known
    middle: str = "full"  # full | initial | hidden
    show_title: bool = True
    show_suffix: bool = True
    case: str = ""  # "", "lower" or "upper": some people always type their name that way


# Base probabilities per duplicate account (before the per-account sloppiness factor).
NAME_RATES: dict[str, float] = {
    "typo": 0.22, "nickname": 0.22, "initials": 0.08, "order": 0.06, "case": 0.11, "accents": 0.35,
    "middle": 0.25, "title": 0.10, "vowel": 0.06, "surname_part": 0.4, "spacing": 0.04,
}
CITY_RATES: dict[str, float] = {"alias": 0.35, "typo": 0.08, "abbrev": 0.35, "case": 0.08, "qualifier": 0.04}


def _hit(rates: dict[str, float], op: str, scale: float, rng: random.Random) -> bool:
    return rng.random() < min(0.95, rates[op] * scale)


_MALE_TITLES = frozenset({"Mr.", "Herr", "M.", "Sr.", "Sig.", "Dhr.", "Shri"})
_FEMALE_TITLES = frozenset({"Mrs.", "Ms.", "Miss", "Frau", "Mme", "Sra.", "Sig.ra", "Mevr."})


def titles_for(pool: tuple[str, ...], female: bool) -> list[str]:
    """Titles from ``pool`` that fit the person's gender (a duplicate never turns Mr. into Mrs.)."""
    wrong = _MALE_TITLES if female else _FEMALE_TITLES
    return [t for t in pool if t not in wrong] or ["Dr."]


def _surname_variant(surname: str, rng: random.Random) -> str:
    """Partial or re-joined compound surname: García López -> García, van der Berg -> Van der Berg."""
    parts = re.split(r"[ -]", surname)
    if parts[0][:1].islower():  # nobiliary/Dutch particles: van, de, von, da, di
        particles, core = [x for x in parts if x[:1].islower()], [x for x in parts if not x[:1].islower()]
        return rng.choice((" ".join(core), " ".join(x.capitalize() for x in particles + core),
                           "".join(particles) + "".join(core), " ".join(particles + core).title()))
    roll = rng.random()
    if roll < 0.6:
        return parts[0]
    return parts[-1] if roll < 0.75 else ("-" if " " in surname else " ").join(parts)


def render_name(p: NameParts, style: NameStyle, rng: random.Random, scale: float,
                title_pool: tuple[str, ...] = ("Mr.", "Ms.", "Dr.")) -> tuple[str, list[str]]:
    """Write ``p`` as one account would, applying each perturbation with probability rate*scale.

    ``scale`` is small for original accounts (mild noise) and around 1 for duplicates; the list of
    applied operations is returned so the generator can report how hard its duplicates are.
    """
    ops: list[str] = []
    given, surname, middle = p.given, p.surname, p.middle
    use_nick, mid_mode = style.use_nick, style.middle if p.middle else "hidden"
    show_title, show_suffix = style.show_title and bool(p.title), style.show_suffix and bool(p.suffix)
    title, suffix = p.title, p.suffix
    if style.nick and _hit(NAME_RATES, "nickname", scale, rng):
        use_nick = not use_nick
        ops.append("nickname")
    if use_nick and style.nick:
        given = style.nick if rng.random() < 0.8 else (nickname_of(given, rng) or style.nick)
    if p.middle and _hit(NAME_RATES, "middle", scale, rng):
        mid_mode = rng.choice([m for m in ("full", "initial", "hidden") if m != mid_mode])
        ops.append("middle")
    if _hit(NAME_RATES, "title", scale, rng):
        ops.append("title")
        if p.title:
            show_title = not show_title
        elif p.suffix:
            show_suffix = not show_suffix
        elif rng.random() < 0.8 or p.female:
            plain = "Ms." if p.female else "Mr."
            title = plain if rng.random() < 0.7 else rng.choice(titles_for(title_pool, p.female))
            show_title = True
        else:
            suffix, show_suffix = rng.choice(("Jr.", "Sr.", "II")), True
    if (" " in surname or "-" in surname) and _hit(NAME_RATES, "surname_part", scale, rng):
        surname = _surname_variant(surname, rng)
        ops.append("surname_part")
    if _hit(NAME_RATES, "accents", scale, rng):
        before = given + surname
        if any(ord(c) > 127 for c in before):
            german = rng.random() < 0.5
            given, surname = strip_accents(given, german), strip_accents(surname, german)
        else:
            given, surname = ACCENT_ADD.get(given, given), ACCENT_ADD.get(surname, surname)
        if before != given + surname:
            ops.append("accents")
    for op, fn in (("typo", typo), ("vowel", vowel_swap)):
        if _hit(NAME_RATES, op, scale, rng):
            edits = 2 if op == "typo" and rng.random() < 0.25 else 1
            for _ in range(edits):
                if rng.random() < 0.45:
                    given = fn(given, rng)
                else:
                    surname = fn(surname, rng)
            ops.append(op)
    mid = {"full": middle, "initial": middle[:1] + ".", "hidden": ""}[mid_mode] if middle else ""
    first = given
    if _hit(NAME_RATES, "initials", scale, rng):
        ops.append("initials")
        roll = rng.random()
        if roll < 0.4:
            first = given[:1] + "."
        elif roll < 0.6:
            first = given[:1]
        elif roll < 0.8 and middle:
            mid = middle[:1] + "."
        else:
            first, mid = given[:1] + ".", (middle[:1] + ".") if middle else ""
    head = " ".join(x for x in (first, mid) if x)
    if _hit(NAME_RATES, "order", scale, rng):
        ops.append("order")
        sep = rng.choice((", ", " ", ", "))
        body = surname + sep + head if rng.random() < 0.8 else surname.upper() + " " + head
    else:
        body = head + " " + surname
    out = " ".join(x for x in (title if show_title else "", body, suffix if show_suffix else "") if x)
    case = style.case
    if _hit(NAME_RATES, "case", scale, rng):
        case = rng.choice([c for c in ("", "lower", "lower", "upper", "title") if c != style.case])
        ops.append("case")
    out = {"lower": out.lower(), "upper": out.upper(), "title": out.title()}.get(case, out)
    if _hit(NAME_RATES, "spacing", scale, rng):
        out = rng.choice((out + " ", " " + out, out.replace(" ", "  ", 1), out.replace("'", "")))
        ops.append("spacing")
    return out, ops


def abbreviate(city: str, rng: random.Random) -> str:
    """Swap Saint/St., Fort/Ft., Mount/Mt., North/N. ... in either direction; unchanged if none apply."""
    options: list[tuple[str, str]] = []
    for full, shorts in _ABBREV:
        if re.search(rf"\b{full}\b", city):
            options += [(rf"\b{full}\b", s) for s in shorts]
        for s in shorts:
            if re.search(rf"(?<!\w){re.escape(s)}(?=[\s-])", city):
                options.append((rf"(?<!\w){re.escape(s)}(?=[\s-])", full))
    if not options:
        return city
    pattern, repl = rng.choice(options)
    out = re.sub(pattern, repl, city, count=1)
    return out.replace("-", " ") if rng.random() < 0.3 else out


def render_city(city: str, aliases: tuple[str, ...], state: str, rng: random.Random,
                scale: float) -> tuple[str, list[str]]:
    """Write a city as one account would: alias swap, abbreviation, typo, case, state qualifier."""
    ops: list[str] = []
    out = city
    if aliases and _hit(CITY_RATES, "alias", scale, rng):
        out = rng.choice([a for a in aliases if a != city] or [city])
        ops.append("alias")
    if _hit(CITY_RATES, "abbrev", scale, rng):
        new = abbreviate(out, rng)
        if new != out:
            out = new
            ops.append("abbrev")
    if state and _hit(CITY_RATES, "qualifier", scale, rng):
        out = out + rng.choice((", ", " ", ", ")) + state
        ops.append("qualifier")
    if _hit(CITY_RATES, "typo", scale, rng):
        words = out.split(" ")
        k = max(range(len(words)), key=lambda j: len(words[j]))
        words[k] = typo(words[k], rng)
        out = " ".join(words)
        ops.append("typo")
    if _hit(CITY_RATES, "case", scale, rng):
        out = out.lower() if rng.random() < 0.6 else out.upper()
        ops.append("case")
    return out, ops


# Alternate spellings of canonical device values, as different tracking SDKs and CRMs write them.
OS_SPELLINGS: dict[str, tuple[str, ...]] = {
    "Windows": ("Win10", "Windows 10", "Windows 11", "windows", "Win32", "Microsoft Windows"),
    "macOS": ("Mac OS X", "MacOS", "OS X", "Mac", "macos", "Macintosh"),
    "Linux": ("linux", "Ubuntu", "GNU/Linux", "Linux x86_64"),
    "iOS": ("iPhone OS", "ios", "iOS 17", "iPadOS", "iPhone"),
    "Android": ("android", "Android 14", "Android 13", "Android OS"),
    "ChromeOS": ("Chrome OS", "CrOS", "chromeos", "Chromebook"),
}
BROWSER_SPELLINGS: dict[str, tuple[str, ...]] = {
    "Chrome": ("chrome", "Google Chrome", "Chrome Mobile", "CHROME"),
    "Firefox": ("Mozilla Firefox", "firefox", "Firefox Mobile", "FF"),
    "Safari": ("Mobile Safari", "safari", "Apple Safari"),
    "Edge": ("Microsoft Edge", "MS Edge", "edge", "Edge Chromium"),
    "Opera": ("opera", "Opera GX", "Opera Mobile"),
    "Samsung Internet": ("SamsungBrowser", "Samsung Browser", "samsung internet"),
    "Brave": ("brave", "Brave Browser"),
}


def spell(value: str, table: dict[str, tuple[str, ...]], rng: random.Random, p: float,
          mobile: bool = True) -> str:
    """With probability ``p`` write a device value in a non-canonical spelling (Mobile ones on phones)."""
    if value in table and rng.random() < p:
        return rng.choice([v for v in table[value] if mobile or "Mobile" not in v] or [value])
    return value


# Where people's login peaks sit (local hour, spread, weight): crowded slots make behaviour weak evidence.
PEAK_SLOTS = ((8.5, 1.0, 0.30), (12.5, 0.7, 0.12), (20.5, 1.2, 0.38), (23.5, 1.0, 0.08), (-1.0, 0.0, 0.12))
EPOCH = datetime(2024, 1, 1)
DAYS = 731  # 2024-01-01 .. 2025-12-31


@dataclass
class Habit:
    """A person's login rhythm; every account samples fresh timestamps from it (never copies)."""

    peaks: list[tuple[float, float, float]]  # (local hour, sd hours, weight)
    weekend: float  # >1 prefers weekends, <1 weekdays
    rate: float  # logins per day while an account is active
    tz_min: int  # minutes east of UTC
    noise: float  # share of logins at a random hour


def new_habit(rng: random.Random, tz_min: int) -> Habit:
    """Draw a login rhythm from crowded slots (morning, lunch, evening), so habits overlap across people."""
    peaks = []
    for _ in range(1 if rng.random() < 0.6 else 2):
        centre, spread, _w = rng.choices(PEAK_SLOTS, [s[2] for s in PEAK_SLOTS])[0]
        hour = rng.uniform(0, 24) if centre < 0 else rng.gauss(centre, spread)
        peaks.append((hour % 24, rng.uniform(0.7, 2.5), rng.uniform(0.3, 1.0)))
    weekend = rng.choices((0.45, 1.0, 2.2), (0.35, 0.45, 0.2))[0] * rng.lognormvariate(0, 0.25)
    return Habit(peaks, weekend, rng.lognormvariate(math.log(0.1), 1.0), tz_min, rng.uniform(0.0, 0.15))


def login_times(h: Habit, rng: random.Random) -> list[str]:
    """Fresh timestamps for one account: 2-25 (median ~6) logins inside the account's own window."""
    n = min(25, max(2, round(rng.lognormvariate(math.log(6), 0.65))))
    span = min(DAYS - 6, max(3.0, n / (h.rate * rng.lognormvariate(0, 0.3)) * rng.uniform(0.7, 1.4)))
    start = rng.uniform(2, DAYS - 3 - span)
    peaks = [(hr + rng.gauss(0, 0.4), sd, w) for hr, sd, w in h.peaks]
    if len(peaks) > 1 and rng.random() < 0.15:
        peaks = [rng.choice(peaks)]
    cum = list(accumulate(w for _h, _s, w in peaks))
    seconds = rng.random() < 0.2  # some sources log whole minutes, others seconds
    out: set[str] = set()
    day = 0
    for i in range(4 * n):
        if len(out) == n:
            break
        if not i or rng.random() >= 0.2:  # else: another session on a day already used
            for _ in range(12):
                day = int(start + rng.random() * span)
                weekend = (EPOCH.weekday() + day) % 7 >= 5
                if rng.random() < (min(1.0, h.weekend) if weekend else min(1.0, 1 / h.weekend)):
                    break
        if rng.random() < h.noise:
            hour = rng.uniform(0, 24)
        else:
            hr, sd, _w = rng.choices(peaks, cum_weights=cum)[0]
            hour = rng.gauss(hr, sd) % 24
        minute = day * 1440 + int(hour * 60) - h.tz_min
        out.add((EPOCH + timedelta(minutes=minute, seconds=rng.randrange(60) if seconds else 0)).isoformat())
    return sorted(out)
