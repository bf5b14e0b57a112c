"""The floor plan of src/sectune, written once and checked on every import (module level or inside a function).

A module may import its own subpackage and the subpackages on lower floors, never a higher or a same-floor
one. Nothing in production imports ``sectune.testing``. No module reaches itself through imports (no circle).
docs/architecture.md draws this plan and gives the reasons.
"""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "sectune"

# Lowest floor first. A unit is a subpackage (or a top-level module) of sectune.
FLOORS: list[set[str]] = [
    {"errors", "paths", "progress", "hardware"},  # foundations: no sectune imports beyond each other's floor
    {"config"},  # every stage's typed config
    {"runs", "registry"},  # run folders; the model table and chat templates
    {"models", "doctor"},  # loading models and tokenizers; what this machine can do
    {"llm"},  # the request layer: providers, limits, retries, cache
    {"data"},  # import, validate, split, render, export
    {"generate"},
    {"train"},
    {"evaluate"},
    {"study", "serve"},  # study: above train and evaluate, it calls both; serve: chat with, export a result
    {"api"},  # one function per stage, re-exported
    {"demo"},  # the whole pipeline through the API
    {"bench"},  # sectune against its peers: the stages measured, the fake server as the provider
    {"cli", "ui"},  # thin layers over the API
    {"__main__"},
]
TEST_HELPERS = "testing"  # may import anything below the CLI; production never imports it
MEASURES_WITH_TEST_HELPERS = "bench"  # the one exception: its generation figures are taken against the fake server
PACKAGE_ROOT = "sectune"  # sectune/__init__.py: imports nothing of its own


def floor_of(unit: str) -> int:
    for number, units in enumerate(FLOORS):
        if unit in units:
            return number
    raise AssertionError(f"sectune.{unit} is on no floor: add it to FLOORS in tests/test_layering.py")


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else PACKAGE_ROOT


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every sectune import in the file, wherever it stands."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] if node.module != "sectune" else [f"sectune.{a.name}" for a in node.names]
            found += [(node.lineno, name) for name in names if name.split(".")[0] == "sectune"]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "sectune"]
    return found


def upward_imports(package: Path = PACKAGE) -> list[str]:
    """Every import that breaks the plan, as ``file:line: a -> b (why)``."""
    problems = []
    for path in sorted(package.rglob("*.py")):
        source = unit_of(module_name(path, package))
        for line, target in imports_of(path):
            wanted = unit_of(target)
            if wanted == source:
                continue
            where = f"{path.relative_to(package.parent)}:{line}: {source} -> {wanted}"
            if wanted == TEST_HELPERS and source != MEASURES_WITH_TEST_HELPERS:
                problems.append(f"{where} (production code imports the test helpers)")
            elif source == PACKAGE_ROOT:
                problems.append(f"{where} (the package root imports nothing)")
            elif source == TEST_HELPERS:
                if wanted in {"cli", "ui", "__main__"}:
                    problems.append(f"{where} (the test helpers never import the CLI)")
            elif wanted != TEST_HELPERS and floor_of(wanted) >= floor_of(source):
                problems.append(f"{where} (floor {floor_of(source)} imports floor {floor_of(wanted)})")
    return problems


def module_cycles(package: Path = PACKAGE) -> list[list[str]]:
    """Circles in the module import graph (lazy imports included: they hide a circle, they do not remove it)."""
    modules = {module_name(p, package): p for p in package.rglob("*.py")}
    graph = {m: sorted({t for _, t in imports_of(p) if t in modules and t != m}) for m, p in modules.items()}
    cycles, state = [], {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for nxt in graph[node]:
            if state.get(nxt) == "open":
                cycles.append([*trail[trail.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    # a package importing its own submodules (``sectune.llm`` -> ``sectune.llm.base``) is no circle
    return [c for c in cycles if not all(_nested(a, b) for a, b in itertools.pairwise(c))]


def _nested(a: str, b: str) -> bool:
    return b.startswith(a + ".") or a.startswith(b + ".")


def test_every_import_in_src_goes_down_the_floor_plan():
    assert upward_imports() == []


def test_no_import_circle():
    assert module_cycles() == []


def test_every_subpackage_is_on_a_floor():
    units = {unit_of(module_name(p)) for p in PACKAGE.rglob("*.py")} - {PACKAGE_ROOT, TEST_HELPERS}
    for unit in units:
        floor_of(unit)


@pytest.mark.parametrize(
    ("planted", "file", "why"),
    [
        ("from sectune.train.run import run_training\n", "config/bad.py", "floor 1 imports floor 7"),
        ("def f():\n    from sectune.study.api import study\n", "evaluate/bad.py", "floor 8 imports floor 9"),
        ("import sectune.testing.tiny\n", "data/bad.py", "production code imports the test helpers"),
        ("from sectune.generate import api\n", "data/bad.py", "floor 5 imports floor 6"),
    ],
)
def test_a_planted_upward_import_is_caught(tmp_path, planted, file, why):
    copy = tmp_path / "sectune"
    for path in PACKAGE.rglob("*.py"):
        target = copy / path.relative_to(PACKAGE)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    (copy / file).write_text(planted, encoding="utf-8")
    problems = upward_imports(copy)
    assert len(problems) == 1 and why in problems[0] and file in problems[0]


def test_a_planted_circle_is_caught(tmp_path):
    copy = tmp_path / "sectune"
    (copy / "train").mkdir(parents=True)
    (copy / "__init__.py").write_text("")
    (copy / "train" / "__init__.py").write_text("")
    (copy / "train" / "api.py").write_text("def plan():\n    from sectune.train.run import x\n")
    (copy / "train" / "run.py").write_text("from sectune.train.api import plan\n")
    assert module_cycles(copy) == [["sectune.train.api", "sectune.train.run", "sectune.train.api"]]


def test_the_api_names_the_real_functions_lazily():
    import subprocess
    import sys

    import sectune.api
    from sectune.study.api import study
    from sectune.train.plan import plan

    assert sorted(sectune.api.__all__) == sorted(sectune.api._FUNCTIONS)
    assert sectune.api.study is study and sectune.api.plan is plan
    code = "import sys, sectune.api; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "[]"
