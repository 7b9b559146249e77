"""`dedup batch` encoding in a second process (`consumer.io.encode_process`): the same columns and the same
output as encoding in this process, encoding here when the worker dies, and only where it pays."""

from __future__ import annotations

import csv
import os
import random
from pathlib import Path

import numpy as np
import pytest

from consumer.config import load_settings
from consumer.engine.records import Record
from consumer.engine.replay import ReplayEncoder
from consumer.io import encode_process
from consumer.io.artifacts import build_pipeline
from consumer.io.batch import run_batch
from consumer.io.encode_process import EncoderProcess, RemoteEncoder, wants_encoder_process


def _people(path: Path, n: int, seed: int = 3) -> None:
    rng = random.Random(seed)
    given = ["anna", "bernd", "carla", "dieter", "eva", "frank", "greta", "hans", "ida", "jonas"]
    family = ["meier", "schulz", "becker", "hoffmann", "koch", "richter", "klein", "wolf"]
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "given_name", "surname", "date_of_birth", "postcode", "suburb"])
        for i in range(n):
            g, s = rng.choice(given), rng.choice(family)
            if rng.random() < 0.3:  # a typo'd twin of an earlier person
                g = g[:-1] + "x"
            w.writerow([f"r{i}", g, s, f"19{rng.randint(30, 99)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}",
                        str(rng.randint(2000, 2100)), rng.choice(["kariong", "tarneit", "mount larcom"])])


def test_a_person_file_decides_the_same_encoded_in_a_second_process(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "people.csv"
    _people(src, 1500)
    monkeypatch.setattr(encode_process, "MIN_INPUT_BYTES", 0)
    monkeypatch.setattr(encode_process, "usable_cores", lambda: 2)
    outputs = []
    for on in ("true", "false"):
        settings = load_settings(profile="person", env={"DEDUP_ENCODERS__BATCH_PROCESS": on})
        summary, pipe = run_batch(src, tmp_path / f"out-{on}.jsonl", settings, progress=False)
        remote = [e for e in pipe.encoders if isinstance(e, RemoteEncoder | ReplayEncoder)]
        if on == "true":
            inner = [e.inner if isinstance(e, ReplayEncoder) else e for e in remote]
            assert inner and all(isinstance(e, RemoteEncoder) for e in inner)
            process = inner[0].process
            pipe.close()
            assert not process.alive  # closed with the pipeline
        else:
            assert not any(isinstance(getattr(e, "inner", e), RemoteEncoder) for e in pipe.encoders)
            pipe.close()
        assert summary.records == 1500
        outputs.append((tmp_path / f"out-{on}.jsonl").read_bytes())
    assert outputs[0] == outputs[1]


def test_encoding_goes_on_here_when_the_worker_dies() -> None:
    settings = load_settings(profile="person", env={"DEDUP_FUSION__MODE": "rule"})
    pipe = build_pipeline(settings)
    records = [Record(f"r{i}", f"{g} koch", "", (), "", "", (), extra=(("given_name", g), ("surname", "koch"),
                                                                ("date_of_birth", "1970-01-0" + str(i % 9 + 1))))
               for i, g in enumerate(["anna", "annx", "bernd", "carla"] * 8)]
    local = pipe.encode(records)
    process = EncoderProcess(settings)
    try:
        pipe.encoders = process.wrap(pipe.encoders)
        remote = pipe.encode(records)
        assert set(remote) == set(local) and all(np.array_equal(remote[c], local[c]) for c in local)
        for pid in list(process._pool._processes):  # type: ignore[union-attr]
            os.kill(pid, 9)
        after = pipe.encode(records[::-1])
        assert not process.alive
        back = {c: a[::-1] for c, a in after.items()}
        assert all(np.array_equal(back[c], local[c]) for c in local)
    finally:
        process.close()
        pipe.close()


def test_only_where_a_second_process_pays() -> None:
    person = load_settings(profile="person", env={})
    big = encode_process.MIN_INPUT_BYTES
    cores = encode_process.usable_cores()
    assert wants_encoder_process(person, big) == (cores >= 2)
    assert not wants_encoder_process(person, big - 1)  # a small file: the start costs more than it saves
    assert not wants_encoder_process(load_settings(profile="listing", env={}), big)  # titles, photos: ONNX
    assert not wants_encoder_process(load_settings(profile="person", env={"DEDUP_ENCODERS__BATCH_PROCESS": "false"}),
                                     big)
    assert not wants_encoder_process(load_settings(env={}), big)  # CRM: measured no faster, so not by default
    crm = load_settings(env={"DEDUP_ENCODERS__BATCH_PROCESS": "true"})
    assert wants_encoder_process(crm, big) == (cores >= 2)
    transformer = load_settings(env={"DEDUP_ENCODERS__BATCH_PROCESS": "true", "DEDUP_ENCODERS__TEXT_BACKEND":
                                     "transformer"})
    assert not wants_encoder_process(transformer, big)


def test_no_process_to_be_had_means_encoding_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where a process cannot be started at all (a sandbox), the run encodes in this process, as before."""
    from concurrent.futures import ProcessPoolExecutor

    def refuse(self: object, *args: object, **kwargs: object) -> None:
        raise OSError("no processes here")

    monkeypatch.setattr(ProcessPoolExecutor, "submit", refuse)
    settings = load_settings(profile="person", env={"DEDUP_FUSION__MODE": "rule"})
    process = EncoderProcess(settings)
    assert not process.alive
    pipe = build_pipeline(settings)
    records = [Record(f"r{i}", f"{g} koch", "", (), "", "", (), extra=(("given_name", g), ("surname", "koch")))
               for i, g in enumerate(["anna", "bernd"])]
    local = pipe.encode(records)
    pipe.encoders = process.wrap(pipe.encoders)
    remote = pipe.encode(records)
    assert all(np.array_equal(remote[c], local[c]) for c in local)
    pipe.close()
