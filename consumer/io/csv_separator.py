"""Which character separates a CSV file's fields, read from its header line.

Why: Excel saves "CSV" with ";" wherever the decimal mark is a comma (most of Europe), and a `.tsv` export is
a CSV file to its user; read with "," such a file is one column named after the whole header, and every run
of it ends in "no id column". The header decides, not a sniffer over the rows: a title or a description holds
commas, semicolons and tabs as text, and the header is the one line written by a program, not a person.
"""

from __future__ import annotations

import re

__all__ = ["SEPARATORS", "separator_of"]

#: The separators a header is read for, the comma first (the default, and the answer on a tie).
SEPARATORS = (",", ";", "\t", "|")

_QUOTED = re.compile(r'"(?:[^"]|"")*"')


def separator_of(header_line: str) -> str:
    """The field separator of a CSV whose first line is `header_line`: a comma where the header has one
    outside quotes (or has no separator at all: a file of one column), else whichever of ";", tab and "|"
    it has most often."""
    bare = _QUOTED.sub("", header_line)
    if "," in bare:
        return ","
    counts = [(bare.count(s), -i, s) for i, s in enumerate(SEPARATORS[1:])]
    best = max(counts)
    return best[2] if best[0] > 0 else ","
