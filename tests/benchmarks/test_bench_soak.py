"""benchmarks/soak.py's pure parts: the mix, the answers' classification, the bar."""

from __future__ import annotations

import io
import itertools
import json
from collections import Counter

from PIL import Image

from benchmarks import soak

MiB = 2**20


def test_the_mix_is_reproducible_and_one_tenth_bad() -> None:
    first = list(itertools.islice(soak.kinds(7), 20_000))
    assert first == list(itertools.islice(soak.kinds(7), 20_000))
    counts = Counter(first)
    assert set(counts) == {name for name, _ in soak.MIX}
    bad = sum(counts[kind] for kind in soak.BAD_KINDS) / len(first)
    assert 0.09 < bad < 0.11, bad


def test_outcomes_tell_contract_errors_from_anything_else() -> None:
    error = {"error": {"type": "ForbiddenURL", "detail": "Not allowed."}}
    assert soak.outcome(200, b"{}") == "200"
    assert soak.outcome(403, json.dumps(error).encode()) == "403 ForbiddenURL"
    assert soak.outcome(503, b"Service Unavailable") == "503 NOT-CONTRACT"
    unknown = {"error": {"type": "Teapot", "detail": "x"}}
    assert soak.outcome(418, json.dumps(unknown).encode()) == "418 NOT-CONTRACT"
    extra = {"error": {"type": "ForbiddenURL", "detail": "x", "more": 1}}
    assert soak.outcome(403, json.dumps(extra).encode()) == "403 NOT-CONTRACT"
    assert soak.is_contract("404 UnreachableURL") and soak.is_contract("200")
    assert not soak.is_contract("500 NOT-CONTRACT")
    assert not soak.is_contract("client ServerDisconnectedError")


def test_batch_items_are_counted() -> None:
    body = {
        "results": [
            {"url": "a", "predictions": [{"label": "tabby", "confidence": 0.9}]},
            {"url": "b", "error": {"type": "UnreachableURL", "detail": "x"}},
            {"url": "c", "predictions": []},
        ]
    }
    found = soak.batch_item_outcomes(json.dumps(body).encode())
    assert found == ["item ok", "item UnreachableURL", "item NOT-CONTRACT"]


def test_pss_growth_is_measured_after_the_warm_up() -> None:
    assert soak.pss_growth([100, 200, 200, 205, 204], 2) == 0.025
    assert soak.pss_growth([100, 200], 2) is None  # over before the warm-up ended
    assert soak.pss_growth([100, 90, 95], 1) == -0.05


def test_a_replica_restart_is_a_process_gone() -> None:
    before = {"ImageTagger": {1}, "ModelDeployment": {2}}
    assert soak.replaced(before, {"ImageTagger": {1}, "ModelDeployment": {2, 3}}) == []
    assert soak.replaced(before, {"ImageTagger": {4}, "ModelDeployment": {2}}) == ["ImageTagger"]


def test_verdict_and_minute_lines() -> None:
    def minute(index: int, pss: int, **answers: int) -> soak.Minute:
        found = soak.Minute(index, 60.0, Counter(answers))
        found.pss_by_role = {"ModelDeployment": pss * MiB, "raylet": 10 * MiB}
        return found

    minutes = [minute(1, 500, **{"200": 600}), minute(2, 520, **{"200": 590})]
    minutes[1].answers["404 UnreachableURL"] = 10
    assert "minute 2: 10.0 req/s (600 answers)" in minutes[1].line()
    assert "PSS 530 MiB: ModelDeployment 520, raylet 10" in minutes[1].line()
    good = soak.verdict(minutes, 1)
    assert good.growth is not None and abs(good.growth - 20 / 510) < 1e-9 and good.passed
    minutes[1].items["item NOT-CONTRACT"] = 1
    minutes[1].restarted = ("Downloader",)
    bad = soak.verdict(minutes, 1)
    assert (bad.restarts, bad.not_contract, bad.passed) == (1, 1, False)
    assert "FAIL" in bad.line(1)


def test_the_oversized_photo_is_past_the_pixel_limit_but_small() -> None:
    text, oversized = soak.extra_photos()
    assert text.name.endswith(".jpg") and not text.data.startswith(b"\xff\xd8")
    with Image.open(io.BytesIO(oversized.data)) as image:
        assert image.width * image.height > 64_000_000  # serve_config.yaml's max_image_pixels
    assert len(oversized.data) < 1 * MiB


def test_arguments() -> None:
    args = soak.parse_args(["--minutes", "4", "--warmup-minutes", "1"])
    assert (args.minutes, args.warmup_minutes, args.concurrency) == (4, 1, 16)
