"""Which checkpoints of a run can be resumed from, and setting aside the ones that cannot.

A checkpoint folder `checkpoint-N` is complete only when its files load: the trainer wrote
`trainer_state.json` (it writes it last), the marker `studio-complete.json` that the trainer's
callback writes after the save records every file's size and each file still has it, every
`.safetensors` header parses and covers its file exactly, every JSON file parses, and every
torch pickle (`optimizer.pt`, `rng_state.pth`, ...) is a whole zip archive. Nothing is loaded
into memory beyond headers, so the check takes milliseconds.

A checkpoint cut short (no trainer_state.json) is renamed `incomplete-checkpoint-N`, a damaged
one `damaged-checkpoint-N`: neither is resumed from again, nor counted or rotated by the trainer.

    python -m engine.train.checkpoints RUN_DIR/checkpoints     # says which are complete and why not
"""

from __future__ import annotations

import json
import os
import struct
import sys
import zipfile
from pathlib import Path

MARKER = "studio-complete.json"


def _step(path: Path) -> int | None:
    tail = path.name.split("-", 1)[1] if path.name.startswith("checkpoint-") else ""
    return int(tail) if tail.isdigit() else None


def _files(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file() and p.name != MARKER)


def mark_complete(path: str | Path) -> None:
    """Record that the save of `path` finished, with each file's size (written atomically, after the save)."""
    path = Path(path)
    sizes = {str(p.relative_to(path)): p.stat().st_size for p in _files(path)}
    tmp = path / (MARKER + ".tmp")
    tmp.write_text(json.dumps(sizes, indent=1), encoding="utf-8")
    os.replace(tmp, path / MARKER)


def _safetensors_problem(path: Path) -> str | None:
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            return f"{path.name} is cut short ({size} bytes)"
        (n,) = struct.unpack("<Q", head)
        if n > size - 8:
            return f"{path.name} is cut short (its header says {n} bytes, the file has {size})"
        try:
            header = json.loads(fh.read(n))
        except ValueError:
            return f"{path.name} has an unreadable header"
    end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    if 8 + n + end != size:
        return f"{path.name} is {size} bytes where its header needs {8 + n + end}"
    return None


def problem(path: str | Path) -> str | None:
    """Why the checkpoint at `path` cannot be resumed from, in a few words; None when it is complete."""
    path = Path(path)
    if not (path / "trainer_state.json").exists():
        return "its save was cut short (no trainer_state.json)"
    marker = path / MARKER
    if marker.exists():
        try:
            sizes = json.loads(marker.read_text(encoding="utf-8"))
        except ValueError:
            return f"its {MARKER} is unreadable"
        for name, size in sizes.items():
            f = path / name
            if not f.exists():
                return f"{name} is missing"
            if f.stat().st_size != size:
                return f"{name} is {f.stat().st_size} bytes, {size} when it was saved"
    for f in _files(path):
        if f.suffix == ".safetensors":
            bad = _safetensors_problem(f)
        elif f.suffix == ".json":
            try:
                json.loads(f.read_text(encoding="utf-8"))
                bad = None
            except (ValueError, UnicodeDecodeError):
                bad = f"{f.name} is not valid JSON"
        elif f.suffix in (".pt", ".pth", ".bin"):
            bad = None if zipfile.is_zipfile(f) else f"{f.name} is not a whole torch file"
        else:
            bad = None
        if bad:
            return bad
    return None


def complete(folder: str | Path) -> list[Path]:
    """The complete checkpoints in `folder`, oldest first; nothing is renamed (safe for any reader)."""
    found = [p for p in Path(folder).glob("checkpoint-*") if _step(p) is not None and problem(p) is None]
    return sorted(found, key=_step)


def newest(folder: str | Path) -> Path | None:
    found = complete(folder)
    return found[-1] if found else None


def sort_out(folder: str | Path) -> tuple[list[Path], list[str]]:
    """Set aside what cannot be resumed from; returns the complete checkpoints (oldest first) and one
    sentence per checkpoint set aside, naming it and the one training continues from instead."""
    folder = Path(folder)
    aside: list[tuple[Path, str, Path]] = []
    for path in sorted((p for p in folder.glob("checkpoint-*") if _step(p) is not None), key=_step):
        why = problem(path)
        if why is None:
            continue
        kind = "incomplete" if "cut short (no trainer_state" in why else "damaged"
        target = path.with_name(f"{kind}-{path.name}")
        n = 1
        while target.exists():
            n += 1
            target = path.with_name(f"{kind}{n}-{path.name}")
        path.rename(target)
        aside.append((path, why, target))
    found = complete(folder)
    notes = []
    for path, why, target in aside:
        if "no trainer_state" in why:
            continue  # a save cut short by a kill or a full disk: expected, and already said when it happened
        instead = next((p for p in reversed(found) if _step(p) < _step(path)), None)
        notes.append(f"{path.name} is damaged ({why}), so it was renamed {target.name}; training continues "
                     + (f"from {instead.name}." if instead else "from the start, as no earlier checkpoint is complete."))
    return found, notes


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(__doc__)
        return 2
    for path in sorted(Path(argv[0]).glob("*checkpoint-*")):
        print(f"{path.name}: {problem(path) or 'complete'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
