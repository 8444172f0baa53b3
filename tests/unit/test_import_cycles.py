"""No module of fairseq_xlmr imports back, directly or through others, into a module that imports it, and imports go
down the layers of docs/architecture.md, never up.

The graph is read from the source with `ast`, function-level imports included: an import moved into a
function to dodge a cycle at load time is still a cycle in the design.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "fairseq_xlmr"

# docs/architecture.md, bottom first: a module may import its own layer and those below.
LAYERS = [
    ["files", "tables", "schedules"],
    ["modules", "data", "preprocess", "evaluation.metrics", "evaluation.qa_metrics"],
    ["models", "checkpoint", "task_checks"],
    ["tasks", "criterions", "optim", "finetune", "patches"],
    ["__init__", "plugin", "components", "hub"],
    ["evaluation", "analysis", "experiments", "interop", "fusion"],
    ["cli", "commands"],
]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, name: str, is_package: bool, modules: set) -> set:
    """The `modules` that the code `source` of module `name` imports anywhere, functions included.

    `from pkg import mod` counts as importing `pkg.mod` when that is a module, else `pkg`.
    """
    package = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolved against this module's package
                parts = package.split(".")
                origin = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                origin = node.module
            for alias in node.names:
                submodule = f"{origin}.{alias.name}"
                found.add(submodule if submodule in modules else origin)
    return {module for module in found if module in modules and module != name}


def import_graph() -> dict:
    paths = {module_name(path): path for path in ROOT.rglob("*.py")}
    return {name: imported_modules(path.read_text(), name, path.name == "__init__.py", set(paths))
            for name, path in paths.items()}


def find_cycle(graph: dict):
    """One cycle as [a, b, ..., a], or None (depth-first search; a module on the current path seen again)."""
    done, path = set(), []

    def visit(node):
        path.append(node)
        for dep in sorted(graph[node]):
            if dep in path:
                return path[path.index(dep):] + [dep]
            if dep not in done:
                cycle = visit(dep)
                if cycle:
                    return cycle
        path.pop()
        done.add(node)
        return None

    for node in sorted(graph):
        if node not in done:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 50 and graph["fairseq_xlmr.hub"], "the walk found too few modules or imports"
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def layer(module: str) -> int:
    """The LAYERS index of `fairseq_xlmr.<module>` (its own entry, else its package's)."""
    parts = module.split(".")[1:] or ["__init__"]
    for name in (".".join(parts[:2]), parts[0]):
        for index, names in enumerate(LAYERS):
            if name in names:
                return index
    raise AssertionError(f"{module} is in no layer of LAYERS: add it (and to docs/architecture.md)")


def test_imports_go_down_the_layers():
    upward = [f"{module} -> {dep}" for module, deps in import_graph().items() for dep in sorted(deps)
              if layer(dep) > layer(module)]
    assert not upward, "imports up the layers of docs/architecture.md: " + "; ".join(upward)


def test_an_import_inside_a_function_closes_a_cycle():
    modules = {"pkg", "pkg.a", "pkg.b", "pkg.sub", "pkg.sub.c"}
    source_a = "from pkg import b\n"
    source_b = "def late():\n    from pkg.a import thing\n"
    source_c = "from ..a import thing\nfrom . import other\n"
    graph = {
        "pkg.a": imported_modules(source_a, "pkg.a", False, modules),
        "pkg.b": imported_modules(source_b, "pkg.b", False, modules),
        "pkg.sub.c": imported_modules(source_c, "pkg.sub.c", False, modules),
    }
    assert graph == {"pkg.a": {"pkg.b"}, "pkg.b": {"pkg.a"}, "pkg.sub.c": {"pkg.a", "pkg.sub"}}
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.a"]
    assert find_cycle({"pkg.a": {"pkg.b"}, "pkg.b": set()}) is None
