"""The import structure of the packages ``motion``, ``syncers`` and ``render``, read with ``ast``
(nothing is imported): no cycle among module-level imports, no project import hidden in a
function unless allow-listed with its reason, and the layering ``syncers`` < ``render`` <
``motion`` (``motion.app`` on top, imported only from inside itself).

An import ``a.b.c`` (or ``from a.b import c``, ``c`` a submodule) is an edge to the module
``a.b.c`` and to each package above it that the importer is not itself inside (those run their
``__init__`` first anyway, so they close no cycle that matters). ``motion.app.cli`` imports
every command's module by name (``importlib``) when the command runs; those are deferred
imports by design and not edges here.
"""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("motion", "syncers", "render")

# Project imports inside functions that are there for a reason; each carries a comment saying
# why on its line or the line before (checked below). Keyed by (module, function, imported
# module), not line numbers, so edits elsewhere do not break it.
DEFERRED = {
    # `msync ... --distributed`: jax.distributed.initialize must run before anything starts a
    # JAX backend, so the CLI imports the run infrastructure only once it knows.
    ("motion.app.cli", "main", "syncers.run.parallel"),
    # generate and stream start loading dlib's predictor before importing their command; at the
    # top the landmarker would load numpy into every `msync --help`.
    ("motion.app.cli", "_command", "syncers.data.landmarks"),
}

# Project imports inside functions on branch `house` with no comment giving a reason: to be
# hoisted to module level or justified (then moved to DEFERRED). Listed, not accepted: the
# test below fails when one is added, and when one is fixed without being removed here.
UNJUSTIFIED: set[tuple[str, str, str]] = set()


def _modules() -> dict[str, Path]:
    """Every module of the packages: dotted name -> file (a package is its ``__init__.py``)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _targets(node: ast.Import | ast.ImportFrom, importer: str) -> list[str]:
    """The project modules an import statement names (empty for third-party imports)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:                                        # relative: resolve it
            package = importer if _is_package(importer) else importer.rpartition(".")[0]
            for _ in range(node.level - 1):
                package = package.rpartition(".")[0]
            base = ".".join(filter(None, (package, base)))
        # `from pkg import name`: the submodule pkg.name when there is one, else pkg itself
        names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                 for alias in node.names]
    out = []
    for name in names:
        while name and name not in MODULES:                   # `import a.b.attr`, third party
            name = name.rpartition(".")[0]
        if name:
            out.append(name)
    return out


def _scan():
    """``(top_level, deferred, all_imports)``: module -> set of imported project modules at
    module level; ``{(module, function, target): (path, line)}`` for imports in functions; and
    every (module, target, line) pair, wherever it is."""
    top, deferred, every = {}, {}, []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        top[module] = set()
        in_function = set()
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                for node in ast.walk(fn):
                    if isinstance(node, (ast.Import, ast.ImportFrom)) \
                            and id(node) not in in_function:
                        in_function.add(id(node))
                        for target in _targets(node, module):
                            deferred.setdefault((module, fn.name, target), (path, node.lineno))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for target in _targets(node, module):
                every.append((module, target, node.lineno))
                if id(node) not in in_function:
                    top[module].add(target)
    return top, deferred, every


TOP, IN_FUNCTIONS, EVERY = _scan()


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _graph() -> dict[str, set[str]]:
    graph = {}
    for module, targets in TOP.items():
        edges = set()
        own = set(_ancestors(module)) | {module}
        for target in targets:
            edges |= {p for p in _ancestors(target) + [target] if p not in own}
        graph[module] = edges
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or None (iterative DFS, sorted order)."""
    state: dict[str, int] = {}                 # 1: on the stack, 2: done
    for root in sorted(graph):
        if state.get(root):
            continue
        stack, path = [(root, iter(sorted(graph[root])))], [root]
        state[root] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = 2
                stack.pop()
                path.pop()
            elif state.get(child) == 1:
                return path[path.index(child):] + [child]
            elif not state.get(child):
                state[child] = 1
                stack.append((child, iter(sorted(graph.get(child, ())))))
                path.append(child)
    return None


def test_the_scan_sees_the_packages():
    # guards the tests below against passing vacuously (a moved package, a broken resolver)
    assert {"motion.app.cli", "motion.train", "syncers.train", "render.fomm.model"} <= set(TOP)
    assert "syncers.run.parallel" in TOP["syncers.train"]
    assert "motion.app.cli" in {t for m, t, _ in EVERY if m == "motion.app.demo"}
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle():
    cycle = _find_cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_project_imports_inside_functions_are_only_the_listed_ones():
    found = set(IN_FUNCTIONS)
    listed = DEFERRED | UNJUSTIFIED
    where = lambda keys: "\n".join(
        f"  {IN_FUNCTIONS[k][0].relative_to(REPO)}:{IN_FUNCTIONS[k][1]} {k}" for k in sorted(keys))
    assert not found - listed, "project imports inside functions (hoist them, or allow-list " \
        "them in DEFERRED with a comment saying why):\n" + where(found - listed)
    assert not listed - found, f"listed but not found (remove them here): {sorted(listed - found)}"
    assert not DEFERRED & UNJUSTIFIED


def test_each_deferred_import_says_why():
    for key in sorted(DEFERRED):
        path, line = IN_FUNCTIONS[key]
        lines = path.read_text().splitlines()
        here, before = lines[line - 1], lines[line - 2].strip()
        assert "#" in here or before.startswith("#"), \
            f"{path.relative_to(REPO)}:{line}: a deferred import needs a comment saying why"


# Face perception, media reading and dataset preparation: the data layer's, which the
# renderers do not need (they draw keypoints onto a crop they are given).
DATA_PREPARATION = {"syncers.data.face", "syncers.data.landmarks", "syncers.data.video",
                    "syncers.data.prepare"}


def test_layering():
    bad = []
    for module, target, line in EVERY:               # module level and inside functions alike
        path = MODULES[module].relative_to(REPO)
        top_package = module.partition(".")[0]
        if top_package == "syncers" and target.partition(".")[0] in ("motion", "render"):
            bad.append(f"{path}:{line}: syncers imports {target}")
        if top_package == "render" and target.partition(".")[0] == "motion":
            bad.append(f"{path}:{line}: render imports {target}")
        if top_package == "render" and target in DATA_PREPARATION:
            bad.append(f"{path}:{line}: render imports {target} (data preparation)")
        if (target == "motion.app" or target.startswith("motion.app.")) and not (
                module == "motion.app" or module.startswith("motion.app.")):
            bad.append(f"{path}:{line}: {module} imports {target} (only motion.app may)")
    assert not bad, "\n".join(bad)


# The generation pipeline and the commands: what a trained model is used by, never what
# training or saving a model needs.
GENERATION = {"motion.talking_head", "motion.generate", "motion.stream"}


def _reached(module: str, graph: dict[str, set[str]]) -> set[str]:
    """Every module ``module`` imports at module level, directly or through others."""
    seen, todo = set(), [module]
    while todo:
        for child in graph.get(todo.pop(), ()):
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return seen


def test_training_imports_no_generation_pipeline_nor_command():
    graph = _graph()
    assert "motion.generate" in _reached("motion.talking_head", graph)   # not vacuous
    for trainer in ("motion.train", "motion.saved_model"):
        reached = _reached(trainer, graph)
        bad = sorted(m for m in reached if m in GENERATION or m == "motion.app"
                     or m.startswith("motion.app."))
        assert not bad, f"{trainer} imports {', '.join(bad)}"
