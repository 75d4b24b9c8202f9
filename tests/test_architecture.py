"""The product's shape as issue #12 asks for it: product modules import without the demo host or the sandbox, name
neither anywhere (not even inside a function), import no cycle at module level, and never the package root."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ROOT / "itam_admin"
DEMO_PARTS = ("servicenow_sandbox", "demo_portal", "wsgi")


def product_modules() -> dict[str, Path]:
    modules = {}
    for path in PRODUCT.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def imported_names(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """Absolute module names an Import/ImportFrom node names (a `from x import y` names x.y when that is a module)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        if node.level:
            base = module.split(".") if is_package else module.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            origin = ".".join(base + ([node.module] if node.module else []))
        else:
            origin = node.module or ""
        return [origin] + [f"{origin}.{alias.name}" for alias in node.names]
    return []


def test_no_product_module_names_the_demo_host_or_the_sandbox_even_inside_a_function():
    offenders = []
    for name, path in product_modules().items():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            for imported in imported_names(node, name, path.name == "__init__.py"):
                if imported.split(".")[0] in DEMO_PARTS:
                    offenders.append(f"{name}:{node.lineno} imports {imported}")
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if any(node.value.startswith(part + ".") or node.value == part for part in DEMO_PARTS):
                    offenders.append(f"{name}:{node.lineno} names {node.value!r}")
    assert offenders == []


def test_every_product_module_imports_with_the_demo_host_and_the_sandbox_unimportable():
    script = f"""
import importlib, importlib.abc, sys
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {DEMO_PARTS!r}:
            raise ImportError("the product must not need " + name)
sys.meta_path.insert(0, Refuse())
for module in {sorted(product_modules())!r}:
    importlib.import_module(module)
print("imported", len({sorted(product_modules())!r}))
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"imported {len(product_modules())}" in result.stdout


def module_level_imports() -> dict[str, set[str]]:
    """Each product module's imports of other product modules at module level (TYPE_CHECKING blocks left out)."""
    modules = product_modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges: set[str] = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            for imported in imported_names(node, name, path.name == "__init__.py"):
                if imported in modules and imported != name:
                    edges.add(imported)
        graph[name] = edges
    return graph


def test_no_import_cycle_among_product_modules_at_module_level():
    graph = module_level_imports()
    cycles, state = [], dict.fromkeys(graph, 0)  # 0 unseen, 1 on the stack, 2 done

    def visit(module: str, stack: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state[target] == 1:
                cycles.append(stack[stack.index(target) :] + [target])
            elif state[target] == 0:
                visit(target, stack + [target])
        state[module] = 2

    for module in sorted(graph):
        if state[module] == 0:
            visit(module, [module])
    assert cycles == []


def test_nothing_in_the_product_imports_the_package_root_and_the_root_imports_nothing():
    graph = module_level_imports()
    assert graph["itam_admin"] == set()
    importers = sorted(name for name, edges in graph.items() if "itam_admin" in edges)
    assert importers == []


def test_the_active_run_index_names_exactly_the_active_statuses():
    from itam_admin.exports.models import ExportRun
    from itam_admin.exports.runs import ACTIVE_STATUSES

    index = next(i for i in ExportRun.__table__.indexes if i.name == "uq_itam_export_run_one_active")
    where = str(index.dialect_options["postgresql"]["where"])
    assert where == "status IN (" + ", ".join(f"'{status}'" for status in ACTIVE_STATUSES) + ")"
