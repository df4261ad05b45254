"""The packages' import graph: no circle, and every import goes down the layers.

Runtime imports count, function-level ones included (``if TYPE_CHECKING:`` blocks do not).
The layers, from the ground floor up (a layer imports only those listed below it):

- ``core``: registry, parameter schema, defaults; no hwprune imports.
- ``hwmodels`` (cost models, numpy only) <- ``pruning`` (schemes, masks, export).
- ``tracking`` (MLflow): nothing above ``pruning``.
- ``envs.workloads``: models, data, training, evaluation, recovery; never the
  environment or the proxies.
- ``envs.proxies``: the accuracy proxies; on workloads, never the environment.
- the environment (``envs`` and its other modules: spec, task, ledger, LayerPruneEnv,
  factory): on workloads and proxies, never on an agent or the application.
- the search methods (``agents`` outside ``agents.app``): agents, baselines, learners,
  recorder; never the application.
- the application (``agents.app``: search runs, finalize, sweep, catalog, the CLI):
  anything; nothing imports it.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("agents", "core", "envs", "hwmodels", "pruning", "tracking")


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = path
    return out


def _runtime_imports(tree: ast.AST) -> list[str]:
    """Modules imported at run time: ``if TYPE_CHECKING:`` blocks do not count."""
    skipped = {
        id(child)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for stmt in node.body
        for child in ast.walk(stmt)
    }
    names = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names += [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
    return names


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (a package's own submodules excluded:
    ``pkg/__init__`` re-exporting ``pkg.sub`` is no circle)."""
    modules = _modules()

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        for name in _runtime_imports(ast.parse(path.read_text())):
            target = owner(name)
            if target and target != module and not module.startswith(target + "."):
                graph[module].add(target)
    return graph


#: Layer -> the layers it may import (besides itself).
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "hwmodels": {"core"},
    "pruning": {"core", "hwmodels"},
    "tracking": {"core", "hwmodels", "pruning"},
    "workloads": {"core", "hwmodels", "pruning"},
    "proxies": {"core", "hwmodels", "pruning", "workloads"},
    "environment": {"core", "hwmodels", "pruning", "workloads", "proxies"},
    "methods": {"core", "hwmodels", "pruning", "tracking", "workloads", "proxies", "environment"},
    "application": {
        "core",
        "hwmodels",
        "pruning",
        "tracking",
        "workloads",
        "proxies",
        "environment",
        "methods",
    },
}


def layer(module: str) -> str:
    """The layer of project module ``module`` (see the module docstring)."""
    for prefix, name in (
        ("envs.workloads", "workloads"),
        ("envs.proxies", "proxies"),
        ("envs", "environment"),
        ("agents.app", "application"),
        ("agents", "methods"),
    ):
        if module == prefix or module.startswith(prefix + "."):
            return name
    return module.partition(".")[0]


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """Every import of ``graph`` that goes up or sideways across the layers."""
    return [
        f"{module} ({layer(module)}) imports {target} ({layer(target)})"
        for module in sorted(graph)
        for target in sorted(graph[module])
        if layer(target) != layer(module) and layer(target) not in ALLOWED[layer(module)]
    ]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` (as a path that ends where it starts), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_circles():
    assert find_cycle(import_graph()) is None


def test_the_circle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_every_module_has_a_layer():
    assert {layer(m) for m in import_graph()} <= set(ALLOWED)


def test_the_layers_have_no_circle():
    assert find_cycle(ALLOWED) is None


def test_imports_go_down_the_layers():
    assert layer_violations(import_graph()) == []


def test_the_layer_check_finds_an_upward_import():
    graph = {
        "envs.workloads.data": {"envs.factory"},
        "envs.proxies.builtin": {"envs.workloads.base"},
        "envs.layer_prune_env": {"agents.base"},
        "agents.learners": {"agents.app.search"},
        "agents.app.cli": {"agents.base", "envs"},
    }
    assert layer_violations(graph) == [
        "agents.learners (methods) imports agents.app.search (application)",
        "envs.layer_prune_env (environment) imports agents.base (methods)",
        "envs.workloads.data (workloads) imports envs.factory (environment)",
    ]
