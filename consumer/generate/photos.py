"""Procedurally drawn product photos and the edits sellers make to them (for the listings generator and
the image benchmark).

A product photo is a packshot: a plain or gradient background, the product's silhouette (bottle, box,
shoe, phone, shirt, headphones: by category) in the variant's colour, a label with the brand, and a few
line-specific decorations. A *re-shot* photo is the same product drawn again with another background,
position, scale and rotation; an *edited copy* is the same file resized, recompressed, cropped, colour
shifted or overlaid with text. Nothing here is imported by the matcher.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageEnhance, ImageFont

__all__ = ["Look", "draw_product", "edit_photo", "EDITS", "jpeg_bytes"]

SIZE = 256

#: Edits a seller applies to a copied photo (the benchmark measures recall@1 per edit).
EDITS = ("resize", "jpeg", "crop", "colour", "overlay")


@dataclass(frozen=True)
class Look:
    """What makes a product's photo: the line's shape and decorations, the variant's colour and label."""

    shape: str
    colour: tuple[int, int, int]
    accent: tuple[int, int, int]
    label: str
    decor_seed: int


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _background(rng: random.Random) -> Image.Image:
    base = tuple(rng.randint(200, 255) for _ in range(3))
    img = Image.new("RGB", (SIZE, SIZE), base)  # type: ignore[arg-type]
    if rng.random() < 0.5:  # a soft gradient floor
        d = ImageDraw.Draw(img)
        tone = tuple(max(0, c - rng.randint(20, 60)) for c in base)
        top = rng.randint(150, 210)
        for y in range(top, SIZE):
            t = (y - top) / max(1, SIZE - top)
            d.line([(0, y), (SIZE, y)], fill=tuple(int(a + (b - a) * t) for a, b in zip(base, tone)))
    return img


def _silhouette(d: ImageDraw.ImageDraw, shape: str, box: tuple[int, int, int, int], colour: tuple[int, int, int],
                accent: tuple[int, int, int]) -> tuple[int, int, int, int]:
    """Draw the product; returns the label area."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    if shape == "bottle":
        d.rounded_rectangle([x0 + w * 0.25, y0 + h * 0.25, x1 - w * 0.25, y1], radius=int(w * 0.12), fill=colour)
        d.rectangle([x0 + w * 0.4, y0, x1 - w * 0.4, y0 + h * 0.28], fill=colour)
        d.rectangle([x0 + w * 0.38, y0, x1 - w * 0.38, y0 + h * 0.07], fill=accent)
        return int(x0 + w * 0.28), int(y0 + h * 0.5), int(x1 - w * 0.28), int(y0 + h * 0.75)
    if shape == "box":
        d.rectangle([x0 + w * 0.1, y0 + h * 0.15, x1 - w * 0.1, y1 - h * 0.05], fill=colour)
        d.polygon([(x0 + w * 0.1, y0 + h * 0.15), (x0 + w * 0.25, y0), (x1 + 0, y0), (x1 - w * 0.1, y0 + h * 0.15)],
                  fill=accent)
        return int(x0 + w * 0.15), int(y0 + h * 0.45), int(x1 - w * 0.15), int(y0 + h * 0.7)
    if shape == "shoe":
        d.polygon([(x0, y1 - h * 0.1), (x0 + w * 0.05, y0 + h * 0.45), (x0 + w * 0.45, y0 + h * 0.35),
                   (x0 + w * 0.6, y0 + h * 0.55), (x1, y0 + h * 0.7), (x1, y1 - h * 0.1)], fill=colour)
        d.rectangle([x0, y1 - h * 0.12, x1, y1 - h * 0.02], fill=accent)
        return int(x0 + w * 0.1), int(y0 + h * 0.6), int(x0 + w * 0.6), int(y0 + h * 0.8)
    if shape == "phone":
        d.rounded_rectangle([x0 + w * 0.25, y0, x1 - w * 0.25, y1], radius=int(w * 0.08), fill=colour)
        d.rounded_rectangle([x0 + w * 0.29, y0 + h * 0.05, x1 - w * 0.29, y1 - h * 0.08], radius=4, fill=accent)
        return int(x0 + w * 0.3), int(y0 + h * 0.4), int(x1 - w * 0.3), int(y0 + h * 0.55)
    if shape == "shirt":
        d.polygon([(x0 + w * 0.3, y0), (x0, y0 + h * 0.25), (x0 + w * 0.15, y0 + h * 0.4),
                   (x0 + w * 0.22, y0 + h * 0.3), (x0 + w * 0.22, y1), (x1 - w * 0.22, y1),
                   (x1 - w * 0.22, y0 + h * 0.3), (x1 - w * 0.15, y0 + h * 0.4), (x1, y0 + h * 0.25),
                   (x1 - w * 0.3, y0)], fill=colour)
        d.ellipse([x0 + w * 0.4, y0 - h * 0.05, x1 - w * 0.4, y0 + h * 0.08], fill=accent)
        return int(x0 + w * 0.3), int(y0 + h * 0.35), int(x1 - w * 0.3), int(y0 + h * 0.55)
    # headphones
    d.arc([x0 + w * 0.15, y0, x1 - w * 0.15, y1 - h * 0.2], 180, 360, fill=colour, width=max(4, int(w * 0.08)))
    d.ellipse([x0 + w * 0.05, y0 + h * 0.4, x0 + w * 0.35, y1], fill=colour)
    d.ellipse([x1 - w * 0.35, y0 + h * 0.4, x1 - w * 0.05, y1], fill=colour)
    d.ellipse([x0 + w * 0.12, y0 + h * 0.5, x0 + w * 0.28, y1 - h * 0.1], fill=accent)
    return int(x0 + w * 0.35), int(y0 + h * 0.15), int(x1 - w * 0.35), int(y0 + h * 0.3)


def draw_product(look: Look, shot: int = 0) -> Image.Image:
    """The product photo; `shot` > 0 re-shoots it (other background, framing, angle)."""
    rng = random.Random(look.decor_seed * 7919 + shot)
    img = _background(rng)
    layer = Image.new("RGBA", (SIZE, SIZE), (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    scale = 0.78 if shot == 0 else rng.uniform(0.65, 0.88)
    w = int(SIZE * scale)
    cx = SIZE // 2 + (0 if shot == 0 else rng.randint(-18, 18))
    cy = SIZE // 2 + (0 if shot == 0 else rng.randint(-14, 14))
    box = (cx - w // 2, cy - w // 2, cx + w // 2, cy + w // 2)
    lx0, ly0, lx1, ly1 = _silhouette(d, look.shape, box, look.colour, look.accent)
    deco = random.Random(look.decor_seed)
    for _ in range(deco.randint(1, 3)):  # line-specific stripes and dots
        y = deco.randint(ly0 - 20, ly1 + 20)
        d.line([(lx0, y), (lx1, y)], fill=look.accent, width=deco.randint(2, 5))
    d.rectangle([lx0, ly0, lx1, ly1], fill=(250, 250, 250))
    d.text(((lx0 + lx1) // 2, (ly0 + ly1) // 2), look.label[:10], fill=look.accent, anchor="mm",
           font=_font(max(8, (ly1 - ly0) // 2)))
    if shot:
        layer = layer.rotate(rng.uniform(-8, 8), resample=Image.Resampling.BILINEAR)
    img.paste(layer, (0, 0), layer)
    return img


def jpeg_bytes(img: Image.Image, quality: int = 88) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def edit_photo(img: Image.Image, edit: str, rng: random.Random) -> Image.Image:
    """One seller edit of a copied photo: the benchmark's edit types."""
    if edit == "resize":
        side = rng.choice((96, 128, 180, 384, 512))
        return img.resize((side, side), Image.Resampling.BILINEAR)
    if edit == "jpeg":
        return Image.open(io.BytesIO(jpeg_bytes(img, rng.randint(15, 45)))).convert("RGB")
    if edit == "crop":
        w, h = img.size
        f = rng.uniform(0.02, 0.10)  # up to 10% of each dimension removed
        dx, dy = int(w * f), int(h * f)
        ox, oy = rng.randint(0, dx), rng.randint(0, dy)
        return img.crop((ox, oy, w - (dx - ox), h - (dy - oy)))
    if edit == "colour":
        out = ImageEnhance.Brightness(img).enhance(rng.uniform(0.75, 1.25))
        out = ImageEnhance.Color(out).enhance(rng.uniform(0.7, 1.3))
        shift = tuple(rng.randint(-15, 15) for _ in range(3))
        return Image.eval(out, lambda v: v).point([max(0, min(255, i % 256 + shift[i // 256])) for i in range(768)])
    if edit == "overlay":
        out = img.copy()
        d = ImageDraw.Draw(out)
        text = rng.choice(("SALE", "FREE SHIPPING", "-20%", "NEW", "best price", "shop.example"))
        y = rng.choice((8, img.size[1] - 30))
        d.text((8, y), text, fill=rng.choice(((220, 20, 20), (0, 0, 0), (255, 255, 255))), font=_font(20))
        return out
    raise ValueError(f"unknown edit {edit!r}")
