"""Product offers in sibling families, one pool: a price-comparison crawl of many web shops, written unlike
this project's generators.

    python benchmarks/sibling_offers.py [--records 3000] [--seed 1] [--out DIR]

Why: the quality suite must hold files the team did not tune on (issue 37). The real crawl the project
reads (`sigmod-laptops`) is one product line; this file stands for the wider kind: phones, laptops, SSDs,
USB sticks, memory cards, toner and ink, headphones, TVs, graphics cards, batteries, cables and consoles,
each product in a family of siblings that differ by ONE decisive attribute: a colour (written in English,
German, French, Spanish or Italian), a capacity with its unit written variously (64GB / 64 Go / 64-GB /
0.5TB), a model number (GT 430 / GT 440, WH-1000XM4 / XM5), a pack count (2-pack / lot de 2 / x2), a
screen size (55" / 55 Zoll / 139 cm) or an edition. Each product has a group of offers from different shops
(many of 5-20, some of 2-4, some of one: a lone sibling), and each shop writes titles its own way: word
order, brand dropped or moved, its tag line, its language, abbreviations, code separators (WH1000XM4),
part numbers, spec fragments, a typo now and then; prices jitter by shop, are sometimes missing or in
another currency. There is no shop column. The vocabulary is deliberately this module's own: nothing is
imported from the matcher (`consumer`), so a quality change is judged on the problem, not on its tables.

`generate(n, seed)` returns (rows with columns listing_id,title,description,brand,price,currency;
truth listing_id -> entity); `main()` writes listings.csv and truth.csv (id,entity) like ../shared/data/real.
"""

from __future__ import annotations

import argparse
import csv
import random
import re
from pathlib import Path

LANGS = ("en", "de", "fr", "es", "it")
COLOURS = {  # key -> its word in LANGS order
    "black": ("Black", "Schwarz", "Noir", "Negro", "Nero"), "white": ("White", "Weiß", "Blanc", "Blanco", "Bianco"),
    "silver": ("Silver", "Silber", "Argent", "Plata", "Argento"), "blue": ("Blue", "Blau", "Bleu", "Azul", "Blu"),
    "grey": ("Grey", "Grau", "Gris", "Gris", "Grigio"), "green": ("Green", "Grün", "Vert", "Verde", "Verde"),
    "red": ("Red", "Rot", "Rouge", "Rojo", "Rosso"), "pink": ("Pink", "Rosa", "Rose", "Rosa", "Rosa"),
    "gold": ("Gold", "Gold", "Or", "Dorado", "Oro"), "purple": ("Purple", "Lila", "Violet", "Morado", "Viola"),
    "cyan": ("Cyan", "Cyan", "Cyan", "Cian", "Ciano"), "magenta": ("Magenta", "Magenta", "Magenta", "Magenta",
                                                                    "Magenta"),
    "yellow": ("Yellow", "Gelb", "Jaune", "Amarillo", "Giallo"),
}
TINTS = ("Midnight", "Phantom", "Deep", "Arctic", "Starlight", "Space", "Graphite", "Ocean", "Mint", "Titan")
PACK_WORDS = {"en": ("{n}-pack", "pack of {n}", "x{n}", "{n} pcs", "{n} Pack"), "de": ("{n}er Pack", "{n} Stück"),
              "fr": ("lot de {n}", "pack de {n}"), "es": ("pack de {n}", "{n} unidades"),
              "it": ("confezione da {n}", "{n} pezzi")}
INCH_WORDS = {"en": ("{n} inch", "{n}-inch", "{n}in"), "de": ("{n} Zoll",), "fr": ("{n} pouces",),
              "es": ("{n} pulgadas",), "it": ("{n} pollici",)}
TAGS = ("| Free shipping", "- Amazon.de", "Neu & OVP", "*** TOP SELLER ***", "- in stock", "– Livraison gratuite",
        "| Envío gratis", "- Spedizione gratuita", "[EU version]", "Official Store", "NEW", "✔ 24h dispatch",
        "| Versandkostenfrei", "- Best Price", "Garantie 2 ans", "(import)")
ABBREV = (("Wireless", "WL"), ("Bluetooth", "BT"), ("Graphics Card", "GPU"), ("Generation", "Gen"), ("Gen ", "G"),
          ("Smartphone", "Phone"), ("Laptop", "Notebook"), ("Black", "Blk"), ("Silver", "Slv"), ("Professional",
          "Pro"), ("Headphones", "Headset"), ("Cartridge", "Cart."), ("Noise Cancelling", "NC"), ("Internal", "Int."))
CURRENCIES = (("EUR", 1.0, 60), ("USD", 1.09, 15), ("GBP", 0.86, 12), ("CHF", 0.95, 6), ("PLN", 4.3, 7))

# line -> noun (LANGS order), attributes its products carry, axes (weighted), pools, specs, price range, makers
LINES: dict[str, dict] = {
    "phone": {"noun": ("Smartphone", "Handy", "Smartphone", "Teléfono móvil", "Cellulare"),
              "attrs": ("colour", "capacity"), "axes": {"colour": 4, "capacity": 3, "model": 2},
              "colour": ("black", "white", "blue", "green", "purple", "silver", "gold", "pink"),
              "capacity": (64, 128, 256, 512), "price": (140, 1100),
              "specs": ("5G", "Dual SIM", "6.1\" OLED", "6.6 inch display", "8GB RAM", "Android 14", "50MP camera",
                        "5000 mAh", "120Hz", "unlocked", "eSIM", "NFC"),
              "makers": (("Samsung", ("Galaxy A15", "Galaxy A25 5G", "Galaxy A35 5G", "Galaxy A55 5G")),
                         ("Samsung", ("Galaxy S23", "Galaxy S23+", "Galaxy S23 Ultra")),
                         ("Xiaomi", ("Redmi Note 12", "Redmi Note 12 Pro", "Redmi Note 13", "Redmi Note 13 Pro")),
                         ("Motorola", ("Moto G14", "Moto G54", "Moto G84")),
                         ("Google", ("Pixel 7", "Pixel 7a", "Pixel 8", "Pixel 8 Pro")),
                         ("Apple", ("iPhone 13", "iPhone 14", "iPhone 15", "iPhone 15 Plus")),
                         ("Nokia", ("G21", "G22", "G42 5G")), ("OnePlus", ("Nord CE 3 Lite", "Nord CE 3", "Nord 3")),
                         ("Honor", ("Magic5 Lite", "Magic6 Lite", "90 Lite")))},
    "laptop": {"noun": ("Laptop", "Notebook", "Ordinateur portable", "Portátil", "Notebook"),
               "attrs": ("colour", "capacity"), "axes": {"capacity": 3, "model": 3, "colour": 1},
               "colour": ("silver", "grey", "black", "blue"), "capacity": (256, 512, 1000, 2000), "price": (450, 2200),
               "specs": ("14\" FHD IPS", "15.6 inch", "16GB RAM", "8 GB DDR4", "Win 11 Home", "Windows 11 Pro",
                         "QWERTZ", "backlit keyboard", "Intel Iris Xe", "Wi-Fi 6E", "USB-C", "1.4 kg"),
               "makers": (("Lenovo", ("ThinkPad E14 Gen 5 i5-1335U", "ThinkPad E14 Gen 5 i7-1355U")),
                          ("Lenovo", ("IdeaPad Slim 3 15IRU8 i3-1315U", "IdeaPad Slim 3 15IRU8 i5-1335U",
                                      "IdeaPad Slim 3 15IRU8 i7-1355U")),
                          ("HP", ("EliteBook 840 G9", "EliteBook 850 G9", "EliteBook 860 G9")),
                          ("HP", ("Pavilion 15-eg3000 i5", "Pavilion 15-eg3000 i7")),
                          ("Dell", ("Latitude 5440", "Latitude 5540", "Latitude 7440")),
                          ("Asus", ("Vivobook 15 X1504ZA", "Vivobook 16 X1605ZA")),
                          ("Acer", ("Aspire 5 A515-58M", "Aspire 3 A315-59", "Swift Go 14 SFG14-71")),
                          ("Apple", ("MacBook Air 13 M2", "MacBook Air 13 M3", "MacBook Air 15 M3")))},
    "ssd": {"noun": ("Internal SSD", "Interne SSD", "SSD interne", "SSD interno", "SSD interno"),
            "attrs": ("capacity",), "axes": {"capacity": 5, "model": 1}, "capacity": (250, 500, 1000, 2000, 4000),
            "price": (30, 260), "specs": ("SATA III", "2.5\"", "NVMe", "PCIe 4.0", "M.2 2280", "up to 560 MB/s",
                                          "7000 MB/s", "TLC", "5-year warranty"),
            "makers": (("Samsung", ("870 EVO",)), ("Samsung", ("990 PRO", "990 EVO")), ("Crucial", ("MX500", "BX500")),
                       ("Crucial", ("P3", "P3 Plus", "T500")), ("WD", ("Blue SA510", "Blue SN580", "Black SN770")),
                       ("Kingston", ("A400", "NV2", "KC3000")), ("SanDisk", ("SSD Plus",)))},
    "usb": {"noun": ("USB Flash Drive", "USB-Stick", "Clé USB", "Memoria USB", "Chiavetta USB"),
            "attrs": ("capacity", "pack"), "axes": {"capacity": 4, "pack": 2}, "capacity": (16, 32, 64, 128, 256),
            "pack": (1, 2, 3, 5), "price": (6, 40), "specs": ("USB 3.2 Gen 1", "USB 3.0", "up to 150MB/s", "metal",
                                                              "keyring", "USB-A", "Type-C"),
            "makers": (("SanDisk", ("Ultra Flair", "Ultra Fit", "Ultra Dual Drive Luxe")),
                       ("Kingston", ("DataTraveler Exodia", "DataTraveler Kyson")),
                       ("Intenso", ("Speed Line", "Ultra Line")), ("PNY", ("Attaché 4",)))},
    "card": {"noun": ("Memory Card", "Speicherkarte", "Carte mémoire", "Tarjeta de memoria", "Scheda di memoria"),
             "attrs": ("capacity", "pack"), "axes": {"capacity": 4, "pack": 1}, "capacity": (32, 64, 128, 256, 512),
             "pack": (1, 2, 3), "price": (8, 90), "specs": ("UHS-I", "U3", "A2", "V30", "Class 10", "4K UHD",
                                                            "with SD adapter", "190MB/s"),
             "makers": (("SanDisk", ("Extreme microSDXC", "Ultra microSDXC", "Extreme PRO SDXC")),
                        ("Samsung", ("EVO Plus microSDXC", "PRO Plus microSDXC")),
                        ("Lexar", ("Professional 1066x SDXC", "PLAY microSDXC")), ("Kingston", ("Canvas Go! Plus",)))},
    "toner": {"noun": ("Toner Cartridge", "Tonerkartusche", "Cartouche de toner", "Cartucho de tóner",
                       "Cartuccia toner"),
              "attrs": ("colour", "pack"), "axes": {"colour": 3, "model": 2, "pack": 1},
              "colour": ("black", "cyan", "magenta", "yellow"), "pack": (1, 2, 4), "price": (25, 120),
              "specs": ("Original", "OEM", "genuine", "for DCP-L2510D", "for LaserJet Pro", "laser"),
              "makers": (("Brother", ("TN-2410", "TN-2420")), ("Brother", ("TN-243", "TN-247")),
                         ("HP", ("216A", "207A", "207X")), ("Canon", ("067", "067H")), ("Kyocera", ("TK-5240",)))},
    "ink": {"noun": ("Ink Cartridge", "Tintenpatrone", "Cartouche d'encre", "Cartucho de tinta",
                     "Cartuccia d'inchiostro"),
            "attrs": ("colour", "pack"), "axes": {"colour": 3, "model": 2, "pack": 1},
            "colour": ("black", "cyan", "magenta", "yellow"), "pack": (1, 2, 4), "price": (10, 60),
            "specs": ("Original", "Instant Ink", "for OfficeJet Pro", "for PIXMA", "ca. 300 pages", "EcoTank"),
            "makers": (("HP", ("305", "305XL")), ("HP", ("953", "953XL")), ("Epson", ("603", "603XL")),
                       ("Canon", ("PG-545", "PG-545XL")), ("Canon", ("CLI-581", "CLI-581XL")),
                       ("Brother", ("LC-3211", "LC-3213")))},
    "headphones": {"noun": ("Wireless Headphones", "Kabellose Kopfhörer", "Casque sans fil",
                            "Auriculares inalámbricos", "Cuffie wireless"),
                   "attrs": ("colour",), "axes": {"colour": 3, "model": 2},
                   "colour": ("black", "white", "silver", "blue", "pink", "green"), "price": (30, 420),
                   "specs": ("Bluetooth 5.3", "Noise Cancelling", "ANC", "30h battery", "over-ear", "in-ear",
                             "with microphone", "USB-C"),
                   "makers": (("Sony", ("WH-1000XM4", "WH-1000XM5")), ("Sony", ("WF-1000XM4", "WF-1000XM5")),
                              ("Sony", ("WH-CH520", "WH-CH720N")), ("Bose", ("QuietComfort 45", "QuietComfort Ultra")),
                              ("JBL", ("Tune 510BT", "Tune 520BT", "Tune 710BT", "Tune 760NC")),
                              ("Sennheiser", ("Momentum 4", "Accentum")), ("Beats", ("Studio Pro", "Solo 4")),
                              ("Jabra", ("Elite 4", "Elite 5", "Elite 8 Active")))},
    "tv": {"noun": ("Smart TV", "Fernseher", "Téléviseur", "Televisor", "Televisore"),
           "attrs": ("size",), "axes": {"size": 5, "model": 1}, "size": (43, 50, 55, 65, 75, 77), "price": (300, 2600),
           "specs": ("4K UHD", "HDR10", "Dolby Vision", "120Hz", "webOS", "Google TV", "HDMI 2.1", "Triple Tuner"),
           "makers": (("LG", ("OLED evo C3", "OLED B3", "OLED G3")), ("Samsung", ("QLED Q80C", "QLED Q70C", "QN90C")),
                      ("Sony", ("Bravia X75WL", "Bravia X80L")), ("TCL", ("C645", "C745")),
                      ("Philips", ("PUS8508 Ambilight", "OLED808")), ("Hisense", ("A6K", "E7KQ")))},
    "gpu": {"noun": ("Graphics Card", "Grafikkarte", "Carte graphique", "Tarjeta gráfica", "Scheda video"),
            "attrs": ("capacity", "edition"), "axes": {"model": 4, "capacity": 1, "edition": 1},
            "capacity": (8, 12, 16), "edition": ("", "OC"), "price": (70, 750),
            "specs": ("GDDR6", "PCIe 4.0", "HDMI 2.1", "DisplayPort 1.4a", "DLSS 3", "Ray Tracing", "dual fan",
                      "low profile"),
            "makers": (("MSI", ("GeForce RTX 4060 Ventus 2X", "GeForce RTX 4060 Ti Ventus 2X",
                                "GeForce RTX 4070 Ventus 2X")),
                       ("Zotac", ("GeForce GT 730", "GeForce GT 1030")), ("Asus", ("GeForce GT 430", "GeForce GT 440")),
                       ("Asus", ("Dual Radeon RX 7600", "Dual Radeon RX 7600 XT")),
                       ("Gigabyte", ("GeForce RTX 3060 Gaming", "GeForce RTX 3060 Ti Gaming")),
                       ("Sapphire", ("Pulse Radeon RX 7700 XT", "Pulse Radeon RX 7800 XT")))},
    "battery": {"noun": ("Batteries", "Batterien", "Piles", "Pilas", "Batterie"), "attrs": ("pack",),
                "axes": {"pack": 4, "model": 1}, "pack": (4, 8, 12, 16, 20, 24), "price": (4, 35),
                "specs": ("1.5V", "long-lasting", "blister", "10-year shelf life", "household", "toys"),
                "makers": (("Duracell", ("Plus AA", "Plus AAA")),
                           ("Varta", ("Longlife Power AA", "Longlife Power AAA")),
                           ("Panasonic", ("eneloop AA 1900mAh", "eneloop AAA 800mAh")),
                           ("Energizer", ("Max AA", "Max AAA")))},
    "cable": {"noun": ("Charging Cable", "Ladekabel", "Câble de charge", "Cable de carga", "Cavo di ricarica"),
              "attrs": ("colour", "pack"), "axes": {"pack": 2, "colour": 1, "model": 1}, "colour": ("black", "white"),
              "pack": (1, 2, 3), "price": (8, 30), "specs": ("100W", "60W", "braided", "fast charging", "MFi"),
              "makers": (("Anker", ("PowerLine III USB-C to USB-C 0.9m", "PowerLine III USB-C to USB-C 1.8m")),
                         ("Ugreen", ("USB-C to Lightning 1m", "USB-C to Lightning 2m")),
                         ("Belkin", ("BoostCharge USB-C 1m", "BoostCharge USB-C 2m")))},
    "console": {"noun": ("Console", "Konsole", "Console", "Consola", "Console"), "attrs": ("colour", "edition"),
                "axes": {"edition": 3, "model": 2, "colour": 1}, "colour": ("white", "black"), "price": (90, 550),
                "edition": ("", "Digital Edition", "Signature Edition", "OLED Model", "Lite"),
                "specs": ("incl. controller", "1TB", "Wi-Fi", "waterproof", "300 ppi", "with ads", "HDMI"),
                "makers": (("Sony", ("PlayStation 5", "PlayStation 5 Slim")), ("Nintendo", ("Switch",)),
                           ("Amazon", ("Kindle Paperwhite", "Kindle Scribe")), ("Microsoft", ("Xbox Series S",
                                                                                            "Xbox Series X")),
                           ("Kobo", ("Clara 2E", "Libra 2", "Clara BW")))},
}


def _families(rng: random.Random, n: int) -> list[dict]:
    """Up to `n` families, none sharing a product with another (a product is one entity)."""
    out: list[dict] = []
    used: set[tuple] = set()
    for _ in range(n * 20):
        if len(out) >= n:
            break
        line = rng.choice(list(LINES))
        spec = LINES[line]
        brand, models = rng.choice(spec["makers"])
        axes = [a for a in spec["axes"] if a != "model" or len(models) > 1]
        axis = rng.choices(axes, weights=[spec["axes"][a] for a in axes])[0]
        fixed = {a: rng.choice(spec[a]) for a in spec["attrs"]}
        fixed["pack"] = fixed.get("pack", 1) if rng.random() < 0.3 else 1
        fixed["edition"] = ""
        fixed["model"] = rng.choice(models)
        pool = list(models if axis == "model" else spec[axis])
        k = min(len(pool), rng.choices((2, 3, 4, 5), weights=(35, 30, 20, 15))[0])
        start = rng.randrange(len(pool) - k + 1)
        values = pool[start:start + k] if axis in ("capacity", "size", "pack") else rng.sample(pool, k)
        products = [{**fixed, axis: v} for v in values]
        keys = [(line, brand, *(str(p.get(a, "")) for a in ("model", "colour", "capacity", "size", "pack", "edition")))
                for p in products]
        if used & set(keys):
            continue
        used |= set(keys)
        base = rng.uniform(*spec["price"])
        for i, p in enumerate(products):
            step = 1.0 if axis == "colour" else 1.0 + 0.3 * (pool.index(p[axis]) if axis != "edition" else i)
            p.update(key="|".join(keys[i]), price=base * step, part=_part(rng, brand))
        out.append({"line": line, "brand": brand, "axis": axis, "products": products, "tint": rng.choice(TINTS),
                    "specs": rng.sample(spec["specs"], min(4, len(spec["specs"])))})
    return out


def _part(rng: random.Random, brand: str) -> str:
    letters = "".join(rng.choice("ABCDEFGHKLMNPRSTWXZ") for _ in range(rng.choice((2, 3))))
    digits = "".join(rng.choice("0123456789") for _ in range(rng.choice((3, 4, 5))))
    tail = rng.choice(("", "/EU", "-WW", "B", "ZKA", "/DE"))
    return f"{letters}-{digits}{tail}" if brand != "Apple" else f"M{letters}{digits[:2]}ZD/A"


def _shops(rng: random.Random, n: int = 40) -> list[dict]:
    out = []
    for _ in range(n):
        lang = rng.choices(LANGS, weights=(70, 12, 6, 6, 6))[0]  # mostly English, so a group has a few foreign titles
        cur = rng.choices(CURRENCIES, weights=[c[2] for c in CURRENCIES])[0] if rng.random() < 0.35 else CURRENCIES[0]
        out.append({
            "lang": lang, "order": rng.randrange(5) if lang in ("en", "de") else rng.choice((1, 1, 4)),
            "sep": rng.choice((" ", " ", " - ", ", ", " | ", " / ")), "paren": rng.random() < 0.25,
            "brand_at": rng.choices(("front", "end", "none"), weights=(60, 15, 25))[0],
            "brand_col": rng.choice((0.0, 0.0, 0.5, 0.9)), "tag": rng.choice(TAGS) if rng.random() < 0.45 else "",
            "case": rng.choices(("", "upper", "lower"), weights=(80, 10, 10))[0],
            "codes": rng.choices(("keep", "join", "space"), weights=(60, 28, 12))[0],
            "part": rng.choice((0.0, 0.0, 0.15, 0.5)), "specs": rng.choice((0, 1, 2, 3)),
            "abbrev": rng.random() < 0.3, "desc": rng.choice((0.0, 0.3, 0.8)), "currency": cur,
            "factor": rng.uniform(0.87, 1.15), "no_price": rng.choice((0.0, 0.02, 0.1, 0.3)),
            "unit": rng.choice(("{v}GB", "{v} GB", "{v}-GB", "{v}gb", "{v} Gb")), "inch": rng.randrange(4),
        })
    return out


def _capacity(gb: int, shop: dict, line: str, rng: random.Random) -> str:
    unit = shop["unit"] if shop["lang"] != "fr" else rng.choice(("{v}Go", "{v} Go"))
    tera = unit.replace("G", "T").replace("g", "t")
    if gb >= 1000 and (gb % 1000 == 0) and rng.random() < 0.9:
        return tera.format(v=gb // 1000)
    if gb in (500, 512) and rng.random() < 0.15:
        return tera.format(v="0,5" if shop["lang"] in ("de", "fr") else "0.5")
    text = unit.format(v=gb)
    if line == "gpu" and rng.random() < 0.3:
        return f"{gb}G"
    return text + (" SSD" if line == "laptop" and rng.random() < 0.5 else "")


def _size(inch: int, shop: dict, rng: random.Random) -> str:
    cm = round(inch * 2.54)
    return (f'{inch}"', rng.choice(INCH_WORDS[shop["lang"]]).format(n=inch), f"{cm} cm",
            f"{cm} cm ({inch} Zoll)" if shop["lang"] == "de" else f"{inch}'' ({cm} cm)")[shop["inch"]]


def _code(text: str, how: str) -> str:
    """Model codes as shops write them: WH-1000XM4, WH1000XM4, WH 1000XM4; GT 430, GT430."""
    if how == "keep":
        return text
    words = text.split()
    if how == "join":
        out: list[str] = []
        for w in words:
            if out and w[0].isdigit() and out[-1].isupper() and len(out[-1]) <= 3 and out[-1].isalpha():
                out[-1] += w
            else:
                out.append(re.sub(r"^([A-Za-z]+)-(?=\d)", r"\1", w))
        return " ".join(out)
    return " ".join(w.replace("-", " ") if any(c.isdigit() for c in w) else w for w in words)


def _typo(text: str, rng: random.Random) -> str:
    words = text.split(" ")
    idx = [i for i, w in enumerate(words) if len(w) >= 5 and w.isalpha()]
    if not idx:
        return text
    i = rng.choice(idx)
    w, j = words[i], rng.randrange(1, len(words[i]) - 1)
    words[i] = rng.choice((w[:j] + w[j + 1:], w[:j] + w[j] + w[j:], w[:j - 1] + w[j] + w[j - 1] + w[j + 1:]))
    return " ".join(words)


def _title(fam: dict, prod: dict, shop: dict, rng: random.Random) -> tuple[str, str]:
    """(title, description) for one shop's offer of one product."""
    line, spec, li = fam["line"], LINES[fam["line"]], LANGS.index(shop["lang"])
    axis = fam["axis"]
    variant: list[str] = []
    for attr in ("colour", "capacity", "size", "pack", "edition"):
        value = prod.get(attr)
        if not value or (attr == "pack" and value == 1) or attr not in spec["attrs"]:
            continue
        if rng.random() > (0.94 if attr == axis else 0.6):  # a shop leaves the attribute out
            continue
        if attr == "colour":
            word = COLOURS[value][li if rng.random() < 0.85 else 0]
            variant.append(f"{fam['tint']} {word}" if rng.random() < 0.2 else word)
        elif attr == "capacity":
            variant.append(_capacity(value, shop, line, rng))
        elif attr == "size":
            variant.append(_size(value, shop, rng))
        elif attr == "pack":
            n = int(value)
            words = PACK_WORDS[shop["lang"]] + (("Twin Pack", "Doppelpack") if n == 2 else ())
            variant.append(rng.choice(words).format(n=n))
        else:
            variant.append(value)
    if rng.random() < 0.3:
        rng.shuffle(variant)
    model = _code(prod["model"], shop["codes"])
    noun = spec["noun"][li if rng.random() < 0.9 else 0]
    specs = rng.sample(fam["specs"], min(shop["specs"] + rng.choice((0, 0, 1)), len(fam["specs"])))
    var = (f"({', '.join(variant)})" if shop["paren"] else shop["sep"].join(variant)) if variant else ""
    seg = {"B": fam["brand"] if shop["brand_at"] == "front" else "", "M": model, "V": var, "N": noun,
           "S": " ".join(specs)}
    order = ("BMVNS", "NBMVS", "BMNVS", "MVNSB", "BNMVS")[shop["order"]]
    title = shop["sep"].join(seg[k] for k in order if seg[k] and not (k == "N" and rng.random() < 0.25))
    if shop["brand_at"] == "end":
        title += rng.choice((f" by {fam['brand']}", f" - {fam['brand'].upper()}", f" {fam['brand']}"))
    if rng.random() < shop["part"]:
        part = prod["part"] if shop["codes"] == "keep" else prod["part"].replace("-", "").replace("/", "")
        title += rng.choice((f" ({part})", f" {part}", f" - Art.Nr. {part}"))
    if shop["abbrev"]:
        for long, short in ABBREV:
            title = title.replace(long, short) if rng.random() < 0.6 else title
    if rng.random() < 0.12:
        title = _typo(title, rng)
    if shop["tag"]:
        title += " " + shop["tag"]
    title = title.upper() if shop["case"] == "upper" else title.lower() if shop["case"] == "lower" else title
    desc = ""
    if rng.random() < shop["desc"]:
        parts = [*rng.sample(fam["specs"], 2), *variant[:2]]
        if rng.random() < 0.12:  # "also available in" names the siblings: a trap for word overlap
            others = [str(p[axis]) for p in fam["products"] if p is not prod and p[axis]]
            parts.append("also available: " + ", ".join(others[:3]))
        desc = "; ".join(p for p in parts if p)
    return " ".join(title.split()), desc


def generate(n_records: int, seed: int) -> tuple[list[dict[str, str]], dict[str, str]]:
    rng = random.Random(seed)
    shops = _shops(rng)
    plan: list[tuple[dict, dict, dict]] = []
    for fam in _families(rng, n_records // 5 + 10):
        for prod in fam["products"]:
            size = rng.choices(("one", "few", "many"), weights=(18, 32, 50))[0]
            k = 1 if size == "one" else rng.randint(2, 4) if size == "few" else \
                rng.choices(range(5, 21), weights=[1 / (j - 3) for j in range(5, 21)])[0]
            plan += [(fam, prod, shop) for shop in rng.sample(shops, k)]
        if len(plan) >= n_records:
            break
    plan = plan[:n_records]
    rng.shuffle(plan)
    rows, truth = [], {}
    for i, (fam, prod, shop) in enumerate(plan):
        title, desc = _title(fam, prod, shop, rng)
        code, rate, _ = shop["currency"]
        price = "" if rng.random() < shop["no_price"] else f"{prod['price'] * rate * shop['factor']:.2f}"
        brand = fam["brand"] if rng.random() < shop["brand_col"] else ""
        rid = f"S{i:06d}"
        rows.append({"listing_id": rid, "title": title, "description": desc, "brand": brand, "price": price,
                     "currency": code if price else ""})
        truth[rid] = prod["key"]
    return rows, truth


def write(rows: list[dict[str, str]], truth: dict[str, str], out: Path, name: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with (out / name).open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with (out / "truth.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(("id", "entity"))
        w.writerows(truth.items())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("sibling-offers"))
    args = ap.parse_args()
    rows, truth = generate(args.records, args.seed)
    write(rows, truth, args.out, "listings.csv")
    print(f"{len(rows)} offers, {len(set(truth.values()))} products -> {args.out}")


if __name__ == "__main__":
    main()
