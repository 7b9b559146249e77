"""A marketplace's listings with photos, written unlike this project's generator: most products listed once,
siblings that the photo tells apart better than the title.

    python benchmarks/photo_offers.py [--records 4000] [--seed 1] [--out DIR]

Why: the quality suite's listing files with photos come from `consumer/generate/listings.py`, where the
variants of a line share one packshot, so the photo can never tell two siblings apart there. Another
author's generator kept out of the team's sight lost most of its precision to colour siblings (issue 37:
"the photo, the one modality that tells colour siblings apart here"). This file stands for that kind:

- products come in families (one model in several colours, capacities or pack sizes); each variant's photo
  is the family's object drawn in the variant's colour, so colour siblings have different photos and
  capacity or pack siblings the same one;
- most products are listed once (a lone listing's most similar neighbour is then its sibling), some two to
  four times by other sellers, who copy the photo (re-encoded, resized, cropped, brightened) or take their
  own (other background, position and size), and rewrite the title: word order, case, separators, the
  brand dropped, the colour left out (a quarter of the copies) or written as a shade ("Midnight",
  "Charcoal"), now and then in German or French, a seller's tag line;
- prices jitter by seller; siblings differ a little.

The vocabulary is this module's own: nothing is imported from the matcher (`consumer`).

`generate(n, seed, image_dir)` returns (rows with columns listing_id,title,description,brand,price,currency,
image; truth listing_id -> entity) and writes the photos as JPEG files under `image_dir`, named as the rows'
`image` column gives them relative to the folder holding `image_dir`.
"""

from __future__ import annotations

import argparse
import io
import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageEnhance, ImageFilter
from sibling_offers import write  # the suite's generators write their files one way

SIZE = 224
#: colour key -> (RGB, English words, shades, German, French)
COLOURS = {
    "black": ((25, 25, 28), ("Black",), ("Charcoal", "Onyx", "Midnight"), "Schwarz", "Noir"),
    "white": ((240, 240, 236), ("White",), ("Snow", "Ivory", "Chalk"), "Weiss", "Blanc"),
    "red": ((196, 32, 38), ("Red",), ("Crimson", "Cherry", "Ruby"), "Rot", "Rouge"),
    "blue": ((35, 80, 190), ("Blue",), ("Cobalt", "Ocean", "Sapphire"), "Blau", "Bleu"),
    "green": ((40, 140, 70), ("Green",), ("Forest", "Mint", "Emerald"), "Gruen", "Vert"),
    "pink": ((236, 128, 170), ("Pink",), ("Blush", "Rose", "Flamingo"), "Rosa", "Rose"),
    "yellow": ((235, 200, 40), ("Yellow",), ("Lemon", "Sunflower", "Mustard"), "Gelb", "Jaune"),
    "purple": ((120, 60, 160), ("Purple",), ("Violet", "Lavender", "Plum"), "Lila", "Violet"),
    "grey": ((130, 132, 136), ("Grey", "Gray"), ("Slate", "Graphite", "Ash"), "Grau", "Gris"),
    "orange": ((236, 120, 30), ("Orange",), ("Tangerine", "Amber", "Coral"), "Orange", "Orange"),
}
#: kind -> (nouns, shape, axes a family varies on, capacity words, price range)
KINDS = {
    "bottle": (("Insulated Bottle", "Water Bottle", "Thermo Flask"), "bottle", ("colour", "size"),
               ("500ml", "750ml", "1L"), (12, 45)),
    "speaker": (("Bluetooth Speaker", "Portable Speaker", "Mini Speaker"), "round", ("colour",), (), (25, 180)),
    "backpack": (("Backpack", "Daypack", "Laptop Backpack"), "bag", ("colour", "size"), ("18L", "25L", "32L"),
                 (30, 140)),
    "mouse": (("Wireless Mouse", "Gaming Mouse", "Ergonomic Mouse"), "oval", ("colour", "model"), (), (15, 90)),
    "kettle": (("Electric Kettle", "Kettle", "Travel Kettle"), "kettle", ("colour", "size"), ("1.0L", "1.7L"),
               (20, 120)),
    "case": (("Phone Case", "Protective Case", "Slim Case"), "slab", ("colour", "model"), (), (8, 40)),
    "mug": (("Travel Mug", "Coffee Mug", "Tumbler"), "mug", ("colour", "pack"), (), (9, 35)),
    "drive": (("Portable SSD", "External SSD", "Pocket SSD"), "slab", ("colour", "capacity"),
              ("500GB", "1TB", "2TB"), (60, 260)),
}
MAKERS = ("Norvik", "Ecolume", "Tavora", "Brightline", "Quillon", "Mistral Works", "Ardent", "Kobayo", "Lindqvist",
          "Pelora", "Zentrix", "Halvard", "Orimo", "Vexa", "Callisto Home", "Rowan & Pike")
LINE_WORDS = ("Aero", "Nimbus", "Terra", "Pulse", "Drift", "Summit", "Echo", "Nova", "Vista", "Orbit", "Crest",
              "Flux", "Haven", "Ridge", "Glide", "Spark")
TAGS = ("- Free Delivery", "| Official Store", "(2024 Model)", "** Sale **", "- Fast Shipping", "| In Stock",
        "Genuine", "[Renewed Box]", "- Gift Idea", "w/ Warranty")
PACKS = (1, 2, 4)


def _photo(shape: str, rgb: tuple[int, int, int], rng: random.Random) -> Image.Image:
    """The family's object in the variant's colour: a packshot or a seller's own shot (`rng` decides the
    background, placement and scale)."""
    bg = tuple(rng.randint(215, 255) for _ in range(3))
    img = Image.new("RGB", (SIZE, SIZE), bg)  # type: ignore[arg-type]
    d = ImageDraw.Draw(img)
    s = rng.uniform(0.75, 1.0)
    cx, cy = SIZE / 2 + rng.uniform(-18, 18), SIZE / 2 + rng.uniform(-14, 14)
    w, h = 90 * s, 150 * s
    dark = tuple(max(0, c - 60) for c in rgb)
    if shape == "bottle":
        d.rounded_rectangle((cx - w / 3, cy - h / 2.4, cx + w / 3, cy + h / 2), 14, fill=rgb, outline=dark, width=3)
        d.rectangle((cx - w / 7, cy - h / 1.8, cx + w / 7, cy - h / 2.4), fill=dark)
    elif shape == "round":
        d.ellipse((cx - w / 1.4, cy - w / 1.4, cx + w / 1.4, cy + w / 1.4), fill=rgb, outline=dark, width=4)
        d.ellipse((cx - w / 3, cy - w / 3, cx + w / 3, cy + w / 3), fill=dark)
    elif shape == "bag":
        d.rounded_rectangle((cx - w / 1.6, cy - h / 2.6, cx + w / 1.6, cy + h / 2), 22, fill=rgb, outline=dark, width=3)
        d.arc((cx - w / 3, cy - h / 1.7, cx + w / 3, cy - h / 4), 180, 360, fill=dark, width=6)
        d.rectangle((cx - w / 2.5, cy, cx + w / 2.5, cy + h / 4), outline=dark, width=3)
    elif shape == "oval":
        d.ellipse((cx - w / 2.2, cy - h / 2.6, cx + w / 2.2, cy + h / 2.6), fill=rgb, outline=dark, width=3)
        d.line((cx, cy - h / 2.6, cx, cy - h / 10), fill=dark, width=3)
    elif shape == "kettle":
        d.polygon([(cx - w / 2, cy + h / 2.5), (cx + w / 2, cy + h / 2.5), (cx + w / 3, cy - h / 3),
                   (cx - w / 3, cy - h / 3)], fill=rgb, outline=dark)
        d.arc((cx + w / 4, cy - h / 4, cx + w / 1.2, cy + h / 5), 270, 90, fill=dark, width=7)
    elif shape == "mug":
        d.rectangle((cx - w / 2.4, cy - h / 3, cx + w / 2.4, cy + h / 3), fill=rgb, outline=dark, width=3)
        d.ellipse((cx + w / 3, cy - h / 6, cx + w / 1.3, cy + h / 6), outline=dark, width=7)
    else:  # slab
        d.rounded_rectangle((cx - w / 2.3, cy - h / 2.2, cx + w / 2.3, cy + h / 2.2), 12, fill=rgb, outline=dark,
                            width=3)
        d.ellipse((cx - 9, cy - h / 2.2 + 10, cx + 9, cy - h / 2.2 + 28), fill=dark)
    return img


def _copy(img: Image.Image, rng: random.Random) -> Image.Image:
    """A seller's copy of a photo: resized, cropped, brightened or re-encoded."""
    out = img
    if rng.random() < 0.5:
        m = rng.randint(4, 20)
        out = out.crop((m, m, SIZE - m, SIZE - m)).resize((SIZE, SIZE))
    if rng.random() < 0.4:
        out = ImageEnhance.Brightness(out).enhance(rng.uniform(0.85, 1.15))
    if rng.random() < 0.3:
        out = out.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    if rng.random() < 0.4:
        side = rng.choice((160, 192, 256, 320))
        out = out.resize((side, side))
    return out


def _jpeg(img: Image.Image, path: Path, rng: random.Random) -> None:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=rng.randint(60, 92))
    path.write_bytes(buf.getvalue())


def _title(p: dict, rng: random.Random, first: bool) -> str:
    colour = p["colour"]
    words = COLOURS[colour]
    r = rng.random()
    # the colour as the maker names it; a seller may leave it out (then only the photo tells the
    # siblings apart) or write a shade; a few import sellers write it in German or French
    cw = (rng.choice(words[1]) if first or r < 0.6 else "" if r < 0.85 else rng.choice(words[2]) if r < 0.95
          else rng.choice(words[3:5]))
    parts = [p["maker"], p["line"], p["noun"]]
    attrs = [x for x in (p["model"], p["spec"], cw, p["pack"]) if x]
    if not first:
        if rng.random() < 0.3:
            parts = parts[1:]  # the brand left out
        rng.shuffle(attrs)
        if rng.random() < 0.3:
            parts = parts[1:] + parts[:1]
    sep = " " if first else rng.choice((" ", " - ", ", ", " | "))
    text = " ".join(parts) + (sep + sep.join(attrs) if attrs else "")
    if not first:
        if rng.random() < 0.35:
            text += " " + rng.choice(TAGS)
        r = rng.random()
        text = text.upper() if r < 0.1 else text.lower() if r < 0.25 else text
    return text


def _families(n_products: int, rng: random.Random) -> list[dict]:
    products: list[dict] = []
    fam = 0
    while len(products) < n_products:
        kind = rng.choice(sorted(KINDS))
        nouns, shape, axes, caps, (lo, hi) = KINDS[kind]
        maker, line = rng.choice(MAKERS), f"{rng.choice(LINE_WORDS)} {rng.randint(2, 9)}{rng.choice(('', 'X', 'S'))}"
        base = rng.uniform(lo, hi)
        colours = rng.sample(sorted(COLOURS), rng.randint(2, 5))
        second = rng.choice(axes[1:]) if len(axes) > 1 and rng.random() < 0.5 else None
        seconds: list[str] = {"size": list(caps), "capacity": list(caps), "model": ["", "Pro", "Lite"],
                              "pack": ["1", "2", "4"]}.get(second or "", [""])
        seconds = rng.sample(seconds, min(len(seconds), rng.randint(2, 3))) if second else [""]
        noun = rng.choice(nouns)
        for c in colours:
            for k, extra in enumerate(seconds):
                products.append({
                    "entity": f"F{fam}-{c}-{k}", "maker": maker, "line": line, "noun": noun, "nouns": nouns,
                    "shape": shape, "colour": c, "price": round(base * (1 + 0.15 * k) * rng.uniform(0.97, 1.03), 2),
                    "model": extra if second == "model" else "",
                    "spec": extra if second in ("size", "capacity") else "",
                    "pack": (f"{extra}-Pack" if extra != "1" else "") if second == "pack" else ""})
        fam += 1
    return products[:n_products]


def generate(n_records: int, seed: int, image_dir: Path) -> tuple[list[dict[str, str]], dict[str, str]]:
    rng = random.Random(seed)
    image_dir.mkdir(parents=True, exist_ok=True)
    # ~60% of products listed once, the rest 2-4 times (~1.7 listings a product): enough for n_records
    products = _families(int(n_records / 1.5) + 1, rng)
    rows: list[dict[str, str]] = []
    truth: dict[str, str] = {}
    for p in products:
        if len(rows) >= n_records:
            break
        copies = 1 if rng.random() < 0.6 else rng.choice((2, 2, 3, 4))
        shot = _photo(p["shape"], COLOURS[p["colour"]][0], rng)
        for j in range(copies):
            if len(rows) >= n_records:
                break
            lid = f"M{len(rows):06d}"
            img = shot if j == 0 else _copy(shot, rng) if rng.random() < 0.75 else _photo(
                p["shape"], COLOURS[p["colour"]][0], rng)
            has_photo = j == 0 or rng.random() < 0.9
            if has_photo:
                _jpeg(img, image_dir / f"{lid}.jpg", rng)
            price = p["price"] * (1 if j == 0 else rng.uniform(0.93, 1.08))
            rows.append({"listing_id": lid, "title": _title(p, rng, j == 0), "description": "",
                         "brand": p["maker"] if rng.random() < 0.6 else "", "price": f"{price:.2f}",
                         "currency": "EUR", "image": f"{image_dir.name}/{lid}.jpg" if has_photo else ""})
            truth[lid] = p["entity"]
    order = list(range(len(rows)))
    rng.shuffle(order)
    rows = [rows[i] for i in order]
    return rows, truth


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default="photo-offers")
    args = ap.parse_args()
    out = Path(args.out)
    rows, truth = generate(args.records, args.seed, out / "images")
    write(rows, truth, out, "listings.csv")
    print(f"{len(rows)} listings, {len(set(truth.values()))} products -> {out}")


if __name__ == "__main__":
    main()
