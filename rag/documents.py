"""Documents in, chunks out: reading files and cutting them by tokens at headings and paragraphs.

Reads .txt, .md, .html, .pdf, .docx, and the text columns of .jsonl / .csv files, from
files or folders. A file that cannot be read is named and skipped with a reason; the rest
goes on. A `Chunk` keeps its source, its page (PDF) or heading path, and its character
span in the document text, so an answer can show exactly which passage it came from.
Chunks never cross a heading or a page; paragraphs are joined until the next would pass
`max_tokens`, and a longer paragraph is cut into windows that overlap by `overlap_tokens`.
Tokens are counted by a callable (the embedder's tokenizer in the pipeline).

    python -m rag.documents FILE_OR_FOLDER ...     # prints the chunks
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
import zipfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Callable
from xml.etree import ElementTree

SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx", ".jsonl", ".csv")
TEXT_COLUMNS = ("text", "content", "body", "passage", "document", "answer")


@dataclass
class Document:
    source: str
    text: str
    pages: list[tuple[int, int, int]] = field(default_factory=list)  # (page number, start, end)


@dataclass
class Chunk:
    source: str
    heading: str
    text: str
    start: int
    end: int
    page: int | None = None

    def for_embedding(self) -> str:
        return f"{self.heading}\n{self.text}" if self.heading else self.text

    def location(self) -> str:
        where = f"page {self.page}" if self.page else ""
        if self.heading:
            where = f"{where}, {self.heading}" if where else self.heading
        return where


@dataclass
class Skipped:
    source: str
    reason: str


class _HTMLText(HTMLParser):
    """Visible text of an HTML page; headings become markdown headings, blocks become paragraphs."""

    BLOCKS = {"p", "div", "li", "tr", "br", "section", "article", "table", "ul", "ol", "pre", "blockquote"}

    def __init__(self):
        super().__init__()
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style", "noscript", "head"):
            self.skip += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self.parts.append("\n\n" + "#" * int(tag[1]) + " ")
        elif tag in self.BLOCKS:
            self.parts.append("\n\n")

    def handle_endtag(self, tag):
        if tag in ("script", "style", "noscript", "head"):
            self.skip = max(0, self.skip - 1)
        elif re.fullmatch(r"h[1-6]", tag) or tag in self.BLOCKS:
            self.parts.append("\n\n")

    def handle_data(self, data):
        if not self.skip:
            self.parts.append(re.sub(r"\s+", " ", data))

    def text(self) -> str:
        text = "".join(self.parts)
        text = re.sub(r"[ \t]*\n[ \t]*", "\n", text)
        return re.sub(r"\n{3,}", "\n\n", text).strip()


def _read_pdf(path: Path) -> Document:
    from pypdf import PdfReader

    reader = PdfReader(str(path))
    text, pages = "", []
    for number, page in enumerate(reader.pages, start=1):
        content = (page.extract_text() or "").strip()
        if content:
            start = len(text)
            text += content + "\n\n"
            pages.append((number, start, start + len(content)))
    return Document(path.name, text, pages)


def _read_docx(path: Path) -> str:
    ns = {"w": "http://schemas.openxmlformats.org/wordprocessingml/2006/main"}
    with zipfile.ZipFile(path) as z:
        root = ElementTree.fromstring(z.read("word/document.xml"))
    paragraphs = []
    for p in root.iter(f"{{{ns['w']}}}p"):
        words = "".join(t.text or "" for t in p.iter(f"{{{ns['w']}}}t")).strip()
        if not words:
            continue
        style = p.find("w:pPr/w:pStyle", ns)
        level = re.fullmatch(r"Heading(\d)", style.get(f"{{{ns['w']}}}val", "")) if style is not None else None
        paragraphs.append(("#" * int(level.group(1)) + " " if level else "") + words)
    return "\n\n".join(paragraphs)


def _rows_text(path: Path, text: str, column: str | None) -> str:
    if path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
    else:
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    if not rows:
        return ""
    keys = list(rows[0]) if isinstance(rows[0], dict) else []
    col = column or next((c for c in keys if c.lower() in TEXT_COLUMNS), None)
    if col is None:
        raise ValueError(f"no text column (found {', '.join(keys) or 'none'}); name one of {', '.join(TEXT_COLUMNS)}")
    return "\n\n".join(str(r.get(col, "")).strip() for r in rows if isinstance(r, dict) and r.get(col))


def read_document(path: Path, column: str | None = None) -> Document:
    """One file as a Document; raises ValueError / OSError with a reason when it cannot be read."""
    suffix = path.suffix.lower()
    if suffix == ".pdf":
        return _read_pdf(path)
    if suffix == ".docx":
        return Document(path.name, _read_docx(path))
    raw = path.read_bytes()
    if b"\x00" in raw[:4096]:
        raise ValueError("binary content, not text")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"byte {exc.start} is not UTF-8 text") from None
    if suffix in (".html", ".htm"):
        parser = _HTMLText()
        parser.feed(text)
        text = parser.text()
    elif suffix in (".jsonl", ".csv"):
        text = _rows_text(path, text, column)
    return Document(path.name, text.replace("\r\n", "\n"))


def load_documents(paths, column: str | None = None,
                   progress: Callable[[int, int, str], None] | None = None) -> tuple[list[Document], list[Skipped]]:
    """Read every supported file among `paths` (files or folders); unreadable ones are skipped with a reason."""
    docs, skipped = [], []
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in SUFFIXES)
        else:
            files.append(p)
    for i, f in enumerate(files, start=1):
        if progress:
            progress(i, len(files), f.name)
        if f.suffix.lower() not in SUFFIXES:
            skipped.append(Skipped(f.name, f"{f.suffix or 'no extension'} files are not read; "
                                           f"use {', '.join(SUFFIXES)}"))
            continue
        try:
            doc = read_document(f, column)
        except FileNotFoundError:
            skipped.append(Skipped(f.name, "no such file"))
            continue
        except (ValueError, OSError, KeyError, zipfile.BadZipFile, ElementTree.ParseError) as exc:
            skipped.append(Skipped(f.name, str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
            continue
        except Exception as exc:  # a damaged PDF raises pypdf's own errors: name them and go on
            skipped.append(Skipped(f.name, f"could not be read ({type(exc).__name__}: {str(exc)[:80]})"))
            continue
        if not doc.text.strip():
            skipped.append(Skipped(f.name, "no text found in the file"))
            continue
        docs.append(doc)
    return docs, skipped


_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")


def _sections(doc: Document):
    """Yield (heading path, page, start, end) for each run of text under one heading on one page."""
    path: list[tuple[int, str]] = []
    start, heading, offset = 0, "", 0
    cuts = sorted({s for _, s, _ in doc.pages} | {e for _, _, e in doc.pages})
    for line in doc.text.splitlines(keepends=True):
        m = _HEADING.match(line.strip())
        if m:
            if offset > start:
                yield from _by_page(doc, heading, start, offset, cuts)
            level = len(m.group(1))
            path = [(lvl, t) for lvl, t in path if lvl < level] + [(level, m.group(2).strip())]
            heading = " > ".join(t for _, t in path)
            start = offset + len(line)
        offset += len(line)
    if offset > start:
        yield from _by_page(doc, heading, start, offset, cuts)


def _by_page(doc, heading, start, end, cuts):
    bounds = [start] + [c for c in cuts if start < c < end] + [end]
    for s, e in zip(bounds, bounds[1:]):
        page = next((n for n, ps, pe in doc.pages if ps <= s < pe + 2), None)
        yield heading, page, s, e


def chunk_document(doc: Document, max_tokens: int = 128, overlap_tokens: int = 24,
                   count: Callable[[str], int] | None = None) -> list[Chunk]:
    """Cut a document into chunks of at most `max_tokens` (counted by `count`, words by default)."""
    count = count or (lambda text: len(text.split()))
    chunks: list[Chunk] = []
    for heading, page, s_start, s_end in _sections(doc):
        paragraphs = [(m.start() + s_start, m.end() + s_start)
                      for m in re.finditer(r"\S(?:.*?\S)?(?=\s*\Z|\n\s*\n)", doc.text[s_start:s_end], re.S)]
        cur_start = cur_end = None
        cur_tokens = 0
        for p_start, p_end in paragraphs:
            tokens = count(doc.text[p_start:p_end])
            if cur_start is not None and cur_tokens + tokens > max_tokens:
                chunks.append(Chunk(doc.source, heading, doc.text[cur_start:cur_end], cur_start, cur_end, page))
                cur_start = None
            if tokens > max_tokens:
                chunks += _windows(doc, heading, page, p_start, p_end, max_tokens, overlap_tokens, count)
                continue
            if cur_start is None:
                cur_start, cur_tokens = p_start, 0
            cur_end, cur_tokens = p_end, cur_tokens + tokens
        if cur_start is not None:
            chunks.append(Chunk(doc.source, heading, doc.text[cur_start:cur_end], cur_start, cur_end, page))
    return chunks


def _windows(doc, heading, page, start, end, max_tokens, overlap_tokens, count) -> list[Chunk]:
    """Windows of whole words of at most max_tokens, each starting overlap_tokens before the last ended."""
    spans = [(m.start() + start, m.end() + start) for m in re.finditer(r"\S+", doc.text[start:end])]
    sizes = [count(doc.text[s:e]) for s, e in spans]
    out, i = [], 0
    while i < len(spans):
        j, total = i, 0
        while j < len(spans) and (total + sizes[j] <= max_tokens or j == i):
            total += sizes[j]
            j += 1
        s, e = spans[i][0], spans[j - 1][1]
        out.append(Chunk(doc.source, heading, doc.text[s:e], s, e, page))
        if j >= len(spans):
            break
        back, k = 0, j
        while k > i + 1 and back + sizes[k - 1] <= overlap_tokens:
            k -= 1
            back += sizes[k]
        i = k
    return out


if __name__ == "__main__":
    documents, skipped_files = load_documents(sys.argv[1:])
    for d in documents:
        for c in chunk_document(d):
            print(f"{c.source} [{c.start}:{c.end}] {c.location()}: {c.text[:70]!r}")
    for s in skipped_files:
        print(f"skipped {s.source}: {s.reason}")
