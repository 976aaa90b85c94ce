"""The package's imports run one way: public calls -> pipeline -> backends -> worker.

The worker side (``pymc_modal.worker``) and the client side (everything else)
share only the job contract (``job``, ``payload``, ``errors``, ``_compat``,
``convergence``, ``samplers``, ``checks``, ``paths``).
Imports inside functions count: they are still dependencies.
"""

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "pymc_modal"
SHARED = {
    "pymc_modal.job",
    "pymc_modal.payload",
    "pymc_modal.errors",
    "pymc_modal._compat",
    "pymc_modal.convergence",
    "pymc_modal.samplers",
    "pymc_modal.checks",
    "pymc_modal.paths",
}
CROSSINGS = {("worker", "client"), ("client", "worker"), ("shared", "client"), ("shared", "worker")}
# A backend starts the worker through its one entry point.
STARTS_THE_WORKER = {("pymc_modal.backends.modal", "pymc_modal.worker")}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's own modules that ``path`` imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from package import name` imports the submodule `name` if there is one.
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            names = [name if name in modules else node.module for name in names]
        else:
            continue
        found.update(name for name in names if name in modules)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, modules) - {name} for name, path in modules.items()}


def _side(name: str) -> str:
    if name in SHARED:
        return "shared"
    return "worker" if name.startswith("pymc_modal.worker") else "client"


def _crossings(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Imports that cross between the sides other than through the shared contract."""
    wrong = []
    for importer, imported in graph.items():
        for target in imported:
            crossing = (_side(importer), _side(target)) in CROSSINGS
            if crossing and (importer, target) not in STARTS_THE_WORKER:
                wrong.append((importer, target))
    return sorted(wrong)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the modules along it, or None."""
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> list[str] | None:
        state[name] = "open"
        for target in sorted(graph[name]):
            if state.get(target) == "open":
                return [*path[path.index(target) :], target]
            if target not in state and (found := visit(target, [*path, target])):
                return found
        state[name] = "done"
        return None

    for name in sorted(graph):
        if name not in state and (found := visit(name, [name])):
            return found
    return None


def test_the_package_has_no_import_cycle():
    assert _cycle(_graph()) is None


def test_worker_and_client_share_only_the_contract():
    graph = _graph()
    assert "pymc_modal.worker.numpyro" in graph  # the walk found the worker package
    assert _crossings(graph) == []


@pytest.mark.parametrize(
    ("graph", "wrong"),
    [
        ({"pymc_modal.worker.forward": {"pymc_modal.result"}}, "crossing"),
        ({"pymc_modal.job": {"pymc_modal.worker.chains"}}, "crossing"),
        ({"pymc_modal.store": {"pymc_modal.worker.numpyro"}}, "crossing"),
        ({"pymc_modal.a": {"pymc_modal.b"}, "pymc_modal.b": {"pymc_modal.a"}}, "cycle"),
    ],
)
def test_the_checks_catch_what_they_guard_against(graph, wrong):
    for imported in list(graph.values()):
        graph.update({name: set() for name in imported if name not in graph})
    assert bool(_crossings(graph)) == (wrong == "crossing")
    assert (_cycle(graph) is not None) == (wrong == "cycle")


def test_readme_layout_names_every_module_of_the_tree():
    readme = (PACKAGE.parent / "README.md").read_text().split("## Layout", 1)[1]
    listed = set(re.findall(r"^\| `(pymc_modal/[\w/]+\.py)` \|", readme, flags=re.M))
    tree = {
        str(path.relative_to(PACKAGE.parent))
        for path in PACKAGE.rglob("*.py")
        if path != PACKAGE / "__init__.py"
    }
    assert listed == tree
