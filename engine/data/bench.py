"""How fast the validator reads: rows per second on a generated JSONL file.

    studio data bench [--rows 100000]      (or: python -m engine.data.bench 100000)

Writes a chat JSONL file of N rows (a few with problems, so the error path is exercised),
then times `check_files` on it, the same call the Data tab and `studio data check` make.
Nothing else should be running while it measures.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from engine.data.dataset import check_files


def write_rows(path: Path, rows: int) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(rows):
            if i % 10_000 == 9_999:
                fh.write('{"messages": [\n')  # a broken line now and then
                continue
            fh.write(json.dumps({"messages": [
                {"role": "system", "content": "You answer questions about garden robots."},
                {"role": "user", "content": f"Question number {i}: how long does charging take?"},
                {"role": "assistant", "content": f"Answer {i}: charging from empty to full takes 90 minutes."},
            ]}) + "\n")


def main(rows: int = 100_000) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.jsonl"
        write_rows(path, rows)
        size = path.stat().st_size
        start = time.perf_counter()
        report = check_files([path])
        seconds = time.perf_counter() - start
    print(f"validator: {rows} rows ({size / 1e6:.1f} MB) in {seconds:.2f} s = {rows / seconds:,.0f} rows/s; "
          f"{len(report.examples)} examples, {len(report.errors)} errors found")
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000))
