"""The import structure: stages import only the stages below them, no module circle (imports made inside
functions counted too), and an import inside a function only where it defers a heavy package off start-up.

The layers, lowest first (each may import itself and what its row names):

    engine.errors                  nothing of the studio
    engine.models                  errors
    engine.demo                    nothing of the studio
    engine.owners                  nothing of the studio (who owns a run, a collection)
    engine.accounts                errors (the accounts of `studio --auth`)
    engine.capability              errors, models
    engine.data                    errors, models, demo, capability
    engine.train                   the above and data
    engine.infer, engine.export, engine.advise    the above and train (not each other)
    rag                            engine.errors only (a language model reaches it as a plain callable)
    ui                             engine, rag, ui
    studio                         everything (the composition: CLI, benchmarks, app start)

    pytest tests/test_imports.py
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("engine", "rag", "ui", "studio")
BASE = {"engine.errors", "engine.models", "engine.demo", "engine.capability", "engine.owners", "engine.accounts"}
ALLOWED = {
    "engine": set(),  # the package itself: its docstring, no imports
    "engine.errors": set(),
    "engine.models": {"engine.errors"},
    "engine.demo": set(),
    "engine.owners": set(),
    "engine.accounts": {"engine.errors"},
    "engine.capability": {"engine.errors", "engine.models"},
    "engine.data": BASE,
    "engine.train": BASE | {"engine.data"},
    "engine.infer": BASE | {"engine.data", "engine.train"},
    "engine.export": BASE | {"engine.data", "engine.train"},
    "engine.advise": BASE | {"engine.data", "engine.train"},
    "rag": {"engine.errors"},
    "ui": {"engine", "rag"},
    "studio": {"engine", "rag", "ui"},
}
# The word a function-local import of the studio's own modules carries in its comment (on its line or the
# line above): it is there to keep a heavy package (torch, transformers, gradio) off a start-up.
DEFERRED = "deferred"


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


MODULES = modules()


def stage(module: str) -> str:
    """The row of the table a module belongs to: the longest key it starts with."""
    keys = [k for k in ALLOWED if module == k or module.startswith(k + ".")]
    assert keys, f"{module} is in no layer of tests/test_imports.py's table; add it"
    return max(keys, key=len)


def target(name: str) -> str | None:
    """The studio module a dotted name is, or is in: `engine.train.runs.Run` -> engine.train.runs."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in MODULES:
            return ".".join(parts[:n])
    return None


def read_imports(source: str, module: str = "") -> list[tuple[str, int, bool]]:
    """(imported studio module, line, inside a function) of each import in `source`. `from X import a` is
    the module X.a where there is one (a submodule), else X."""
    found = []

    def visit(node, in_function: bool):
        for child in ast.iter_child_nodes(node):
            names = []
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                names = [f"{child.module}.{a.name}" for a in child.names]
            for name in names:
                t = target(name)
                if t is not None and t != module:
                    found.append((t, child.lineno, in_function))
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(source), False)
    return found


def imports(module: str) -> list[tuple[str, int, bool]]:
    return read_imports(MODULES[module].read_text(encoding="utf-8"), module)


def graph() -> dict[str, set[str]]:
    return {m: {t for t, _, _ in imports(m)} for m in MODULES}


def test_every_module_is_in_a_layer():
    for module in MODULES:
        stage(module)


def test_stages_import_only_the_stages_below_them():
    wrong = []
    for module in MODULES:
        own = stage(module)
        for t, line, _ in imports(module):
            other = stage(t)
            ok = other == own or other in ALLOWED[own] or any(other.startswith(a + ".") for a in ALLOWED[own])
            if not ok:
                wrong.append(f"{MODULES[module].relative_to(ROOT)}:{line} imports {t} ({own} may not import {other})")
    assert not wrong, "\n".join(wrong)


def test_engine_and_rag_never_import_gradio_or_the_ui():
    wrong = []
    for module, path in MODULES.items():
        if stage(module).startswith(("engine", "rag")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                if any(n.split(".")[0] in ("gradio", "ui", "studio") for n in names):
                    wrong.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not wrong, wrong


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), each a circle of imports."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]

    def connect(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            connect(v)
    return out


def test_no_import_circle_counting_imports_inside_functions_and_main_blocks():
    assert cycles(graph()) == []


def test_the_reading_sees_every_kind_of_import():
    source = ("import rag.store\nfrom engine.train import runs\nfrom engine.models import DEFAULT_MODEL\n"
              "def f():\n    from engine.infer.chat import ChatModel\n\n"
              "if __name__ == '__main__':\n    from ui.app import main\n")
    assert read_imports(source) == [("rag.store", 1, False), ("engine.train.runs", 2, False),
                                    ("engine.models", 3, False), ("engine.infer.chat", 5, True), ("ui.app", 8, False)]


def test_the_circle_check_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_an_import_inside_a_function_says_it_defers_a_heavy_package():
    unsaid = []
    for module, path in MODULES.items():
        lines = path.read_text(encoding="utf-8").splitlines()
        for t, line, in_function in imports(module):
            said = DEFERRED in lines[line - 1] or (line > 1 and DEFERRED in lines[line - 2])
            if in_function and not said:
                unsaid.append(f"{path.relative_to(ROOT)}:{line} imports {t} inside a function")
    assert not unsaid, ("imports inside functions without a '# deferred: why' comment (move them to the head, "
                        "or say which heavy package they keep off start-up):\n" + "\n".join(sorted(set(unsaid))))


def test_each_stage_package_says_what_it_does_and_what_it_may_import():
    for package in ("engine.data", "engine.train", "engine.infer", "engine.export", "engine.advise"):
        doc = ast.get_docstring(ast.parse(MODULES[package].read_text(encoding="utf-8"))) or ""
        assert "May import:" in doc, f"{package}/__init__.py's docstring does not say which stages it may import"
        said = {w.strip(" .,") for w in doc.split("May import:")[1].split("\n")[0].split(",")}
        assert said == {s for s in ALLOWED[package]}, (package, said)
