"""The shape the codebase keeps so a newcomer can read it: short functions, and other
libraries' private parts touched in one module only (pushgateway/adapters.py). The browser
module's functions are measured by tests/js/structure.test.js."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 60
PACKAGES = ("pushgateway", "channels_app")
# Declarative functions: tables of definitions, long by nature, with no logic to follow.
DECLARATIVE = {"pushgateway/metrics.py:Metrics.__init__"}


def python_functions():
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text())
            yield from _functions(tree, path.relative_to(ROOT).as_posix(), "")


def _functions(node, path, prefix):
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            name = prefix + child.name
            if not isinstance(child, ast.ClassDef):
                yield f"{path}:{name}", child.end_lineno - child.lineno + 1
            yield from _functions(child, path, name + ".")


def test_no_function_in_the_apps_is_longer_than_60_lines():
    too_long = {
        name: length
        for name, length in python_functions()
        if length > MAX_LINES and name not in DECLARATIVE
    }
    assert too_long == {}, "split these into named steps"


# What other libraries keep private (or undocumented), found only in pushgateway/adapters.py.
PRIVATE_PARTS = (
    "_consistent_hash",
    "__group__",
    "_asgi_single_callable",
    "dataBuffer",
    "_tempDataLen",
    "run_on_commit",
    "brpop_timeout",
    ".send(None)",
)


def test_private_parts_of_other_libraries_are_touched_only_by_the_adapters():
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for package in (*PACKAGES, "bench", "demo", "settings")
        for path in sorted((ROOT / package).rglob("*.py"))
        if path.name != "adapters.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if any(part in line for part in PRIVATE_PARTS)
    ]
    assert found == []
