"""The docs' tables that restate code, checked against the code: the next drift fails here.

docs/SERVING.md's ``user_config`` and ``args`` tables against the settings models and
ModelOptions (every key, and its default), docs/OPERATIONS.md's metrics table against
deployments/metrics.py, docs/SERVING.md's ``serve run`` export line against
SERVING_ENV. The routes and errors of docs/API.md: tests/repo/test_routes.py.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel

from imagetagger.models.options import ModelOptions
from imagetagger.settings import DownloaderSettings, IngressSettings, ModelSettings
from tests.paths import REPO_ROOT

ROOT = REPO_ROOT
SERVING_MD = (ROOT / "docs" / "SERVING.md").read_text()
OPERATIONS_MD = (ROOT / "docs" / "OPERATIONS.md").read_text()
SETTINGS: dict[str, type[BaseModel]] = {
    "Downloader": DownloaderSettings,
    "ModelDeployment": ModelSettings,
    "ImageTagger": IngressSettings,
}


def _default(model: type[BaseModel], name: str) -> Any:
    field = model.model_fields[name]
    return field.default_factory() if field.default_factory else field.default  # type: ignore[call-arg]


def _first_number_or_literal(cell: str) -> Any:
    """``20971520 (20 MiB)`` -> 20971520; ``0 (off)`` -> 0; `` `[]` `` -> []; none -> None."""
    cell = cell.strip()
    if cell == "none":
        return None
    match = re.match(r"`?(\[\]|[\w.]+)`?", cell)
    assert match is not None, cell
    text = match.group(1)
    if text == "[]":
        return []
    try:
        return float(text)
    except ValueError:
        return text


def test_the_user_config_table_lists_every_setting_with_its_default() -> None:
    rows = re.findall(r"^\| (\w+) \| `(\w+)` \| ([^|]+) \|", SERVING_MD, re.M)
    documented = {(deployment, key): default for deployment, key, default in rows}
    expected = {(d, key) for d, model in SETTINGS.items() for key in model.model_fields}
    assert set(documented) == expected
    for (deployment, key), cell in documented.items():
        default = _default(SETTINGS[deployment], key)
        shown = _first_number_or_literal(cell)
        assert shown == (default if isinstance(default, list) else float(default)), (key, cell)


def test_the_args_table_lists_every_model_option_with_its_default() -> None:
    # Options are lower case; the upper-case rows are Ray's variables (the idle-CPU table).
    rows = re.findall(r"^\| `([a-z]\w*)` \| `?([\w.]+)`? \|", SERVING_MD, re.M)
    documented = dict(rows)
    assert set(documented) == set(ModelOptions.model_fields)
    for key, shown in documented.items():
        default = _default(ModelOptions, key)
        assert shown == ("none" if default is None else str(default)), key


def test_the_metrics_table_lists_every_metric_of_the_code() -> None:
    source = (ROOT / "deployments" / "metrics.py").read_text()
    kinds = {"Counter": "counter", "Gauge": "gauge", "Histogram": "histogram"}
    code = {
        f"ray_{name}{'_total' if kind == 'Counter' else ''}": kinds[kind]
        for kind, name in re.findall(r"(Counter|Gauge|Histogram)\(\s*\"(\w+)\"", source)
    }
    rows = re.findall(r"^\| `(ray_imagetagger_\w+)` \| (\w+) \|", OPERATIONS_MD, re.M)
    assert dict(rows) == code


def test_the_serve_run_export_line_sets_the_serving_environment() -> None:
    """A user who runs plain `serve run` exports what `imagetagger serve` sets."""
    import shlex

    from imagetagger.serving.serving_env import SERVING_ENV

    block = re.search(
        r"```bash\n(export RAY_SERVE_THROUGHPUT_OPTIMIZED.*?)\n\s*serve run", SERVING_MD, re.S
    )
    assert block is not None
    words = shlex.split(block.group(1).replace("\\\n", " "))
    assert words[0] == "export"
    exported = dict(word.split("=", 1) for word in words[1:])
    assert exported == SERVING_ENV
