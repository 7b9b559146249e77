"""A tiny file linking two shops (ids `a_...` / `b_...`), shared by the tests of displacement and of kept
answers: b_2 matches a_1 better than b_1, which arrives first, and b_7 matches a_4 better than b_6, which
founded its cluster."""

from __future__ import annotations

import csv
from pathlib import Path

COLUMNS = ["listing_id", "title", "brand", "price"]
LINKED = [("a_1", "sony turntable pslx350h belt drive black", "sony", "149.99"),
          ("a_2", "bose companion 2 series iii multimedia speakers", "bose", "99.00"),
          ("a_3", "canon powershot sd1000 digital elph camera silver", "canon", "199.00"),
          ("b_1", "sony belt drive turntable black", "sony", "139.00"),
          ("b_2", "sony pslx350h belt drive turntable black", "sony", "149.99"),
          ("b_3", "bose companion 2 series iii speakers", "bose", "99.00"),
          ("b_4", "bose companion 2 series iii multimedia speaker system", "bose", "99.00"),
          ("b_5", "canon powershot sd1000 silver", "canon", "189.00"),
          # the displaced listing founded the cluster: it keeps the id, the new pair moves under a_4's
          ("b_6", "logitech corded mouse m500", "logitech", "24.99"),
          ("a_4", "logitech m500 corded laser mouse", "logitech", "29.99"),
          ("b_7", "logitech m500 corded laser mouse", "logitech", "29.99")]
CONFIG = ('[profile]\nname = "listing"\nid_field = "listing_id"\nsource_field = "listing_id"\n'
          'source_pattern = "^([^_]+)_"\n')


def write_linked(folder: Path, rows: list[tuple[str, ...]] = LINKED) -> tuple[Path, Path]:
    """The records CSV and its configuration (linked across the shops) in `folder`: (data, config)."""
    cfg, data = folder / "c.toml", folder / "linked.csv"
    cfg.write_text(CONFIG)
    with data.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        w.writerows(rows)
    return data, cfg


def messages(rows: list[tuple[str, ...]] = LINKED) -> list[dict[str, str]]:
    return [dict(zip(COLUMNS, r)) for r in rows]
