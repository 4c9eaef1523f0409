"""Documents in, chunks out: reading .txt / .md files and cutting them at headings and paragraphs.

A `Chunk` keeps its source file, the heading it sits under, and its character span in
the source text, so an answer can show exactly which passage it came from. Chunks never
cross a heading; paragraphs are joined until a chunk would pass `max_words`, and a
paragraph longer than that is cut into overlapping windows of words.

    python -m rag.documents FILE_OR_FOLDER ...     # prints the chunks
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

TEXT_SUFFIXES = (".txt", ".md", ".markdown")


@dataclass
class Document:
    source: str
    text: str


@dataclass
class Chunk:
    source: str
    heading: str
    text: str
    start: int
    end: int

    def for_embedding(self) -> str:
        return f"{self.heading}\n{self.text}" if self.heading else self.text


@dataclass
class Skipped:
    source: str
    reason: str


def load_documents(paths) -> tuple[list[Document], list[Skipped]]:
    """Read every text file among `paths` (files or folders); unreadable ones are skipped with a reason."""
    docs, skipped = [], []
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in TEXT_SUFFIXES)
        else:
            files.append(p)
    for f in files:
        if f.suffix.lower() not in TEXT_SUFFIXES:
            skipped.append(Skipped(f.name, f"{f.suffix or 'no extension'} files are not read; use .txt or .md"))
            continue
        try:
            text = f.read_text(encoding="utf-8-sig")
        except FileNotFoundError:
            skipped.append(Skipped(f.name, "no such file"))
            continue
        except UnicodeDecodeError as exc:
            skipped.append(Skipped(f.name, f"byte {exc.start} is not UTF-8 text"))
            continue
        if not text.strip():
            skipped.append(Skipped(f.name, "the file is empty"))
            continue
        docs.append(Document(f.name, text))
    return docs, skipped


_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")


def _sections(text: str):
    """Yield (heading path, start, end) for the text under each markdown heading."""
    path: list[tuple[int, str]] = []
    start, heading = 0, ""
    offset = 0
    for line in text.splitlines(keepends=True):
        m = _HEADING.match(line.strip())
        if m:
            if offset > start:
                yield heading, start, offset
            level = len(m.group(1))
            path = [(lvl, t) for lvl, t in path if lvl < level] + [(level, m.group(2).strip())]
            heading = " > ".join(t for _, t in path)
            start = offset + len(line)
        offset += len(line)
    if offset > start:
        yield heading, start, offset


def chunk_document(doc: Document, max_words: int = 120, overlap_words: int = 20) -> list[Chunk]:
    chunks: list[Chunk] = []
    for heading, s_start, s_end in _sections(doc.text):
        paragraphs = [(m.start() + s_start, m.end() + s_start)
                      for m in re.finditer(r"\S(?:.*?\S)?(?=\s*\Z|\n\s*\n)", doc.text[s_start:s_end], re.S)]
        cur_start = cur_end = None
        cur_words = 0
        for p_start, p_end in paragraphs:
            words = len(doc.text[p_start:p_end].split())
            if cur_start is not None and cur_words + words > max_words:
                chunks.append(Chunk(doc.source, heading, doc.text[cur_start:cur_end], cur_start, cur_end))
                cur_start = None
            if words > max_words:
                chunks += _windows(doc, heading, p_start, p_end, max_words, overlap_words)
                continue
            if cur_start is None:
                cur_start, cur_words = p_start, 0
            cur_end, cur_words = p_end, cur_words + words
        if cur_start is not None:
            chunks.append(Chunk(doc.source, heading, doc.text[cur_start:cur_end], cur_start, cur_end))
    return chunks


def _windows(doc, heading, start, end, max_words, overlap_words) -> list[Chunk]:
    spans = [(m.start() + start, m.end() + start) for m in re.finditer(r"\S+", doc.text[start:end])]
    step = max(1, max_words - overlap_words)
    out = []
    for i in range(0, len(spans), step):
        window = spans[i:i + max_words]
        out.append(Chunk(doc.source, heading, doc.text[window[0][0]:window[-1][1]], window[0][0], window[-1][1]))
        if i + max_words >= len(spans):
            break
    return out


if __name__ == "__main__":
    documents, skipped_files = load_documents(sys.argv[1:])
    for d in documents:
        for c in chunk_document(d):
            print(f"{c.source} [{c.start}:{c.end}] {c.heading}: {c.text[:70]!r}")
    for s in skipped_files:
        print(f"skipped {s.source}: {s.reason}")
