"""`dedup label` at a terminal: one pair at a time, side by side, answered with single keys.

What a person needs to answer well and quickly: the two records' fields aligned, the characters that differ
marked under them, the per-modality scores and the current model's probability, how far each answer would
move the model (so a careful look goes where it matters), and a count of the answers so far. Every answer
is on disk before the next pair is shown (`consumer.io.labels.LabelFile`), so Ctrl-C or a closed terminal
loses nothing, and the same command resumes with the pair an uninterrupted session would have asked next.
Raw field values go to the terminal only, never to a log.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import shutil
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import IO

from consumer.io.files import InputError
from consumer.learn.label_session import PairPool, Session, fit_labels
from consumer.learn.labelling import NO, UNSURE, YES, impact, logit

__all__ = ["run_terminal", "render_pair", "diff_marks", "KEYS", "HELP"]

KEYS = {"y": YES, "n": NO, "u": UNSURE}
HELP = "[y] yes, same  [n] no, different  [u] unsure  [b] undo  [f] finish  [?] help"
LONG_HELP = """y  the two records are the same customer / product (a duplicate)
n  they are different (however alike)
u  cannot tell from what is shown: the pair is kept out of the fit and not asked again
b  undo the last answer (ask it again)
f  finish: save and print the model's cross-validated precision and recall on your answers
Ctrl-C also stops; every answer is already saved, and the same command resumes."""


def diff_marks(a: str, b: str) -> tuple[str, str]:
    """Marker lines for two values: '^' under every character not in a block the two share."""
    ma, mb = [" "] * len(a), [" "] * len(b)
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag != "equal":
            ma[i1:i2] = ["^"] * (i2 - i1)
            mb[j1:j2] = ["^"] * (j2 - j1)
    return "".join(ma).rstrip(), "".join(mb).rstrip()


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "~"


def render_pair(left_id: str, right_id: str, left: Mapping[str, str], right: Mapping[str, str],
                scores: Mapping[str, float], probability: float, header: str, moves: Mapping[str, int] | None,
                width: int = 100) -> str:
    """The screen for one pair (plain text: it reads the same in a terminal, a log of it and a test)."""
    fields = [f for f in dict.fromkeys([*left, *right]) if (left.get(f) or right.get(f))]
    label_w = min(max([len(f) for f in fields] + [5]), 16)
    col = max((width - label_w - 4) // 2, 12)
    lines = [header, "-" * min(width, label_w + 4 + 2 * col)]
    lines.append(f"{'':<{label_w}}  {_cut(left_id, col):<{col}}  {_cut(right_id, col)}")
    for f in fields:
        a, b = (left.get(f) or "").replace("\n", " "), (right.get(f) or "").replace("\n", " ")
        ca, cb = _cut(a, col), _cut(b, col)
        lines.append(f"{_cut(f, label_w):<{label_w}}  {ca:<{col}}  {cb}".rstrip())
        if a != b:
            ma, mb = diff_marks(ca, cb)
            if ma or mb:
                lines.append(f"{'':<{label_w}}  {ma:<{col}}  {mb}".rstrip())
    shown = "  ".join(f"{k} {v:.2f}" for k, v in scores.items() if v == v)
    lines.append(f"scores: {shown or '(none)'}   model: p(duplicate) = {probability:.2f}")
    if moves is not None:
        lines.append(f"a yes would change {moves[YES]} decisions, a no {moves[NO]}"
                     + ("   <- worth a careful look" if max(moves.values()) >= 10 else ""))
    lines.append(HELP)
    return "\n".join(lines)


def read_key(stream: IO[str]) -> str:
    """One key press, without Enter ("" at end of input). The terminal is in cbreak mode for the whole
    session (`cbreak`): switching per read discarded keys typed while a pair was drawn (TCSAFLUSH) and
    echoed them in between."""
    return os.read(stream.fileno(), 1).decode("utf-8", "replace")


@contextlib.contextmanager
def cbreak(stream: IO[str]) -> Iterator[None]:
    """Keys arrive one by one, unechoed, and none typed ahead is dropped (TCSANOW, not the flushing
    default); the terminal's settings come back on any exit, Ctrl-C included (cbreak keeps signals)."""
    import termios
    import tty

    fd = stream.fileno()
    old = termios.tcgetattr(fd)
    tty.setcbreak(fd, termios.TCSANOW)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, old)


def run_terminal(pool: PairPool, labels_path: str, rows: Mapping[str, Mapping[str, str]], *,
                 stdin: IO[str] | None = None, out: IO[str] | None = None,
                 key: Callable[[], str] | None = None, seed: int = 0) -> dict[str, object]:
    """The interactive session; returns the fit report of the answers when it ends (finish, end of input,
    or every pair asked). InputError when stdin is not a terminal."""
    stdin = stdin or sys.stdin
    out = out or sys.stdout
    if key is None:
        if not stdin.isatty():
            raise InputError("dedup label asks questions at a terminal and stdin is not one; to label from a "
                             "truth file instead, use --oracle TRUTH --budget N")
        with cbreak(stdin):
            return run_terminal(pool, labels_path, rows, stdin=stdin, out=out, seed=seed,
                                key=lambda: read_key(stdin))
    session = Session(pool, labels_path, seed)
    base_logit = logit(pool.base_p)
    mean, scale = pool.mean, pool.scale
    note = f"resuming: {len(session.labels)} answers already in {labels_path}" if session.labels else ""
    width = shutil.get_terminal_size((100, 30)).columns
    while True:
        prog = session.progress()
        if prog.pair is None:
            print("every candidate pair has an answer", file=out)
            break
        i = prog.pair
        labelled = {pool.pair(lab): int(lab.answer == YES) for lab in session.labels if lab.answer != UNSURE}
        moves = impact(base_logit, pool.x, labelled, i, mean, scale, prog.fit.p, design=pool.design,
                       over=prog.fit.rows, floors=pool.floors)
        answers = [lab.answer for lab in session.labels]
        a, b = pool.ids[int(pool.left[i])], pool.ids[int(pool.right[i])]
        scores = {k: float(v[0]) for k, v in pool.modalities(pool.x[i: i + 1]).items()}
        header = (f"pair {len(answers) + 1} | answered {len(answers)} (yes {answers.count(YES)}, no "
                  f"{answers.count(NO)}, unsure {answers.count(UNSURE)})" + (f" | {note}" if note else ""))
        note = ""
        clear = "\033[2J\033[H" if out.isatty() else "\n"  # one pair per screen at a terminal
        print(clear + render_pair(a, b, rows.get(a, {}), rows.get(b, {}), scores, prog.p, header,
                                 moves, width), file=out, flush=True)
        k = key().lower()
        if k in KEYS:
            session.answer(i, KEYS[k])
        elif k == "b":
            undone = session.undo()
            note = (f"undid the answer '{undone.answer}' to {undone.left},{undone.right}" if undone
                    else "nothing to undo")
        elif k in ("f", "q", "", "\x04"):
            break
        elif k == "?":
            note = "help shown above"
            print(LONG_HELP, file=out, flush=True)
        else:
            note = f"unknown key {k!r}: {HELP}"
    fit = fit_labels(pool, session.labels)
    return fit.report


def rows_by_id(input_path: str, id_field: str, fmt: str | None, max_bytes: int,
               encoding: str = "utf-8") -> dict[str, dict[str, str]]:
    """The input's rows as the user wrote them (what the session shows), by record id."""
    from consumer.io.files import read_rows

    out: dict[str, dict[str, str]] = {}
    for _, row in read_rows(input_path, fmt, max_bytes, encoding):
        if isinstance(row, dict) and str(row.get(id_field, "")):
            out[str(row[id_field])] = {k: "" if v is None else str(v) for k, v in row.items() if k != id_field}
    return out

