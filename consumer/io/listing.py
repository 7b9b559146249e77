"""The listing profile's image input and keeper quality: the adapter step between parsing and the core.

A listing's `image` field is either a **file path** (a relative one resolves against the input file's
folder in `dedup batch`, against the working directory in `dedup run`) or the **image bytes in base64**
(optionally as a `data:image/...;base64,` URL), which is how a Kafka message carries it. The rule that
tells them apart: a value ending in an image file extension (.jpg .jpeg .png .webp .gif .bmp) and shorter
than 4096 characters is a path; anything else is base64.

An image that cannot be used (file missing, unreadable, larger than `limits.max_image_bytes`, bytes that
are not a JPEG/PNG/WebP/GIF/BMP image, invalid base64) makes the **image modality absent** for that
listing, with a warning code (`image_missing`, `image_unreadable`, `image_oversized`, `image_not_an_image`,
`image_bad_base64`; `image_path_refused` for a path sent to the HTTP API): counted in `dedup batch`'s
summary and logged (code and record id only) by the
service. Not a reject, because the listing is still a listing: its title, brand and price decide it like
a record without a photo, and dropping it would lose a record over a broken link. A row whose every field
is unusable is still rejected by validation (`no_usable_fields`).

Quality (the Q-SemDeDup keeper's input, `Record.quality`): field completeness (title, brand, price,
category, description, image), attribute completeness of the title, and the image's resolution and file
size: the listing with the sharpest photo and the fullest description is kept as canonical.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import io
import logging
import math
import re
import warnings
from pathlib import Path

from consumer.engine.records import Record
from consumer.engine.titles import parse_title

__all__ = ["IMAGE_ROLE", "attach_image", "listing_quality"]

log = logging.getLogger("dedup.listing")

IMAGE_ROLE = "image"
_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp")
_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "MPO"})
_B64 = re.compile(r"^[A-Za-z0-9+/=_\-\s]+$")
#: Images with more pixels than this are treated as oversized (a decompression-bomb guard).
MAX_PIXELS = 40_000_000


def _image_bytes(value: str, base_dir: Path | None, max_bytes: int, paths: bool = True) -> tuple[bytes, str | None]:
    if value.lower().endswith(_EXTENSIONS) and len(value) < 4096:
        if not paths:
            return b"", "image_path_refused"
        path = Path(value)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        try:
            # One bounded read: a file that grows between a size check and the read cannot be read whole.
            with open(path, "rb") as fh:
                data = fh.read(max_bytes + 1)
        except FileNotFoundError:
            return b"", "image_missing"
        except (OSError, ValueError):  # a directory, no permission, a name the OS refuses
            return b"", "image_unreadable"
        return (b"", "image_oversized") if len(data) > max_bytes else (data, None)
    text = value.split(",", 1)[1] if value.startswith("data:") and "," in value else value
    if len(text) * 3 // 4 > max_bytes:
        return b"", "image_oversized"
    if not _B64.match(text):
        return b"", "image_bad_base64"
    try:
        data = base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=False)
    except (binascii.Error, ValueError):
        return b"", "image_bad_base64"
    return data, None


def _probe(data: bytes) -> tuple[int, int, str | None]:
    """(width, height, warning) from the header only: cheap, and refuses non-images before decoding."""
    from PIL import Image

    try:
        # Pillow warns (DecompressionBombWarning) on huge pixel counts: caught here and logged as a code
        # through the JSON log, never printed raw to stderr; the image is oversized either way.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with Image.open(io.BytesIO(data)) as img:
                if img.format not in _FORMATS:
                    return 0, 0, "image_not_an_image"
                w, h = img.size
    except Image.DecompressionBombError:
        log.warning("image refused", extra={"reason": "image_oversized", "detail": "decompression bomb"})
        return 0, 0, "image_oversized"
    except Exception:  # noqa: BLE001 - Pillow raises many types on non-images; all mean the same here
        return 0, 0, "image_not_an_image"
    if any(issubclass(w_.category, Image.DecompressionBombWarning) for w_ in caught):
        log.warning("image refused", extra={"reason": "image_oversized", "detail": "decompression bomb"})
        return 0, 0, "image_oversized"
    if w * h > MAX_PIXELS:
        return 0, 0, "image_oversized"
    return w, h, None


def listing_quality(rec: Record, width: int, height: int, nbytes: int) -> float:
    """Keeper quality in [0, 1]: 0.5 field completeness + 0.2 title attributes + 0.3 image (resolution
    relative to 512 px a side and file size relative to 100 kB, each capped at 1)."""
    fields = ("title", "brand", "price", "category", "description")
    present = sum(bool(rec.role(f)) for f in fields) + (width > 0)
    attrs = min(1.0, len(parse_title(rec.role("title")).attributes) / 3)
    image = 0.5 * min(1.0, math.sqrt(width * height) / 512) + 0.5 * min(1.0, nbytes / 100_000) if width else 0.0
    return round(0.5 * present / (len(fields) + 1) + 0.2 * attrs + 0.3 * image, 6)


def attach_image(rec: Record, base_dir: Path | None, max_bytes: int, *,
                 paths: bool = True) -> tuple[Record, str | None]:
    """The record with its image bytes attached (or the image absent) and its quality; plus a warning code
    when an image was given but cannot be used. The raw field value is dropped from the record (a base64
    image is large and is not needed after decoding). `paths=False`: a file path is not read
    (`image_path_refused`): the HTTP API must not read the server's files on a client's behalf."""
    value = rec.role(IMAGE_ROLE).strip()
    data, warning = (_image_bytes(value, base_dir, max_bytes, paths) if value else (b"", None))
    width = height = 0
    if data:
        width, height, warning = _probe(data)
        if warning:
            data = b""
    extra = tuple((k, "" if k == IMAGE_ROLE else v) for k, v in rec.extra)
    blobs = ((IMAGE_ROLE, data),) if data else ()
    out = dataclasses.replace(rec, extra=extra, blobs=blobs)
    return dataclasses.replace(out, quality=listing_quality(out, width, height, len(data))), warning
