"""The package's architecture, read from its source (ast): imports point one way, no cycles, no
private names across modules, function-level imports only with a stated reason, configs that
import only from despoof_jax."""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PKG = ROOT / "despoof_jax"

# Layers, lowest first: a module may import its own layer and the ones below, never above.
# "tools" sits at the side (may import anything below the entry points; nothing imports it but
# the entry points); the entry points sit on top.
LAYERS = {
    "config": 0, "xla_flags": 0,
    "data": 1,
    "models": 2,
    "training": 3,
    "evaluation": 4,
    "serving": 5,
    "tools": 6,
    "experiment": 7, "commands": 8, "cli": 9, "main": 9,
}
# Reasons a function-level import may give (the comment after the PLC0415 marker).
ALLOWED_REASONS = ("optional dependency", "xla flags", "lazily", "pillow", "after the xla flags",
                   "loads lazily")


def _modules():
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


def _layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1:
        return -1   # the package itself (lazy public API)
    return LAYERS[parts[1]]


def _imports(path: pathlib.Path, module: str):
    """(imported module, names, node, is_function_level) for every despoof_jax import."""
    tree = ast.parse(path.read_text())
    pkg_parts = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    func_nodes = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for sub in ast.walk(node):
                func_nodes.add(id(sub))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("despoof_jax"):
                    yield a.name, [], node, id(node) in func_nodes
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg_parts[:len(pkg_parts) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name.startswith("despoof_jax"):
                yield name, [a.name for a in node.names], node, id(node) in func_nodes


def _resolve(name: str, names, known: set) -> list:
    """`from pkg import mod` imports module pkg.mod; `from mod import f` imports mod."""
    out = []
    for n in names:
        if f"{name}.{n}" in known:
            out.append((f"{name}.{n}", None))
        else:
            out.append((name, n))
    return out or [(name, None)]


def _function_level_imports(path: pathlib.Path):
    """(line number, source line) of every import inside a function, any package."""
    tree = ast.parse(path.read_text())
    lines = path.read_text().splitlines()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for sub in ast.walk(node):
                if isinstance(sub, (ast.Import, ast.ImportFrom)):
                    yield sub.lineno, lines[sub.lineno - 1]


def _graph():
    mods = dict(_modules())
    known = set(mods)
    edges, private, lazy = {}, [], []
    for mod, path in mods.items():
        for name, names, node, in_func in _imports(path, mod):
            for target, attr in _resolve(name, names, known):
                if target not in known:
                    raise AssertionError(f"{mod} imports {target}, which does not exist")
                if target != mod:
                    edges.setdefault(mod, set()).add(target)
                if attr and attr.startswith("_") and not attr.startswith("__"):
                    private.append(f"{mod}: from {target} import {attr}")
        lazy.extend((mod, n, text) for n, text in _function_level_imports(path))
    return mods, edges, private, lazy


def test_no_import_cycles():
    mods, edges, _, _ = _graph()
    state = {}

    def visit(m, stack):
        state[m] = "active"
        for t in sorted(edges.get(m, ())):
            if t.startswith(m + "."):   # a package importing its own submodule is not a cycle
                continue
            if state.get(t) == "active":
                cyc = stack[stack.index(t):] + [t] if t in stack else [m, t]
                pytest.fail("import cycle: " + " -> ".join(cyc))
            if t not in state:
                visit(t, stack + [t])
        state[m] = "done"

    for m in sorted(mods):
        if m not in state:
            visit(m, [m])


def test_imports_point_down_the_layers():
    _, edges, _, _ = _graph()
    bad = [f"{m} (layer {_layer(m)}) imports {t} (layer {_layer(t)})"
           for m, ts in edges.items() for t in ts
           if _layer(m) >= 0 and _layer(t) > _layer(m)]
    assert not bad, "imports that point up the layers:\n" + "\n".join(sorted(bad))


def test_no_private_names_across_modules():
    mods, _, private, _ = _graph()
    # Attribute access `mod._name` on an imported module counts too.
    for mod, path in mods.items():
        tree = ast.parse(path.read_text())
        imported = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                    and (n.module or "").startswith("despoof_jax") for a in n.names}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in imported and node.attr.startswith("_")
                    and not node.attr.startswith("__")):
                private.append(f"{mod}:{node.lineno}: {node.value.id}.{node.attr}")
    assert not private, "private names used across modules:\n" + "\n".join(private)


def test_function_level_imports_state_a_reason():
    _, _, _, lazy = _graph()
    bad = [f"{m}:{line}: {text.strip()}" for m, line, text in lazy
           if "PLC0415" not in text
           or not any(r in text.lower() for r in ALLOWED_REASONS)]
    assert not bad, ("function-level imports without a stated reason (optional dependency, XLA "
                     "flags before JAX starts):\n" + "\n".join(bad))


def test_configs_import_only_from_the_package():
    for path in sorted((ROOT / "configs").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert node.level == 0 and not (node.module or "").startswith("configs"), (
                    f"{path.name}: `from {node.module} import ...`; configs import only from "
                    "despoof_jax (shared helpers live in despoof_jax.config)")
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("configs") for a in node.names), path.name


def test_the_checker_catches_what_it_should(tmp_path):
    """The graph code itself: a cycle and a private import in a fabricated package are seen."""
    a = "from despoof_jax.data import pipeline\nfrom despoof_jax.training.loop import _private\n"
    tree = ast.parse(a)
    names = [(n.module, [x.name for x in n.names]) for n in ast.walk(tree)
             if isinstance(n, ast.ImportFrom)]
    known = {"despoof_jax.data.pipeline", "despoof_jax.training.loop"}
    resolved = [r for name, ns in names for r in _resolve(name, ns, known)]
    assert ("despoof_jax.data.pipeline", None) in resolved
    assert ("despoof_jax.training.loop", "_private") in resolved
    assert _layer("despoof_jax.serving.model") > _layer("despoof_jax.training.loop")
