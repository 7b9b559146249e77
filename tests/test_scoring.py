"""`consumer.api.scoring`: an on-demand pair score is the score the stream gives the same pair.

Why: the API and `dedup score` promise the pipeline's own judgement, not an approximation. Given the
stream's term-frequency counts, scoring (earlier record, arriving record) *before* it arrives must give
exactly the fused and per-modality scores `Pipeline.process` then gives that match.
"""

from __future__ import annotations

from pathlib import Path

from harness.service import crm_rows, shared_text_encoder

from consumer.api.scoring import score_pair
from consumer.config import load_settings
from consumer.engine.records import parse_record
from consumer.io.artifacts import build_pipeline


def test_score_before_arrival_equals_the_streams_score(tmp_path: Path) -> None:
    settings = load_settings(env={})
    _path, _truth, rows = crm_rows(300, 41, tmp_path)
    records = [parse_record(r, settings.profile, settings.limits) for r in rows]

    first = build_pipeline(settings, text_encoder=shared_text_encoder())
    matches = {}  # arrival index -> [(earlier record id, fused, scores)]
    for k, rec in enumerate(records):
        decision = first.process([rec])[0]
        if decision.matches:
            matches[k] = [(m.record_id, m.fused, m.scores) for m in decision.matches]
    first.close()
    assert len(matches) >= 20, "the generated stream has duplicates"

    by_id = {r.record_id: r for r in records}
    second = build_pipeline(settings, text_encoder=shared_text_encoder())
    checked = 0
    for k, rec in enumerate(records):
        for earlier, fused, scores in matches.get(k, []):
            got = score_pair(second, by_id[earlier], rec, second.frequencies, known=second.store.row_of)
            assert (got.fused, got.scores) == (fused, scores), (k, earlier)
            assert got.rarity == "stream" and got.decision in ("match", "possible")
            checked += 1
        second.process([rec])
    second.close()
    assert checked >= 20
