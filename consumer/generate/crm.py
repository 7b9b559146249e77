"""Synthetic CRM signups with duplicate accounts and ground truth.

Quality is also measured on held-out data from another generator, so variation here is drawn
from many independent, overlapping sources (namesakes, households, shared devices, similar login
habits) rather than a fixed set of quirks a matcher could learn. Nothing from the rest of
``consumer`` is imported: the matcher must not share lookup tables with its benchmark.

Why this module is long (~430 lines): it is one generative story (people, households, namesakes, accounts,
devices, login habits) whose rates are tuned against each other; its field-level noise already lives apart
(`perturb`), and the rest is read as a whole when the difficulty of the data is questioned.
"""

from __future__ import annotations

import csv
import json
import random
import uuid
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

from faker import Faker

from consumer.generate.perturb import (
    BROWSER_SPELLINGS,
    OS_SPELLINGS,
    Habit,
    NameParts,
    NameStyle,
    login_times,
    new_habit,
    nickname_of,
    render_city,
    render_name,
    spell,
    titles_for,
)
from consumer.generate.variants import VARIANTS, Variant

T = TypeVar("T")
HEADER = ("customer_id", "name", "city", "browser", "os", "login_times")

# locale: (weight, country, P(double surname), P(middle name), titles)
LOCALES: dict[str, tuple[float, str, float, float, tuple[str, ...]]] = {
    "en_US": (0.52, "US", 0.01, 0.30, ("Dr.", "Mr.", "Mrs.", "Ms.", "Prof.")),
    "en_GB": (0.08, "GB", 0.03, 0.20, ("Dr.", "Mr.", "Mrs.", "Ms.", "Miss")),
    "en_IE": (0.03, "IE", 0.01, 0.15, ("Dr.", "Mr.", "Mrs.", "Ms.")),
    "de_DE": (0.07, "DE", 0.04, 0.10, ("Dr.", "Prof. Dr.", "Herr", "Frau")),
    "de_AT": (0.02, "AT", 0.04, 0.10, ("Dr.", "Mag.", "Dipl.-Ing.")),
    "fr_FR": (0.05, "FR", 0.02, 0.08, ("M.", "Mme", "Dr")),
    "es_ES": (0.05, "ES", 0.55, 0.08, ("Sr.", "Sra.", "Dr.")),
    "es_MX": (0.03, "MX", 0.45, 0.10, ("Sr.", "Sra.", "Lic.", "Ing.")),
    "it_IT": (0.04, "IT", 0.01, 0.06, ("Dott.", "Sig.", "Sig.ra", "Ing.")),
    "pt_BR": (0.05, "BR", 0.30, 0.05, ("Sr.", "Sra.", "Dr.")),
    "pt_PT": (0.01, "PT", 0.30, 0.05, ("Sr.", "Sra.", "Dr.")),
    "nl_NL": (0.03, "NL", 0.01, 0.08, ("Dhr.", "Mevr.", "Dr.")),
    "en_IN": (0.02, "IN", 0.01, 0.10, ("Mr.", "Mrs.", "Dr.", "Shri")),
}
SUFFIXES = (("Jr.", 0.35), ("Sr.", 0.12), ("II", 0.08), ("III", 0.12), ("MD", 0.12), ("PhD", 0.12),
            ("DDS", 0.05), ("Esq.", 0.04))

# Real cities, most populous first, with spellings seen in CRM exports. US entries carry a state.
CITIES: dict[str, list[str]] = {
    "US": ["New York/NY|NYC|New York City|NY", "Los Angeles/CA|LA|L.A.", "Chicago/IL|Chi-Town",
           "Houston/TX", "Phoenix/AZ", "Philadelphia/PA|Philly", "San Antonio/TX", "San Diego/CA",
           "Dallas/TX", "Austin/TX", "San Francisco/CA|SF|San Fran",
           "Washington/DC|Washington DC|DC|Washington D.C.",
           "Boston/MA", "Seattle/WA", "Denver/CO", "Atlanta/GA", "Miami/FL", "Las Vegas/NV|Vegas",
           "Fort Worth/TX|Ft. Worth|Ft Worth", "Saint Louis/MO|St. Louis|St Louis", "Portland/OR",
           "New Orleans/LA|NOLA", "Indianapolis/IN|Indy", "Salt Lake City/UT|SLC", "Kansas City/MO|KC",
           "Saint Paul/MN|St. Paul|St Paul", "Mount Vernon/NY|Mt Vernon|Mt. Vernon", "Springfield/IL",
           "Springfield/MO", "Fort Lauderdale/FL|Ft. Lauderdale", "Oklahoma City/OK|OKC", "Nashville/TN",
           "Saint Petersburg/FL|St. Petersburg|St Pete", "Minneapolis/MN", "Detroit/MI", "Columbus/OH"],
    "GB": ["London", "Manchester", "Birmingham", "Leeds", "Glasgow", "Edinburgh", "Liverpool", "Bristol",
           "Newcastle upon Tyne|Newcastle", "Kingston upon Hull|Hull", "St Albans|Saint Albans|St. Albans"],
    "IE": ["Dublin|Baile Átha Cliath", "Cork", "Galway", "Limerick"],
    "DE": ["Berlin", "Hamburg", "München|Munich|Muenchen", "Köln|Cologne|Koeln",
           "Frankfurt am Main|Frankfurt|Frankfurt/Main", "Stuttgart", "Düsseldorf|Duesseldorf|Dusseldorf",
           "Nürnberg|Nuremberg|Nuernberg"],
    "AT": ["Wien|Vienna", "Graz", "Salzburg", "Innsbruck"],
    "FR": ["Paris", "Marseille|Marseilles", "Lyon|Lyons", "Toulouse", "Nice",
           "Saint-Étienne|Saint-Etienne|St-Étienne|St Etienne"],
    "ES": ["Madrid", "Barcelona", "València|Valencia", "Sevilla|Seville", "Zaragoza|Saragossa",
           "A Coruña|La Coruña|Coruña"],
    "MX": ["Ciudad de México|Mexico City|CDMX", "Guadalajara", "Monterrey", "Puebla"],
    "IT": ["Roma|Rome", "Milano|Milan", "Napoli|Naples", "Torino|Turin", "Firenze|Florence",
           "Venezia|Venice"],
    "BR": ["São Paulo|Sao Paulo|SP", "Rio de Janeiro|Rio", "Brasília|Brasilia", "Belo Horizonte|BH"],
    "PT": ["Lisboa|Lisbon", "Porto|Oporto", "Braga"],
    "NL": ["Amsterdam", "Rotterdam", "Den Haag|The Hague|'s-Gravenhage", "Utrecht"],
    "IN": ["Mumbai|Bombay", "Delhi|New Delhi", "Bengaluru|Bangalore", "Chennai|Madras", "Kolkata|Calcutta"],
}
# Local time = UTC + offset (hours). DST is ignored: the offsets are "timezone-ish" on purpose.
TZ: dict[str, float] = {"GB": 0, "IE": 0, "PT": 0, "DE": 1, "AT": 1, "FR": 1, "ES": 1, "IT": 1, "NL": 1,
                        "BR": -3, "MX": -6, "IN": 5.5}
US_TZ = {"NY": -5, "PA": -5, "DC": -5, "MA": -5, "GA": -5, "FL": -5, "MI": -5, "OH": -5, "IN": -5, "IL": -6,
         "TX": -6, "MO": -6, "MN": -6, "LA": -6, "OK": -6, "TN": -6, "CO": -7, "UT": -7, "AZ": -7, "CA": -8,
         "WA": -8, "OR": -8, "NV": -8}

OS_WEIGHTS = {"Windows": 0.40, "Android": 0.22, "iOS": 0.16, "macOS": 0.13, "ChromeOS": 0.05, "Linux": 0.04}
BROWSERS = {
    "Windows": {"Chrome": 0.64, "Edge": 0.19, "Firefox": 0.10, "Opera": 0.04, "Brave": 0.03},
    "macOS": {"Safari": 0.45, "Chrome": 0.40, "Firefox": 0.08, "Edge": 0.03, "Brave": 0.02, "Opera": 0.02},
    "Linux": {"Chrome": 0.5, "Firefox": 0.4, "Brave": 0.05, "Opera": 0.05},
    "iOS": {"Safari": 0.80, "Chrome": 0.17, "Firefox": 0.02, "Edge": 0.01},
    "Android": {"Chrome": 0.70, "Samsung Internet": 0.18, "Firefox": 0.05, "Opera": 0.04, "Brave": 0.03},
    "ChromeOS": {"Chrome": 1.0},
}

DUP_SHARE = 0.30  # people with extra accounts
EXTRA_WEIGHTS = {1: 0.60, 2: 0.25, 3: 0.10, 4: 0.05}
HOUSEHOLD_START = 0.034  # per unit; with mean size ~2.55 this puts ~8% of people in households
NAMESAKE_TARGET = 0.04  # share of people whose given+surname equals an unrelated person's
ORIGINAL_SCALE = 0.12  # perturbation intensity of the first account (mild noise)
CITY_BLANK = (0.02, 0.065)  # (original, duplicate)
CITY_MOVED = 0.03
BROWSER_CHANGE, DEVICE_CHANGE = 0.25, 0.10
SPELLING_VARIANT = 0.12
EMPTY_LOGINS = 0.02


@dataclass
class Person:
    """One real human (an entity); ``n_accounts`` of them appear in the CRM."""

    entity_id: str
    locale: str
    name: NameParts
    style: NameStyle
    city: str
    aliases: tuple[str, ...]
    state: str
    country: str
    os: str
    browser: str
    habit: Habit
    n_accounts: int = 1
    household: int = -1
    city_form: str = ""


def _pick(rng: random.Random, weights: dict[T, float]) -> T:
    return rng.choices(list(weights), list(weights.values()))[0]


Pools = dict[str, tuple[list[str], list[str], list[str], list[str]]]  # locale -> male, female, last, city


@lru_cache(maxsize=4)
def _pools(seed: int, v: Variant = VARIANTS["default"]) -> Pools:
    """Pre-sample Faker names and cities once per locale: a Faker call per record would be far too slow.

    Sampling with repetition keeps Faker's frequency weights (Smith, James ... are common), which is
    what makes unrelated people share names. Cached per seed (read-only) for repeated calls.
    """
    out = {}
    n_male, n_female, n_last, n_city = v.pool_sizes
    for i, loc in enumerate(LOCALES):
        fk = Faker(loc)
        fk.seed_instance(seed * 7919 + i + v.salt)
        address = fk.provider("faker.providers.address")
        if isinstance(getattr(address, "cities", None), list):  # it_IT builds it from a set: hash-seed order
            address.cities = sorted(address.cities)  # type: ignore[union-attr]
        males = [fk.first_name_male() for _ in range(n_male)]
        females = [fk.first_name_female() for _ in range(n_female)]
        out[loc] = (males, females, [fk.last_name() for _ in range(n_last)], [fk.city() for _ in range(n_city)])
    return out


def _real_city(country: str, rng: random.Random, v: Variant) -> tuple[str, tuple[str, ...], str]:
    entries = CITIES[country][:v.cities_per_country or None]
    entry = rng.choices(entries, [1 / (k + 1) ** 0.8 for k in range(len(entries))])[0]
    head, *aliases = entry.split("|")
    name, _, state = head.partition("/")
    return name, tuple([name, *aliases]) if aliases else (), state


def _place(country: str, fake: list[str], rng: random.Random,
           v: Variant = VARIANTS["default"]) -> tuple[str, tuple[str, ...], str, str, int]:
    """City (real with aliases, or a Faker city), aliases, state, country and tz offset in minutes."""
    roll = rng.random()
    if roll < v.abroad_share:
        country = rng.choice(sorted(CITIES))
    if roll < v.real_city_share:
        city, aliases, state = _real_city(country, rng, v)
    else:
        city, aliases, state = rng.choice(fake), (), ""
    if country == "US":
        tz = float(US_TZ.get(state) or _pick(rng, {-5: 0.47, -6: 0.29, -7: 0.07, -8: 0.17}))
    else:
        tz = TZ.get(country, 0.0)
    return city, aliases, state, country, int(tz * 60)


def _device(rng: random.Random) -> tuple[str, str]:
    os_ = _pick(rng, OS_WEIGHTS)
    return os_, _pick(rng, BROWSERS[os_])


def _new_person(idx: int, loc: str, pools: Pools, rng: random.Random, female: bool | None = None,
                surname: str | None = None, v: Variant = VARIANTS["default"]) -> Person:
    _w, country, p_double, p_middle, titles = LOCALES[loc]
    males, females, lasts, fakes = pools[loc]
    female = rng.random() < 0.5 if female is None else female
    firsts = females if female else males
    given = rng.choice(firsts)
    if surname is None:
        surname = rng.choice(lasts)
        if rng.random() < p_double:
            other = rng.choice(lasts)
            if other != surname:  # Iberian double surname, elsewhere a hyphenated one
                surname = (" " if country in ("ES", "MX", "BR", "PT") else "-").join((surname, other))
    middle = rng.choice(firsts) if rng.random() < p_middle else ""
    middle = "" if middle == given else middle
    title = rng.choice(titles_for(titles, female)) if rng.random() < 0.04 else ""
    suffix = _pick(rng, dict(SUFFIXES)) if rng.random() < (0.035 if country == "US" else 0.004) else ""
    if female and suffix in ("Jr.", "Sr.", "II", "III"):
        suffix = ""
    nick = nickname_of(given, rng) or ""
    style = NameStyle(use_nick=bool(nick) and rng.random() < 0.12, nick=nick,
                      middle=_pick(rng, {"full": 0.45, "initial": 0.35, "hidden": 0.2}),
                      show_title=rng.random() < 0.7, show_suffix=rng.random() < 0.8,
                      case=_pick(rng, {"": 0.945, "lower": 0.04, "upper": 0.015}))
    city, aliases, state, country, tz = _place(country, fakes, rng, v)
    os_, browser = _device(rng)
    extra = _pick(rng, EXTRA_WEIGHTS) if rng.random() < DUP_SHARE else 0
    person = Person(f"E{idx:07d}", loc, NameParts(given, surname, middle, title, suffix, female), style,
                    city, aliases, state, country, os_, browser, new_habit(rng, tz), 1 + extra)
    person.city_form = rng.choice(aliases) if aliases and rng.random() < 0.2 else city
    return person


def _same_place(p: Person, other: Person) -> None:
    p.city, p.aliases, p.state, p.country = other.city, other.aliases, other.state, other.country
    p.city_form, p.habit.tz_min = other.city_form, other.habit.tz_min


def _household_member(head: Person, idx: int, hid: int, pools: Pools, rng: random.Random,
                      taken: set[str], v: Variant = VARIANTS["default"]) -> Person:
    """A different person sharing surname, city, often the device and sometimes the login rhythm."""
    female = (not head.name.female) if rng.random() < 0.8 else rng.random() < 0.5
    m = _new_person(idx, head.locale, pools, rng, female=female, surname=head.name.surname, v=v)
    for _ in range(20):
        if m.name.given not in taken:
            break
        m.name.given = rng.choice(pools[head.locale][1 if female else 0])
    if not head.name.female and not female and rng.random() < 0.08:  # father and son: John Smith Sr./Jr.
        m.name.given, m.name.suffix, m.style.show_suffix = head.name.given, "Jr.", True
        head.name.suffix = head.name.suffix or ("Sr." if rng.random() < 0.5 else "")
    m.style.nick = nickname_of(m.name.given, rng) or ""
    m.style.use_nick = m.style.use_nick and bool(m.style.nick)
    taken.add(m.name.given)
    _same_place(m, head)
    if rng.random() < 0.6:
        m.os, m.browser = head.os, head.browser
    if rng.random() < 0.5:
        m.habit.peaks[0] = (head.habit.peaks[0][0] + rng.gauss(0, 0.3), *m.habit.peaks[0][1:])
    m.household = head.household = hid
    return m


def build_people(n_records: int, seed: int, pools: Pools | None = None,
                 v: Variant = VARIANTS["default"]) -> list[Person]:
    """Draw people (singletons and households) until their accounts add up to exactly ``n_records``."""
    rng = random.Random(f"people-{seed}" + (f"-{v.name}" if v.salt else ""))
    pools = pools or _pools(seed, v)
    weights_of = dict(v.locale_weights) if v.locale_weights else {k: w[0] for k, w in LOCALES.items()}
    locales, weights = list(weights_of), list(weights_of.values())
    people: list[Person] = []
    total = hid = 0
    while total < n_records:
        head = _new_person(len(people), rng.choices(locales, weights)[0], pools, rng, v=v)
        unit = [head]
        if rng.random() < v.household_start:
            hid += 1
            taken = {head.name.given}
            for _ in range(_pick(rng, {1: 0.6, 2: 0.25, 3: 0.15})):
                unit.append(_household_member(head, len(people) + len(unit), hid, pools, rng, taken, v))
        for p in unit:
            if total >= n_records:
                break
            p.n_accounts = min(p.n_accounts, n_records - total)
            total += p.n_accounts
            people.append(p)
    _balance_names(people, rng, pools, v.namesake_target)
    return people


def _balance_names(people: list[Person], rng: random.Random, pools: Pools,
                   target: float = NAMESAKE_TARGET) -> None:
    """Make NAMESAKE_TARGET of people share given name + surname with an unrelated person, at any N.

    Faker's short weighted name lists collide far more than real names once N grows, so natural
    collisions are thinned first (the biggest groups, capped at 6, are kept: several distinct John
    Smiths), the rest get a rarer surname; then unrelated people copy names until the share is met,
    a quarter of them in the source's city.
    """
    key = [(p.name.given, p.name.surname) for p in people]
    groups: dict[tuple[str, str], list[int]] = {}
    for i, k in enumerate(key):
        groups.setdefault(k, []).append(i)
    rare = {loc: list(dict.fromkeys(pool[2])) for loc, pool in pools.items()}
    every = sorted({s for pool in rare.values() for s in pool})
    kept, budget = 0, target * len(people)
    for k, idxs in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        if len(idxs) < 2:
            break
        idxs = sorted(idxs, key=lambda i: people[i].household < 0)  # households cannot be renamed
        keep = min(len(idxs), 6) if kept + min(len(idxs), 6) <= budget / 2 else 1
        kept += keep if keep > 1 else 0
        for i in idxs[keep:]:
            if people[i].household >= 0:
                continue
            name = people[i].name
            for _ in range(30):
                name.surname = rng.choice(rare[people[i].locale] if rng.random() < 0.6 else every)
                if (name.given, name.surname) not in groups:
                    break
            groups[k].remove(i)
            key[i] = (name.given, name.surname)
            groups.setdefault(key[i], []).append(i)
    count = {k: len(v) for k, v in groups.items() if v}
    shared = sum(c for c in count.values() if c > 1)
    singles = [i for i, p in enumerate(people) if p.household < 0]
    for _ in range(len(people)):
        if shared >= budget or len(singles) < 2:
            break
        t, s = rng.sample(singles, 2)
        if count[key[t]] > 1 or key[t] == key[s]:
            continue
        count[key[t]] -= 1
        count[key[s]] += 1
        shared += 2 if count[key[s]] == 2 else 1
        tp, sp = people[t], people[s]
        if tp.name.female != sp.name.female:  # gendered extras of the old identity no longer fit
            tp.name.title = tp.name.suffix = tp.name.middle = ""
        tp.name.given, tp.name.surname, tp.name.female = sp.name.given, sp.name.surname, sp.name.female
        tp.style.nick = nickname_of(tp.name.given, rng) or ""
        tp.style.use_nick = tp.style.use_nick and bool(tp.style.nick)
        key[t] = key[s]
        if rng.random() < 0.25:
            _same_place(tp, sp)


def _account(p: Person, dup: bool, rng: random.Random, fakes: list[str],
             v: Variant = VARIANTS["default"]) -> tuple[dict[str, str], list[str]]:
    """Render one account of ``p``; duplicates get a per-account sloppiness factor on every rate.

    Independent per-operation draws leave ~17% of duplicates untouched; re-drawing some of those
    brings "verbatim" duplicates down to ~10%, which is closer to how real re-signups look.
    """
    row, ops = _render_account(p, dup, rng, fakes, v)
    if dup and not ops and rng.random() < 0.45:
        row, ops = _render_account(p, dup, rng, fakes, v)
    return row, ops


def _render_account(p: Person, dup: bool, rng: random.Random, fakes: list[str],
                    v: Variant = VARIANTS["default"]) -> tuple[dict[str, str], list[str]]:
    scale = rng.gammavariate(3.0, 0.42) if dup else ORIGINAL_SCALE
    titles = LOCALES[p.locale][4]
    name, ops = render_name(p.name, p.style, rng, scale, titles)
    os_, browser = p.os, p.browser
    roll = rng.random()
    if dup and roll < DEVICE_CHANGE:
        while os_ == p.os:
            os_, browser = _device(rng)
        ops.append("device")
    elif dup and roll < DEVICE_CHANGE + BROWSER_CHANGE and len(BROWSERS[os_]) > 1:
        while browser == p.browser:
            browser = _pick(rng, BROWSERS[os_])
        ops.append("browser")
    roll = rng.random()
    if roll < CITY_BLANK[dup]:
        city = ""
        ops.append("city_blank")
    elif dup and roll < CITY_BLANK[dup] + CITY_MOVED:
        city, aliases, state, _c, _tz = _place(p.country, fakes, rng, v)
        city = render_city(city, aliases, state, rng, 0.3)[0]
        ops.append("city_moved")
    else:
        city, city_ops = render_city(p.city_form, p.aliases, p.state, rng, scale)
        ops += ["city_" + o for o in city_ops]
    stamps = [] if rng.random() < EMPTY_LOGINS else login_times(p.habit, rng)
    row = {"customer_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)), "name": name, "city": city,
           "browser": spell(browser, BROWSER_SPELLINGS, rng, SPELLING_VARIANT, os_ in ("iOS", "Android")),
           "os": spell(os_, OS_SPELLINGS, rng, SPELLING_VARIANT), "login_times": json.dumps(stamps)}
    return row, ops


def generate_crm_with_meta(n_records: int, seed: int, variant: str = "default"
                           ) -> tuple[list[dict], list[dict], list[dict]]:
    """Like :func:`generate_crm`, plus per-row metadata (household, duplicate flag, applied ops) for stats."""
    v = VARIANTS[variant]
    pools = _pools(seed, v)
    people = build_people(n_records, seed, pools, v)
    rng = random.Random(f"accounts-{seed}" + (f"-{v.name}" if v.salt else ""))
    fakes = {loc: pool[3] for loc, pool in pools.items()}
    rows: list[tuple[dict, dict, dict]] = []
    seen: set[str] = set()
    for p in people:
        for k in range(p.n_accounts):
            row, ops = _account(p, k > 0, rng, fakes[p.locale], v)
            while row["login_times"] != "[]" and row["login_times"] in seen:  # never share a login list
                row["login_times"] = json.dumps(login_times(p.habit, rng))
            seen.add(row["login_times"])
            rows.append((row, {"customer_id": row["customer_id"], "entity_id": p.entity_id},
                         {"household": p.household, "duplicate": k > 0, "ops": ops}))
    rng.shuffle(rows)  # arrival order: a duplicate may arrive before its original
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


def generate_crm(n_records: int, seed: int, variant: str = "default") -> tuple[list[dict], list[dict]]:
    """Return (rows, truth): CRM rows with the published schema and their customer_id -> entity_id map."""
    rows, truth, _meta = generate_crm_with_meta(n_records, seed, variant)
    return rows, truth


def write_crm(path_csv: str | Path, path_truth: str | Path, n_records: int, seed: int,
              variant: str = "default") -> None:
    """Write the CRM CSV and its truth CSV; same seed (and variant) gives byte-identical files."""
    rows, truth = generate_crm(n_records, seed, variant)
    for path, header, items in ((path_csv, HEADER, rows), (path_truth, ("customer_id", "entity_id"), truth)):
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(header), lineterminator="\n")
            writer.writeheader()
            writer.writerows(items)

