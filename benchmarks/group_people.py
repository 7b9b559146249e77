"""Persons in groups of up to 20 records with heavy corruption: a registry merged from many sources, written
unlike this project's generators.

    python benchmarks/group_people.py [--records 5000] [--seed 1] [--out DIR]

Why: the quality suite must hold files the team did not tune on (issue 37). The real person files the
project reads are pairs (RLdata10000) or small groups (fake-1000); a registry merged from many sources (a
city's residents, patients of several clinics, members of several clubs) holds the same person up to twenty
times, each source with its own errors. So here 40% of persons have one record, 20% two and 40% three to
twenty (a long tail), and every copy carries several corruptions at once: nicknames (Robert / Bob, Małgorzata
/ Gosia), initials, given name and surname swapped, a double surname cut, a married name, transliterations
(Müller / Mueller / Muller, Schmidt / Schmitt, Nguyễn / Nguyen), typos, dates with one part wrong, day and
month swapped, the year off by one or ten, only the year or none, Cyrillic look-alike letters, zero-width
spaces and soft hyphens, case, empty fields, a move to another suburb, a street abbreviated. Names come
from a multi-national list written here (German, English, French, Spanish, Italian, Polish, Turkish,
Vietnamese), drawn with a skewed frequency so that common names recur on different persons (namesakes with
other birth dates, and household members sharing a surname and an address): precision is tested too.
Nothing is imported from the matcher (`consumer`): its name tables and nickname lists are not this file's.

`generate(n, seed)` returns (rows with columns id,given_name,surname,date_of_birth,suburb,street_number,
address_1,postcode: the ones the `person` profile reads; truth id -> entity); `main()` writes people.csv and
truth.csv (id,entity) like ../shared/data/real.
"""

from __future__ import annotations

import argparse
import csv
import random
import unicodedata
from datetime import date, timedelta
from pathlib import Path

GIVEN = {  # nationality -> (male names, female names), most frequent first
    "de": ("Thomas Michael Andreas Stefan Peter Klaus Jürgen Wolfgang Markus Matthias Frank Uwe Günter Lukas Jonas",
           "Sabine Monika Petra Ursula Andrea Claudia Susanne Julia Anna Katharina Birgit Jutta Renate Lena Sophie"),
    "en": ("James John Robert Michael William David Richard Joseph Thomas Charles Daniel Matthew Anthony Edward "
           "Christopher", "Mary Elizabeth Patricia Jennifer Linda Barbara Susan Margaret Jessica Sarah Karen "
           "Katherine Victoria Rebecca Emily"),
    "fr": ("Jean Pierre Michel Philippe Alain Nicolas François Laurent Julien Sébastien Christophe Olivier Stéphane "
           "Thierry Mathieu", "Marie Nathalie Isabelle Sylvie Catherine Françoise Valérie Sandrine Céline Aurélie "
           "Hélène Camille Élodie Léa Manon"),
    "es": ("José Antonio Manuel Francisco Juan David Javier Jesús Carlos Miguel Alejandro Rafael Pedro Ángel Sergio",
           "María Carmen Josefa Isabel Dolores Pilar Teresa Ana Lucía Cristina Marta Rosa Elena Mercedes Raquel"),
    "it": ("Giuseppe Giovanni Antonio Mario Luigi Francesco Angelo Vincenzo Pietro Salvatore Marco Alessandro",
           "Giulia Francesca Chiara Rosa Angela Giovanna Teresa Lucia Carmela Caterina Sara Federica"),
    "pl": ("Piotr Krzysztof Andrzej Tomasz Paweł Marcin Michał Grzegorz Jan Łukasz Wojciech Mariusz Jakub Rafał",
           "Anna Maria Katarzyna Małgorzata Agnieszka Barbara Ewa Krystyna Magdalena Joanna Aleksandra Zofia Dorota"),
    "tr": ("Mehmet Mustafa Ahmet Ali Hüseyin Hasan İbrahim Murat Ömer Emre Yusuf Burak Kemal Serkan Çağlar",
           "Fatma Ayşe Emine Hatice Zeynep Elif Meryem Şerife Zehra Sultan Hülya Özlem Gül Derya Büşra"),
    "vi": ("Minh Tuấn Hùng Dũng Quang Huy Phúc Long Thành Nam Việt Khoa Đức Bảo Hoàng",
           "Linh Hương Lan Mai Thảo Ngọc Trang Hà Hạnh Phương Thu Anh Vy Nhung Yến"),
}
SURNAMES = {
    "de": "Müller Schmidt Schneider Fischer Weber Meyer Wagner Becker Schulz Hoffmann Schäfer Koch Bauer Richter "
          "Klein Wolf Schröder Neumann Schwarz Zimmermann Braun Krüger Hartmann Lange Weiß Jäger Groß Köhler",
    "en": "Smith Jones Williams Taylor Brown Davies Evans Wilson Thomas Johnson Roberts Walker Wright Robinson "
          "Thompson White Hughes Edwards Green Hall Wood Harris Clarke Jackson Turner O'Brien McDonald",
    "fr": "Martin Bernard Dubois Thomas Robert Richard Petit Durand Leroy Moreau Simon Laurent Lefèvre Michel "
          "Garcia David Bertrand Roux Vincent Fournier Morel Girard André Mercier",
    "es": "García Rodríguez González Fernández López Martínez Sánchez Pérez Gómez Martín Jiménez Ruiz Hernández "
          "Díaz Moreno Muñoz Álvarez Romero Alonso Gutiérrez Navarro Torres Domínguez",
    "it": "Rossi Russo Ferrari Esposito Bianchi Romano Colombo Ricci Marino Greco Bruno Gallo Conti Costa Fontana",
    "pl": "Nowak Kowalski Wiśniewski Wójcik Kowalczyk Kamiński Lewandowski Zieliński Szymański Woźniak Dąbrowski "
          "Kozłowski Jankowski Mazur Kwiatkowski Krawczyk Piotrowski Grabowski",
    "tr": "Yılmaz Kaya Demir Şahin Çelik Yıldız Yıldırım Öztürk Aydın Özdemir Arslan Doğan Kılıç Aslan Çetin Kara "
          "Koç Kurt Özkan Şimşek",
    "vi": "Nguyễn Trần Lê Phạm Hoàng Huỳnh Phan Vũ Võ Đặng Bùi Đỗ Hồ Ngô Dương Lý",
}
NATIONS = {"de": 30, "en": 15, "fr": 10, "es": 10, "it": 8, "pl": 10, "tr": 10, "vi": 7}
NICKS = {  # full form -> short forms a source may hold instead
    "Robert": "Bob Rob Bobby", "Elizabeth": "Liz Beth Betty Eliza", "William": "Bill Will Billy",
    "James": "Jim Jimmy Jamie", "John": "Jack Johnny", "Richard": "Rick Dick Richie", "Michael": "Mike Micha",
    "Margaret": "Maggie Peggy Meg", "Katherine": "Kate Kathy Katie", "Patricia": "Pat Patty Trish",
    "Jennifer": "Jen Jenny", "Victoria": "Vicky Tori", "Rebecca": "Becky", "Christopher": "Chris",
    "Anthony": "Tony", "Edward": "Ed Ted Eddie", "Daniel": "Dan Danny", "Matthew": "Matt", "Joseph": "Joe",
    "Charles": "Charlie", "Thomas": "Tom Tommy", "David": "Dave", "Susan": "Sue Susie", "Barbara": "Babs Basia",
    "Andreas": "Andi", "Wolfgang": "Wolf", "Katharina": "Kathi Katja", "Susanne": "Susi", "Ursula": "Uschi Ulla",
    "Monika": "Moni", "Sabine": "Bine", "Birgit": "Biggi", "Matthias": "Matze", "Nicolas": "Nico",
    "Philippe": "Phil", "Christophe": "Chris", "Catherine": "Cathy", "Isabelle": "Isa", "Sébastien": "Seb",
    "José": "Pepe", "Francisco": "Paco Pancho", "Manuel": "Manolo", "Alejandro": "Álex Alex", "Dolores": "Lola",
    "Josefa": "Pepa", "Rafael": "Rafa", "Mercedes": "Merche", "Isabel": "Isa", "Aleksandra": "Ola",
    "Katarzyna": "Kasia", "Małgorzata": "Gosia", "Magdalena": "Magda", "Joanna": "Asia", "Agnieszka": "Aga",
    "Tomasz": "Tomek", "Jakub": "Kuba", "Wojciech": "Wojtek", "Grzegorz": "Grzesiek", "Krzysztof": "Krzysiek",
    "Giuseppe": "Beppe Peppe Pino", "Giovanni": "Gianni", "Vincenzo": "Enzo", "Salvatore": "Totò",
    "Francesco": "Franco", "Alessandro": "Sandro Ale", "Mustafa": "Musti", "Mehmet": "Memo",
}
SPELLINGS = ("Schmidt Schmitt Schmid", "Meyer Meier Maier Mayer", "Fischer Fisher", "Hoffmann Hofmann",
             "Weiß Weiss Weis", "Lefèvre Lefebvre", "Mehmet Mehmed", "Hüseyin Hussein Huseyin",
             "Kowalski Kovalski", "Mathieu Matthieu", "Sophie Sofie", "Jürgen Juergen Jurgen")
PLACES = ("Altona 22765", "Ehrenfeld 50825", "Schwabing 80802", "Kreuzberg 10997", "Linden-Nord 30451",
          "Bockenheim 60487", "Plagwitz 04229", "Neustadt 01097", "Sankt Georg 20099", "Bad Cannstatt 70372",
          "Camden 6NW1", "Headingley 6LS6", "Clifton 8BS8", "Didsbury 20M20", "Jesmond 2NE2", "Croix-Rousse 69004",
          "Belleville 75020", "Saint-Michel 33800", "Lavapiés 28012", "Gràcia 08012", "Triana 41010",
          "Trastevere 00153", "Navigli 20143", "Kazimierz 31-066", "Praga-Północ 03-402", "Wilda 61-501",
          "Kadıköy 34710", "Karşıyaka 35540", "Bad Godesberg 53173", "Sachsenhausen 60594", "Gaarden-Ost 24143",
          "Südstadt 30171", "Mitte 10115", "Oberkassel 40545", "Eimsbüttel 20257", "Nordend 60318")
STREETS = ("Hauptstraße", "Bahnhofstraße", "Gartenweg", "Lindenallee", "Schillerstraße", "Am Markt", "Birkenweg",
           "High Street", "Church Road", "Station Road", "Park Lane", "Victoria Avenue", "Rue de la République",
           "Avenue Jean Jaurès", "Calle Mayor", "Avenida de la Constitución", "Via Roma", "Corso Italia",
           "ulica Długa", "aleja Róży", "Atatürk Caddesi", "Cumhuriyet Sokak", "Goethestraße", "Mühlenweg")
STREET_SHORT = (("straße", "str."), ("Straße", "Str."), ("Street", "St"), ("Road", "Rd"), ("Avenue", "Ave"),
                ("Lane", "Ln"), ("ulica ", "ul. "), ("aleja ", "al. "), ("Caddesi", "Cad."), ("Calle ", "C/ "),
                ("Avenida", "Avda."), ("Sokak", "Sk."), ("weg", "wg."), ("straße", "strasse"))
CYRILLIC = {"a": "а", "e": "е", "o": "о", "p": "р", "c": "с", "A": "А", "E": "Е", "O": "О", "P": "Р", "C": "С",
            "x": "х", "y": "у", "H": "Н", "K": "К", "M": "М", "T": "Т", "B": "В"}
INVISIBLE = ("\u200b", "\u00ad", "\u200c", "\ufeff")
LETTERS = "abcdefghijklmnopqrstuvwxyz"
FOLD = {"ß": "ss", "ł": "l", "Ł": "L", "ı": "i", "đ": "d", "Đ": "D", "ø": "o"}
CORRUPTIONS = {"nick": 10, "initial": 5, "swap": 5, "double": 3, "translit": 10, "typo_given": 12,
               "typo_surname": 12, "dob": 16, "homoglyph": 5, "invisible": 5, "case": 8, "missing": 12,
               "suburb": 8, "address": 10}


def _zipf(rng: random.Random, names: list[str], s: float = 0.9) -> str:
    return rng.choices(names, weights=[1 / (i + 1) ** s for i in range(len(names))])[0]


def _translit(text: str, rng: random.Random) -> str:
    """Müller -> Mueller or Muller, Nguyễn -> Nguyen, Łukasz -> Lukasz; or a known spelling variant."""
    for group in SPELLINGS:
        forms = group.split()
        if text in forms:
            return rng.choice([f for f in forms if f != text])
    if rng.random() < 0.5:
        text = text.replace("ü", "ue").replace("ö", "oe").replace("ä", "ae").replace("Ü", "Ue").replace("Ö", "Oe")
    text = "".join(FOLD.get(ch, ch) for ch in text)
    return "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))


def _typo(text: str, rng: random.Random) -> str:
    if len(text) < 3:
        return text
    i = rng.randrange(1, len(text))
    op = rng.choice(("insert", "delete", "substitute", "transpose"))
    if op == "insert":
        return text[:i] + rng.choice(LETTERS) + text[i:]
    if op == "delete":
        return text[:i] + text[i + 1:]
    if op == "substitute":
        return text[:i] + rng.choice(LETTERS) + text[i + 1:]
    i = min(i, len(text) - 2)
    return text[:i] + text[i + 1] + text[i] + text[i + 2:]


def _homoglyph(text: str, rng: random.Random) -> str:
    spots = [i for i, ch in enumerate(text) if ch in CYRILLIC]
    for i in rng.sample(spots, min(len(spots), rng.choice((1, 1, 2)))):
        text = text[:i] + CYRILLIC[text[i]] + text[i + 1:]
    return text


def _dob(d: date, rng: random.Random) -> str:
    kind = rng.choices(("part", "swap", "year1", "year10", "year_only", "missing", "digit"),
                       weights=(25, 15, 15, 8, 12, 15, 10))[0]
    y, m, dd = d.year, d.month, d.day
    if kind == "part":
        if rng.random() < 0.5:
            dd = max(1, min(28, dd + rng.choice((-2, -1, 1, 2, 10))))
        else:
            m = max(1, min(12, m + rng.choice((-1, 1))))
    elif kind == "swap" and dd <= 12:
        m, dd = dd, m
    elif kind in ("year1", "year10"):
        y += rng.choice((-1, 1)) * (1 if kind == "year1" else 10)
    elif kind == "year_only":
        return str(y)
    elif kind == "missing":
        return ""
    elif kind == "digit":
        s = f"{y:04d}-{m:02d}-{dd:02d}"
        i = rng.choice((2, 3, 5, 6, 8, 9))
        swap = {"1": "7", "7": "1", "3": "8", "8": "3", "0": "6", "6": "0", "5": "6", "9": "4", "4": "9", "2": "7"}
        s = s[:i] + swap.get(s[i], s[i]) + s[i + 1:]
        return s if _valid(s) else s[:i] + d.isoformat()[i] + s[i + 1:]
    try:
        return date(y, m, dd).isoformat()
    except ValueError:
        return d.isoformat()


def _valid(s: str) -> bool:
    try:
        date.fromisoformat(s)
    except ValueError:
        return False
    return True


def _person(rng: random.Random, places: list[str]) -> dict:
    nat = rng.choices(list(NATIONS), weights=list(NATIONS.values()))[0]
    sex = rng.choice((0, 1))
    given = _zipf(rng, GIVEN[nat][sex].split())
    surname = _zipf(rng, SURNAMES[nat].split())
    if nat == "pl" and sex == 1 and surname.endswith("ki"):
        surname = surname[:-1] + "a"
    if nat == "es" and rng.random() < 0.7:
        surname += " " + _zipf(rng, SURNAMES["es"].split())
    elif nat == "de" and sex == 1 and rng.random() < 0.1:
        surname += "-" + _zipf(rng, SURNAMES["de"].split())
    if nat == "vi" and rng.random() < 0.6:
        given = ("Thị " if sex else "Văn ") + given
    born = date(1935, 1, 1) + timedelta(days=rng.randrange(70 * 365))
    return {"nat": nat, "sex": sex, "given": given, "surname": surname, "dob": born, **_address(rng, places)}


def _address(rng: random.Random, places: list[str]) -> dict:
    suburb, postcode = rng.choice(places).rsplit(" ", 1)
    return {"suburb": suburb, "postcode": postcode, "street": rng.choice(STREETS),
            "number": str(rng.choice((rng.randint(1, 30), rng.randint(1, 180)))) + rng.choice(("",) * 8 + ("a", "b"))}


def _record(p: dict, rng: random.Random, n_corrupt: int) -> dict[str, str]:
    home = p["moved"] if p.get("moved") and rng.random() < 0.4 else p
    surname = p["married"] if p.get("married") and rng.random() < 0.45 else p["surname"]
    r = {"given_name": p["given"], "surname": surname, "date_of_birth": p["dob"].isoformat(),
         "suburb": home["suburb"], "street_number": home["number"], "address_1": home["street"],
         "postcode": home["postcode"]}
    if rng.random() < 0.25:  # a source that keeps no street address (a club list, a lab's patient file)
        r.update(street_number="", address_1="", postcode="", suburb=r["suburb"] if rng.random() < 0.5 else "")
    kinds = list(CORRUPTIONS)
    for kind in dict.fromkeys(rng.choices(kinds, weights=[CORRUPTIONS[k] for k in kinds], k=n_corrupt)):
        name = rng.choice(("given_name", "surname"))
        if kind == "nick" and p["given"].split()[-1] in NICKS:
            r["given_name"] = rng.choice(NICKS[p["given"].split()[-1]].split())
        elif kind == "initial":
            r["given_name"] = r["given_name"][:1] + rng.choice((".", "", "."))
        elif kind == "swap":
            r["given_name"], r["surname"] = r["surname"], r["given_name"]
        elif kind == "double" and any(c in r["surname"] for c in " -"):
            r["surname"] = r["surname"].replace("-", " ").split()[rng.choice((0, 0, -1))]
        elif kind == "translit":
            r[name] = _translit(r[name], rng)
        elif kind in ("typo_given", "typo_surname"):
            field = "given_name" if kind == "typo_given" else "surname"
            r[field] = _typo(r[field], rng)
        elif kind == "dob":
            r["date_of_birth"] = _dob(p["dob"], rng)
        elif kind == "homoglyph":
            r[name] = _homoglyph(r[name], rng)
        elif kind == "invisible" and len(r[name]) > 2:
            i = rng.randrange(1, len(r[name]))
            r[name] = r[name][:i] + rng.choice(INVISIBLE) + r[name][i:]
        elif kind == "case":
            how = rng.choice((str.upper, str.lower))
            for f in rng.choice((("surname",), ("given_name", "surname"))):
                r[f] = how(r[f])
        elif kind == "missing":
            field = rng.choices(("given_name", "date_of_birth", "suburb", "address_1", "postcode", "street_number"),
                                weights=(5, 25, 20, 20, 15, 15))[0]
            r[field] = ""
        elif kind == "suburb":
            r["suburb"] = _typo(r["suburb"], rng) if rng.random() < 0.6 else r["suburb"].split("-")[-1].upper()
        elif kind == "address":
            short = [(a, b) for a, b in STREET_SHORT if a in r["address_1"]]
            if short and rng.random() < 0.6:
                r["address_1"] = r["address_1"].replace(*rng.choice(short))
            elif rng.random() < 0.5:
                r["address_1"] = _typo(r["address_1"], rng)
            else:
                r["postcode"] = _typo(r["postcode"], rng) if rng.random() < 0.5 else r["postcode"]
                r["street_number"] = r["street_number"].rstrip("ab") if rng.random() < 0.5 else r["street_number"]
    return r


def _group_size(rng: random.Random) -> int:
    kind = rng.choices(("one", "two", "many"), weights=(40, 20, 40))[0]
    if kind != "many":
        return 1 if kind == "one" else 2
    return rng.choices(range(3, 21), weights=[1 / (k - 2) ** 1.1 for k in range(3, 21)])[0]


def generate(n_records: int, seed: int) -> tuple[list[dict[str, str]], dict[str, str]]:
    rng = random.Random(seed)
    places = list(PLACES)
    persons: list[dict] = []
    plan: list[tuple[int, int]] = []  # (person index, copy number)
    while len(plan) < n_records:
        p = _person(rng, places)
        if persons and rng.random() < 0.08:  # a household member: the surname and the address of another
            other = rng.choice(persons)
            p.update({k: other[k] for k in ("suburb", "postcode", "street", "number")})
            p["surname"] = other["surname"] if other["sex"] == p["sex"] or other["nat"] != "pl" else p["surname"]
        elif persons and rng.random() < 0.05:  # a namesake: the same name, another person
            other = rng.choice(persons)
            p.update({k: other[k] for k in ("nat", "sex", "given", "surname")})
        size = _group_size(rng)
        if size > 1 and rng.random() < 0.2:
            p["moved"] = _address(rng, places)
        if size > 1 and p["sex"] == 1 and rng.random() < 0.2:
            p["married"] = _zipf(rng, SURNAMES[rng.choice(list(NATIONS))].split())
        persons.append(p)
        plan += [(len(persons) - 1, k) for k in range(size)]
    plan = plan[:n_records]
    rng.shuffle(plan)
    rows, truth = [], {}
    for i, (pi, k) in enumerate(plan):
        n_corrupt = rng.choice((0, 1)) if k == 0 else rng.choices((1, 2, 3, 4), weights=(20, 35, 30, 15))[0]
        rid = f"P{i:06d}"
        rows.append({"id": rid, **_record(persons[pi], rng, n_corrupt)})
        truth[rid] = f"E{pi:05d}"
    cols = ("id", "given_name", "surname", "date_of_birth", "suburb", "street_number", "address_1", "postcode")
    return [{c: r[c] for c in cols} for r in rows], truth


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("group-people"))
    args = ap.parse_args()
    rows, truth = generate(args.records, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / "people.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with (args.out / "truth.csv").open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([("id", "entity"), *truth.items()])
    print(f"{len(rows)} records, {len(set(truth.values()))} persons -> {args.out}")


if __name__ == "__main__":
    main()
