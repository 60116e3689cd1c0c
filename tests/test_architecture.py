"""The layers of docs/architecture.md, checked on the code: every package-internal import of
``lpips_runtime`` (module level or inside a function) goes to its own layer or a lower one, with the
exceptions the page names; ``lpips_export`` is imported only in the three places the page lists (inside
functions, but for the torch extra's own module); and no module of the runtime imports another in a circle at module level."""
from __future__ import annotations

import ast
import re
from pathlib import Path

from conftest import ROOT

RUNTIME = ROOT / "runtime" / "lpips_runtime"
PAGE = ROOT / "docs" / "architecture.md"

# lowest first; a part may import its own layer and any lower one
LAYERS = [
    {"errors", "optional", "stdio", "version", "system", "limits", "formatting"},
    {"io"},
    {"model"},
    {"records"},
    {"backends"},
    {"core"},
    {"compat", "torch", "commands", "serve", "video", "cluster"},
]
# front ends import each other only here: lpips-score --ray hands its batch modes to cluster/, cluster/
# serves the serve/ app in Ray Serve, and every command line builds on commands.common/batchrun/progress
FRONT_END_SHARED = {"commands.common", "commands.batchrun", "commands.progress"}
FRONT_END_EXCEPTIONS = {("commands.score", "cluster"), ("cluster.serve", "serve")}
EXPORT_IMPORTERS = {"model.locate", "backends.torch_backend", "torch"}
# lpips_runtime.torch is the torch extra's module: it checks the extra, then imports the torch module
EXPORT_AT_MODULE_LEVEL = {"torch"}


def _modules():
    """(dotted name below lpips_runtime, its package below lpips_runtime, parsed tree) for every module."""
    for path in sorted(RUNTIME.rglob("*.py")):
        parts = list(path.relative_to(RUNTIME).with_suffix("").parts)
        package = parts[:-1]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), package, ast.parse(path.read_text())


def _imports(package: list[str], tree: ast.Module):
    """(target below lpips_runtime or 'lpips_export...', at module level?) for each import of ours."""
    top_level = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            elif (node.module or "").startswith("lpips_runtime"):
                target = node.module[len("lpips_runtime."):] if "." in node.module else ""
            elif (node.module or "").startswith("lpips_export"):
                yield node.module, id(node) in top_level
                continue
            else:
                continue
            names = [alias.name for alias in node.names]
            for name in names:
                candidate = f"{target}.{name}" if target else name
                is_module = (RUNTIME / (candidate.replace(".", "/") + ".py")).exists() or \
                    (RUNTIME / candidate.replace(".", "/")).is_dir()
                yield (candidate if is_module else target), id(node) in top_level
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("lpips_export"):
                    yield alias.name, id(node) in top_level
                elif alias.name.startswith("lpips_runtime."):
                    yield alias.name[len("lpips_runtime."):], id(node) in top_level


def _layer(module: str) -> int:
    head = module.split(".")[0]
    for rank, parts in enumerate(LAYERS):
        if head in parts:
            return rank
    raise AssertionError(f"lpips_runtime.{module} is in no layer of docs/architecture.md: add it to the page "
                         "and to LAYERS")


def test_every_part_imports_only_its_own_layer_or_lower():
    wrong = []
    for module, package, tree in _modules():
        if not module:
            continue  # the package's __init__ (lazy attributes of every layer)
        for target, _ in _imports(package, tree):
            if target.startswith("lpips_export") or not target or target.split(".")[0] == module.split(".")[0]:
                continue
            if _layer(target) < _layer(module):
                continue
            if _layer(target) == _layer(module) == len(LAYERS) - 1 and (
                    target in FRONT_END_SHARED or any(module.startswith(m) and target.startswith(t)
                                                      for m, t in FRONT_END_EXCEPTIONS)):
                continue
            if _layer(target) == _layer(module) == 0:
                continue  # the foundation's modules use each other (limits raises errors' types)
            wrong.append(f"lpips_runtime.{module} imports lpips_runtime.{target}")
    assert not wrong, wrong


def test_the_export_package_is_imported_only_inside_functions_where_the_page_says():
    found = {}
    for module, package, tree in _modules():
        for target, at_module_level in _imports(package, tree):
            if target.startswith("lpips_export"):
                assert not at_module_level or module in EXPORT_AT_MODULE_LEVEL, \
                    f"lpips_runtime.{module} imports {target} at module level"
                found.setdefault(module, set()).add(target)
    assert set(found) == EXPORT_IMPORTERS, found


def test_no_import_circle_at_module_level():
    graph = {}
    for module, package, tree in _modules():
        graph[module] = {t for t, top in _imports(package, tree) if top and not t.startswith("lpips_export")}

    done: set[str] = set()

    def visit(module, path):
        if module in path:
            raise AssertionError("import circle: " + " -> ".join(path[path.index(module):] + [module]))
        if module in done:
            return
        for target in graph.get(module, ()):
            if target in graph and target != module:
                visit(target, path + [module])
        done.add(module)

    for module in graph:
        visit(module, [])


def test_the_page_names_every_subpackage_and_layer():
    page = PAGE.read_text()
    subpackages = {p.name for p in RUNTIME.iterdir() if (p / "__init__.py").exists()}
    for name in subpackages:
        assert re.search(rf"\b{name}/", page), f"docs/architecture.md does not name {name}/"
    for parts in LAYERS:
        for name in parts:
            assert name in page, f"docs/architecture.md does not name {name}"
