"""The bulk job's steps give, for a few URLs, exactly the API's answers.

The steps run in this process (``tests/bulk`` runs them on Ray Data and checks them
against ``imagetagger predict``); the model is loaded as the session's app serves it
(serve_config.yaml's model and runtime arguments), and the URLs are fetched from the
same loopback image server under the same allowed network.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from imagetagger.bulk.output import json_lines
from imagetagger.bulk.stages import Tagger, TaggerConfig, decode_batch, fetch_batch, stage_table
from imagetagger.models.runtimes import RuntimeOptions, load_model
from imagetagger.models.specs import get_spec
from imagetagger.settings import DownloaderSettings
from tests.service.helpers import IMAGE_HOST, ROOT, Service

NAMES = ("chelsea.jpg", "coffee.jpg", "chelsea.png", "to-chelsea", "text.txt", "missing.jpg")


def _served_app_args() -> dict[str, Any]:
    config = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    (app,) = config["applications"]
    return app["args"]


def test_bulk_rows_equal_the_api(service: Service) -> None:
    args = _served_app_args()
    spec = get_spec(args["model"])
    settings = DownloaderSettings(allowed_networks=[f"{IMAGE_HOST}/32"])
    urls = [service.image_url(name) for name in NAMES]
    table = stage_table(["url"] * len(urls), urls, [b""] * len(urls), [("", "")] * len(urls))
    crops = decode_batch(
        fetch_batch(table, settings=settings.model_dump()),
        size=spec.input_size,
        crop_padding=spec.crop_padding,
        max_pixels=settings.max_image_pixels,
    )
    options = RuntimeOptions(
        runtime=args["runtime"],
        intra_op_threads=args.get("intra_op_threads", 0),
        interpreters=args.get("interpreters", 1),
    )
    config = TaggerConfig(model=spec.name, runtime=args["runtime"], top=5)
    tagger = Tagger(config.to_dict(), classifier=load_model(spec.name, options))
    rows = [json.loads(line) for line in json_lines(tagger(crops)).splitlines()]
    # POST /predictions/batch answers in the bulk rows' shape: url, then predictions or error.
    batch = service.post("/predictions/batch", json={"urls": urls, "top": 5})
    assert rows == batch.json()["results"]
    for row, url in zip(rows[:2], urls[:2], strict=True):  # and GET /predictions agrees
        assert {"url": url, "predictions": row["predictions"]} == service.predict(url, top=5).json()
    assert [row.get("error", {}).get("type") for row in rows] == [
        None,
        None,
        None,
        None,
        "InvalidImage",
        "UnreachableURL",
    ]
