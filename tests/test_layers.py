"""The package layering of DESIGN §3 holds in the source: no module imports a higher layer.

Layers (low → high; a module may import its own layer and any lower one)::

    errors, config  ←  io, synth  ←  tiling  ←  models  ←  stages  ←  measure, stereology
                    ←  study  ←  report  ←  cli

Imports are read with :mod:`ast` from the source text (top-level and function-level, absolute
and relative), so a lazy import inside a function counts the same as one at the top. Keras,
TensorFlow, torch and jax may be imported only under ``cathodeflow/models/``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cathodeflow"

#: first component under ``cathodeflow.`` → layer rank (higher may import lower, not reverse)
LAYER = {
    "errors": 0,
    "config": 0,
    "io": 1,
    "synth": 1,
    "tiling": 2,
    "models": 3,
    "stages": 4,
    "measure": 5,
    "stereology": 5,
    "study": 6,
    "report": 7,
    "cli": 8,
}
DEEP_LEARNING = ("keras", "tensorflow", "torch", "jax")


def _modules() -> list[tuple[str, Path]]:
    """Every module of the package as (dotted name, path); ``__init__`` names its package."""
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = ("cathodeflow",) + path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append((".".join(parts), path))
    return out


def _imports(module: str, path: Path) -> list[tuple[int, str]]:
    """(line, absolute dotted name) of every import in ``path``, anywhere in the file.

    ``from X import a`` yields ``X``, except ``from cathodeflow import a`` (``from .. import a``
    in a subpackage), which yields ``cathodeflow.a`` so that the subpackage's layer is seen.
    """
    is_package = path.name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            if target == "cathodeflow":  # `from .. import study`: the names are subpackages
                found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, target))
    return found


def _layer(name: str) -> int | None:
    """Layer of a dotted ``cathodeflow.<part>…`` name; None for the root or unknown parts."""
    parts = name.split(".")
    if parts[0] != "cathodeflow" or len(parts) < 2:
        return None
    return LAYER.get(parts[1])


def test_every_subpackage_and_top_module_has_a_layer():
    # a new top-level module or subpackage must be placed in LAYER, or it escapes the check
    tops = {m.split(".")[1] for m, _ in _modules() if m != "cathodeflow"}
    assert sorted(tops - set(LAYER)) == []


def test_no_module_imports_a_higher_layer():
    upward = []
    for module, path in _modules():
        own = _layer(module)
        if own is None:  # the package root: lazy attribute access only
            continue
        for line, target in _imports(module, path):
            other = _layer(target)
            if other is not None and other > own:
                upward.append(f"{module}:{line} imports {target}")
    assert not upward, "upward imports:\n" + "\n".join(sorted(set(upward)))


def test_deep_learning_frameworks_are_imported_only_under_models():
    outside = []
    for module, path in _modules():
        if module.startswith("cathodeflow.models"):
            continue
        for line, target in _imports(module, path):
            if target.split(".")[0] in DEEP_LEARNING:
                outside.append(f"{module}:{line} imports {target}")
    assert not outside, "framework imports outside models/:\n" + "\n".join(outside)


def test_models_package_init_imports_no_deep_learning_framework():
    # `import cathodeflow.models` must stay light; the submodules import keras themselves
    init = PACKAGE / "models" / "__init__.py"
    bad = [t for _, t in _imports("cathodeflow.models", init) if t.split(".")[0] in DEEP_LEARNING]
    assert bad == []


@pytest.mark.parametrize(
    ("source", "module", "expected"),
    [
        ("from ..study.cluster import open_client\n", "cathodeflow.measure.describe",
         "cathodeflow.study.cluster"),
        ("from .. import report\n", "cathodeflow.study.pipeline", "cathodeflow.report"),
        ("from cathodeflow import cli\n", "cathodeflow.io.sem", "cathodeflow.cli"),
        ("def f():\n    import cathodeflow.cli as c\n", "cathodeflow.stages.unet",
         "cathodeflow.cli"),
        ("from .build import x\n", "cathodeflow.report", "cathodeflow.report.build"),
    ],
)
def test_import_reader_resolves_relative_absolute_and_function_level_imports(
    tmp_path, source, module, expected
):
    # the checker itself: a planted upward import must be seen with its absolute name
    name = "__init__.py" if module == "cathodeflow.report" else "mod.py"
    path = tmp_path / name
    path.write_text(source)
    assert expected in [t for _, t in _imports(module, path)]
