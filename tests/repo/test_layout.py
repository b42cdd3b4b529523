"""The layout rules a newcomer can state in a sentence, checked so they keep holding.

- ``imagetagger/`` is the library: no module imports Ray when it is imported (only the
  bulk job and its command import Ray, inside the functions that run a Ray job), so it
  is tested without a cluster; ``deployments/`` holds the Serve glue, and every module
  there imports Ray (a module that does not is library code).
- The domain (the library but its operations package ``imagetagger/serving/``, which
  runs Serve and Ray, and the commands in ``imagetagger/cli/``) imports nothing from
  ``imagetagger.serving``, not even inside a function.
- No module in either is over 300 lines: a room that grows past that does two jobs.
- No import circle among their modules (module-level imports).
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.paths import REPO_ROOT

ROOT = REPO_ROOT
PACKAGES = ("imagetagger", "deployments")
MAX_LINES = 300
OPERATIONS = "imagetagger.serving"
#: Library packages that are not the domain: the operations code and the commands.
NOT_DOMAIN = (OPERATIONS, "imagetagger.cli")


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def module_level_imports(path: Path) -> set[str]:
    """What a module imports when it is imported (not inside functions or TYPE_CHECKING)."""
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def all_imports(path: Path) -> set[str]:
    """Everything a module imports, anywhere in it (functions included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(f"{package}.")


def test_the_domain_never_imports_the_operations_package() -> None:
    domain = {
        name: path
        for name, path in modules().items()
        if name.startswith("imagetagger") and not any(_within(name, p) for p in NOT_DOMAIN)
    }
    assert "imagetagger.images" in domain and "imagetagger.api.app" in domain
    offenders = {
        name: sorted(i for i in all_imports(path) if _within(i, OPERATIONS))
        for name, path in domain.items()
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_every_serve_glue_module_imports_ray() -> None:
    """``deployments/`` is Ray's side: a module there without Ray belongs in the library."""
    without = [
        name
        for name, path in modules().items()
        if name.startswith("deployments.")
        and not any(i == "ray" or i.startswith("ray.") for i in module_level_imports(path))
    ]
    assert without == []


def test_the_library_never_imports_ray_at_import_time() -> None:
    offenders = {
        name: sorted(i for i in module_level_imports(path) if i == "ray" or i.startswith("ray."))
        for name, path in modules().items()
        if name.startswith("imagetagger")
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_no_module_is_over_300_lines() -> None:
    long = {
        name: n
        for name, path in modules().items()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def test_no_import_circle() -> None:
    known = modules()
    graph = {
        name: {i for i in module_level_imports(path) if i in known and i != name}
        for name, path in known.items()
    }
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = "open"
        for imported in sorted(graph[name]):
            if state.get(imported) == "open":
                raise AssertionError(" -> ".join([*trail, name, imported]))
            if imported not in state:
                visit(imported, [*trail, name])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [])


def test_the_library_never_imports_the_serve_glue() -> None:
    """The HTTP app and its routers are library code: no route reaches a deployment."""
    offenders = {
        name: sorted(i for i in module_level_imports(path) if i.split(".")[0] == "deployments")
        for name, path in modules().items()
        if name.startswith("imagetagger")
    }
    assert {name: found for name, found in offenders.items() if found} == {}
