"""The dependency arrows, read from the imports of every module: a wrong one fails here.

    ui -> engine, rag        studio -> engine, rag, ui        engine -x-> rag, ui, studio, gradio
    rag -x-> engine (but engine.errors, the shared base class), ui, studio, gradio
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {
    "engine": {"rag", "ui", "studio", "gradio"},
    "rag": {"engine", "ui", "studio", "gradio"},
    "ui": {"studio"},
    "studio": set(),
}


SHARED = {"engine.errors"}  # the one module every package may import: the StudioError base class


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names if a.name not in SHARED}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module not in SHARED:
            out.add(node.module.split(".")[0])
    return out


def test_no_package_imports_across_a_forbidden_arrow():
    wrong = [f"{path.relative_to(ROOT)} imports {name}"
             for package, banned in FORBIDDEN.items()
             for path in sorted((ROOT / package).rglob("*.py"))
             for name in sorted(_imports(path) & banned)]
    assert wrong == []


def test_the_rule_reads_every_kind_of_import(tmp_path):
    sample = tmp_path / "m.py"
    sample.write_text("import rag.store\nfrom ui import app\ndef f():\n    from studio.cli import main\n"
                      "from engine.errors import StudioError\n")
    assert _imports(sample) == {"rag", "ui", "studio"}
