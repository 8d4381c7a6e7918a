"""Guards that keep the package one house (issue 18, docs/architecture.md):
no import cycle between jaxpot modules, no import from a lower layer into a
higher one, and no package file over 600 lines.

Imports are read with ``ast`` from every ``jaxpot/**/*.py`` (imports inside
functions included, since a lazy import is still a dependency); nothing is
imported, so these tests take well under a second.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "jaxpot"
MAX_LINES = 600

# docs/architecture.md, "Layers": module prefix -> layer. A module may import
# only from its own layer or lower ones. The longest matching prefix wins.
# Old paths that survive as shims during the move sit in the layer of their
# new home. Within layer 3, electrostatics (3.0) sits below the other kinds
# (3.5), which may use it.
LAYERS = {
    # L0 core
    "jaxpot": 0,   # the package root: a lazy table of names, it imports nothing of jaxpot
    "jaxpot.units": 0, "jaxpot.system": 0, "jaxpot.errors": 0, "jaxpot.space": 0,
    "jaxpot.mapping": 0, "jaxpot.runtime": 0, "jaxpot.config": 0, "jaxpot.profiling": 0,
    # L1 neighbor lists and dynamics
    "jaxpot.partition": 1,
    "jaxpot.dynamics": 1,
    # L2 the potential contract and the registry of kinds
    "jaxpot.potentials": 2, "jaxpot.potentials.base": 2, "jaxpot.potentials.registry": 2,
    # L3 potential kinds
    "jaxpot.electrostatics": 3.0,
    "jaxpot.forcefield": 3.5,
    "jaxpot.ml": 3.5,
    "jaxpot.kernels": 3.5,
    "jaxpot.potentials.saved": 3.5,
    # prepare() needs only L0-L2 (the registry finds kinds at run time), so kinds may call it
    "jaxpot.assembly": 2,
    # L4 builders and files
    "jaxpot.build": 4, "jaxpot.io": 4, "jaxpot.tomlio": 0,
    # L5 drivers and bridges
    "jaxpot.simulate": 5, "jaxpot.minimize": 5, "jaxpot.training": 5, "jaxpot.interop": 5,
    # L6 entry points
    "jaxpot.cli": 6, "jaxpot.demo": 6,
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _resolve(name: str, modules) -> str | None:
    """The jaxpot module that ``name`` (a dotted path, maybe ending in an
    attribute) refers to; None outside jaxpot."""
    if name != "jaxpot" and not name.startswith("jaxpot."):
        return None
    while name not in modules and "." in name:
        name = name.rsplit(".", 1)[0]
    return name if name in modules else None


def _imports(module: str, path: Path, modules) -> set[str]:
    """Every jaxpot module ``module`` imports, anywhere in its file."""
    package = module if _is_package(path) else module.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            # ``from pkg import name``: name is a submodule or an attribute of pkg
            targets = [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            m = _resolve(t, modules)
            if m is not None and m != module:
                out.add(m)
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> jaxpot modules it imports. A package ``__init__`` that
    imports its own submodules (re-exports) adds no edge."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        deps = _imports(name, path, modules)
        if _is_package(path):
            deps = {d for d in deps if not d.startswith(name + ".")}
        graph[name] = deps
    return graph


def strongly_connected_components(graph) -> list[list[str]]:
    """Tarjan's algorithm (iterative); components with more than one module."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, it = work[-1]
            for nxt in it:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.get(nxt, ())))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        m = stack.pop()
                        on_stack.discard(m)
                        comp.append(m)
                        if m == node:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def layer_of(module: str):
    best = None
    for prefix in LAYERS:
        if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > len(best)):
            best = prefix
    return None if best is None else LAYERS[best]


def cycle_offenders() -> list[str]:
    graph = import_graph()
    lines = []
    for comp in strongly_connected_components(graph):
        edges = [f"{a} -> {b}" for a in comp for b in sorted(graph[a]) if b in comp]
        lines.append(f"cycle among {', '.join(comp)}: " + "; ".join(edges))
    return lines


def upward_offenders() -> list[str]:
    lines = []
    for module, deps in sorted(import_graph().items()):
        lm = layer_of(module)
        if lm is None:
            lines.append(f"{module}: not in the layer table of tests/test_layout.py (add it)")
            continue
        for d in sorted(deps):
            ld = layer_of(d)
            if ld is not None and ld > lm:
                lines.append(f"{module} (L{lm:g}) imports {d} (L{ld:g})")
    return lines


def size_offenders() -> list[str]:
    out = []
    for name, path in _modules().items():
        n = len(path.read_text().splitlines())
        if n > MAX_LINES:
            out.append(f"{path.relative_to(ROOT)}: {n} lines")
    return out


def test_strongly_connected_components_finds_a_cycle_and_ignores_a_chain():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert strongly_connected_components(graph) == [["a", "b", "c"]]
    assert strongly_connected_components({"a": {"b"}, "b": set()}) == []


def test_every_module_has_a_layer():
    missing = [m for m in _modules() if layer_of(m) is None]
    assert not missing, "modules missing from LAYERS in tests/test_layout.py:\n" + "\n".join(missing)


def test_no_import_cycle_between_jaxpot_modules():
    bad = cycle_offenders()
    assert not bad, "import cycles (imports inside functions included):\n" + "\n".join(bad)


def test_no_module_imports_from_a_higher_layer():
    bad = upward_offenders()
    assert not bad, "upward imports across the layers of docs/architecture.md:\n" + "\n".join(bad)


def test_no_package_file_over_600_lines():
    bad = size_offenders()
    assert not bad, f"package files over {MAX_LINES} lines:\n" + "\n".join(bad)


if __name__ == "__main__":   # python tests/test_layout.py: list today's offenders
    for title, fn in (("cycles", cycle_offenders), ("upward imports", upward_offenders),
                      ("files over 600 lines", size_offenders)):
        bad = fn()
        print(f"{title}: {len(bad)}")
        for line in bad:
            print("  " + line)
