"""Synthetic product listings with ground truth: product lines, variants, sellers, photos.

An *entity* is one product variant (a line in one capacity/size/colour). Its first listing has the
variant's packshot; duplicate listings by other sellers rewrite the title (order, case, unit style
"500ml"/"0.5 L", "1TB"/"1000 GB", colour synonyms, marketing noise, the brand left out), copy the photo
as it is or edited (resize, recompress, crop, colour shift, text overlay) or re-shoot it, or have none,
and move the price. Hard negatives come for free and on purpose: variants of a line share the line's look (a
128GB and a 256GB phone have the same photo), and some sellers use a sibling variant's stock photo.

Nothing from the matcher is imported (the title parser included): the benchmark must not share lookup
tables with what it measures.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from pathlib import Path

from consumer.generate.photos import EDITS, Look, draw_product, edit_photo, jpeg_bytes

__all__ = ["HEADER", "generate_listings", "write_listings"]

HEADER = ("listing_id", "title", "description", "brand", "price", "currency", "category", "seller_id", "image")

_SYL = ("ka", "lo", "ra", "ven", "tor", "mi", "zen", "no", "qua", "dri", "sol", "pex", "fin", "ul", "bra", "xo",
        "tel", "vis", "mar", "lu", "ner", "ost", "gal", "ion", "pri", "sky", "dex", "ar", "ro", "ty")
COLOURS = {"black": ((20, 20, 20), ("Black", "black", "BLACK", "Jet Black")),
           "white": ((245, 245, 245), ("White", "white", "WHITE")),
           "grey": ((128, 128, 128), ("Grey", "Gray", "grey", "gray")),
           "silver": ((192, 192, 200), ("Silver", "silver")),
           "blue": ((30, 80, 200), ("Blue", "blue", "BLUE")),
           "red": ((200, 30, 40), ("Red", "red", "RED")),
           "green": ((40, 150, 60), ("Green", "green")),
           "pink": ((240, 130, 170), ("Pink", "pink")),
           "navy": ((20, 30, 90), ("Navy", "navy", "Navy Blue")),
           "gold": ((210, 170, 60), ("Gold", "gold"))}
#: category: (shape, attribute kinds that make variants, base price range, nouns)
CATEGORIES: dict[str, tuple[str, tuple[str, ...], tuple[float, float], tuple[str, ...]]] = {
    "phones": ("phone", ("cap", "colour"), (150, 1200), ("Smartphone", "Phone", "Mobile Phone")),
    "headphones": ("headphones", ("colour", "gen"), (30, 400), ("Wireless Headphones", "Headphones",
                                                                  "Over-Ear Headphones")),
    "shoes": ("shoe", ("size", "colour"), (40, 180), ("Running Shoes", "Trainers", "Sneakers")),
    "shirts": ("shirt", ("tsize", "colour"), (10, 60), ("T-Shirt", "Tee", "Cotton T-Shirt")),
    "drinks": ("bottle", ("vol", "pack"), (1, 25), ("Mineral Water", "Sparkling Water", "Juice")),
    "shampoo": ("bottle", ("vol",), (3, 20), ("Shampoo", "Conditioner", "Shower Gel")),
    "storage": ("box", ("cap",), (40, 400), ("Portable SSD", "External Hard Drive", "USB Flash Drive")),
    "coffee": ("box", ("mass",), (4, 30), ("Coffee Beans", "Ground Coffee", "Espresso Beans")),
}
MARKETING = ("NEW", "Brand New", "Free Shipping", "Genuine", "Original", "Fast Delivery", "Best Price", "UK Seller",
             "Sealed", "Official")
DESCRIPTIONS = ("Brand new in box.", "Ships within 24 hours.", "Original product with warranty.",
                "Great condition, never used.", "Fast and free delivery.", "Authentic item from official stock.")


@dataclass(frozen=True)
class Variant:
    entity: str
    brand: str
    line: str
    category: str
    noun: str
    attrs: tuple[tuple[str, str], ...]
    price: float
    look: Look
    sibling_looks: tuple[Look, ...] = ()


def _word(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(_SYL) for _ in range(n)).capitalize()


def _attr_options(kind: str, rng: random.Random) -> list[str]:
    if kind == "cap":
        return rng.sample(["32", "64", "128", "256", "512", "1000", "2000"], rng.randint(2, 3))
    if kind == "colour":
        return rng.sample(list(COLOURS), rng.randint(1, 3))
    if kind == "gen":
        return rng.sample(["2", "3", "4", "5"], rng.randint(1, 2))
    if kind == "size":
        return rng.sample(["6", "7", "8", "9", "10", "11", "12"], rng.randint(2, 4))
    if kind == "tsize":
        return rng.sample(["S", "M", "L", "XL"], rng.randint(2, 4))
    if kind == "vol":
        return rng.sample(["250", "330", "500", "750", "1000", "1500"], rng.randint(1, 3))
    if kind == "pack":
        return rng.sample(["1", "6", "12"], rng.randint(1, 2))
    if kind == "mass":
        return rng.sample(["250", "500", "1000"], rng.randint(1, 3))
    raise ValueError(kind)


def _catalogue(rng: random.Random, n_entities: int) -> list[Variant]:
    brands = sorted({_word(rng, rng.randint(2, 3)) for _ in range(60)})
    out: list[Variant] = []
    while len(out) < n_entities:
        cat = rng.choice(list(CATEGORIES))
        shape, kinds, (lo, hi), nouns = CATEGORIES[cat]
        brand, line, noun = rng.choice(brands), _word(rng, rng.randint(2, 3)), rng.choice(nouns)
        model = f"{rng.choice('ABCDGKMSXZ')}{rng.randint(1, 99)}" if cat in ("phones", "headphones") else ""
        line_name = f"{line} {model}".strip()
        base = rng.uniform(lo, hi)
        line_colour = tuple(rng.randint(30, 220) for _ in range(3))
        accent = tuple(rng.randint(0, 255) for _ in range(3))
        seed = rng.randint(0, 10**9)
        options = {k: _attr_options(k, rng) for k in kinds}
        combos: list[tuple[tuple[str, str], ...]] = [()]
        for k in kinds:
            combos = [c + ((k, v),) for c in combos for v in options[k]]
        combos = rng.sample(combos, min(len(combos), rng.randint(1, 5)))
        looks = []
        for combo in combos:
            colour = COLOURS[dict(combo)["colour"]][0] if "colour" in dict(combo) else line_colour
            looks.append(Look(shape, colour, accent, brand, seed))  # type: ignore[arg-type]
        for i, combo in enumerate(combos):
            scale = 1.0 + 0.15 * i
            out.append(Variant(f"E{len(out):06d}", brand, line_name, cat, noun, combo, round(base * scale, 2), looks[i],
                               tuple(lk for j, lk in enumerate(looks) if j != i)))
    return out[:n_entities]


def _render_attr(kind: str, value: str, rng: random.Random) -> str:
    v = int(value) if value.isdigit() else value
    if kind == "cap":
        if v >= 1000 and rng.random() < 0.5:
            return rng.choice((f"{v // 1000}TB", f"{v // 1000} TB", f"{v // 1000}tb"))
        return rng.choice((f"{v}GB", f"{v} GB", f"{v}gb"))
    if kind == "colour":
        return rng.choice(COLOURS[value][1])
    if kind == "gen":
        return rng.choice((f"Gen {v}", f"{v}{'nd' if v == 2 else 'rd' if v == 3 else 'th'} Generation", f"Gen{v}"))
    if kind == "size":
        return rng.choice((f"UK {v}", f"Size {v}", f"UK{v}", f"size {v}"))
    if kind == "tsize":
        words = {"S": "Small", "M": "Medium", "L": "Large", "XL": "XL"}
        return rng.choice((f"Size {value}", words[value], f"size {value.lower()}"))
    if kind == "vol":
        if v >= 1000 or rng.random() < 0.3:
            return rng.choice((f"{v / 1000:g}L", f"{v / 1000:g} L", f"{v / 1000:g} Litre"))
        return rng.choice((f"{v}ml", f"{v} ml", f"{v}ML", f"{v / 10:g}cl"))
    if kind == "pack":
        return "" if v == 1 else rng.choice((f"{v}-Pack", f"Pack of {v}", f"{v} pack", f"{v}x"))
    if kind == "mass":
        return rng.choice((f"{v / 1000:g}kg", f"{v / 1000:g} kg")) if v >= 1000 and rng.random() < 0.6 \
            else rng.choice((f"{v}g", f"{v} g", f"{v}G"))
    raise ValueError(kind)


def _title(v: Variant, rng: random.Random, rewrite: bool) -> str:
    head = [v.brand, v.line] if not rewrite or rng.random() < 0.85 else [v.line]
    words = [*head, v.noun] + [a for k, val in v.attrs if (a := _render_attr(k, val, rng))]
    if rewrite:
        body = words[len(head):]
        if rng.random() < 0.5:
            rng.shuffle(body)
        words = words[:len(head)] + body
        if rng.random() < 0.4:
            words.insert(rng.randint(0, len(words)), rng.choice(MARKETING))
    sep = rng.choice((" ", " ", " - ", ", ", " | ")) if rewrite else " "
    title = words[0] + " " + sep.join(words[1:]) if len(words) > 1 else words[0]
    if rewrite:
        case = rng.random()
        title = title.lower() if case < 0.15 else title.upper() if case < 0.22 else title
    return " ".join(title.split())


def generate_listings(out_dir: Path, n_records: int, seed: int, image_dir: str = "images"
                      ) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Rows and truth; photos are written as JPEG files under `out_dir/image_dir`."""
    rng = random.Random(seed)
    variants = _catalogue(rng, n_records)  # more than needed: the plan stops at n_records listings
    (out_dir / image_dir).mkdir(parents=True, exist_ok=True)
    plan: list[tuple[Variant, int]] = []
    for v in variants:
        if len(plan) >= n_records:
            break
        copies = rng.choices((1, 2, 3, 4, 5), weights=(50, 25, 13, 8, 4))[0]
        plan += [(v, k) for k in range(copies)]
    plan = plan[:n_records]
    rng.shuffle(plan)
    rows, truth = [], []
    sellers = [f"S{i:05d}" for i in range(max(10, n_records // 8))]
    for i, (v, k) in enumerate(plan):
        lid = f"L{i:07d}"
        fname = f"{image_dir}/{lid}.jpg"
        pick = rng.random()
        if k == 0 or pick < 0.4:  # the packshot, or an edited copy of it
            img = draw_product(v.look)
            if v.sibling_looks and rng.random() < 0.08:  # a sibling variant's stock photo
                img = draw_product(rng.choice(v.sibling_looks))
            if k > 0:  # a copy: unedited (the same stock photo, recompressed below) or with 1-2 edits
                for edit in rng.sample(EDITS, rng.choice((0, 1, 1, 2))):
                    img = edit_photo(img, edit, rng)
        elif pick < 0.8:
            img = draw_product(v.look, shot=k)
        else:
            img = None
        if img is not None:
            (out_dir / fname).write_bytes(jpeg_bytes(img, rng.randint(70, 95)))
        price = v.price * (1.0 if k == 0 else rng.uniform(0.88, 1.12))
        rows.append({
            "listing_id": lid, "title": _title(v, rng, rewrite=k > 0),
            "description": rng.choice(DESCRIPTIONS) if rng.random() < 0.6 else "",
            "brand": v.brand if rng.random() < 0.8 else "", "price": f"{price:.2f}",
            "currency": "EUR" if rng.random() < 0.9 else "GBP", "category": v.category if rng.random() < 0.9 else "",
            "seller_id": rng.choice(sellers), "image": fname if img is not None else ""})
        truth.append({"listing_id": lid, "entity_id": v.entity})
    return rows, truth


def write_listings(path_csv: str | Path, path_truth: str | Path, n_records: int, seed: int) -> None:
    """Write the listings CSV (photos beside it, in `images/`) and its truth CSV."""
    path_csv = Path(path_csv)
    rows, truth = generate_listings(path_csv.parent, n_records, seed,
                                    image_dir=f"{path_csv.stem}-images")
    for path, header, items in ((path_csv, HEADER, rows), (path_truth, ("listing_id", "entity_id"), truth)):
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(header), lineterminator="\n")
            writer.writeheader()
            writer.writerows(items)
