"""Checks on a file a person uploads, before anything reads it.

    check_upload(path, allowed_suffixes)   -> the path, or UploadError with one sentence

Refused: a name that is not a plain file name (path separators, "..", control characters),
a type outside the allow-list, a file over the size limit (`STUDIO_MAX_UPLOAD_MB`, default
200; a public demo sets less), a binary file posing as text (NUL bytes where text should
be), a file whose content does not match its type (Parquet without its magic, PDF without
%PDF, DOCX that is not a zip), and an archive whose contents expand far beyond its size
(a "zip bomb" posing as .docx). Nothing is unpacked or parsed here.

    check_origin(path, roots)              -> the real path, when it lies in one of `roots`
    Uploads(home).take(path, owner)        -> the person's own copy of a file they uploaded

An app hands its handlers paths that a client names, and a client can name any file on the server;
so a handler reads only files under the upload folder or the app's own sample folders
(`check_origin`), and an uploaded file only for the person who uploaded it, from a copy of their own (`Uploads`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import zipfile
from pathlib import Path

from engine import demo
from engine.errors import StudioError

TEXT_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".txt", ".md", ".markdown", ".html", ".htm")
MAX_EXPANSION = 100  # a .docx expands about 3-10x; 100x is an attack
HEAD_BYTES = 64 * 1024


class UploadError(StudioError, ValueError):
    """An upload refused, said in one sentence naming the file."""


def upload_root() -> Path:
    """Where Gradio keeps uploaded files (GRADIO_TEMP_DIR, else the system's temporary folder's gradio/)."""
    import tempfile

    return Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio")


def max_upload_mb() -> float:
    """STUDIO_MAX_UPLOAD_MB (default 200), and at most the public demo's limit when STUDIO_DEMO is on."""
    try:
        limit = float(os.environ.get("STUDIO_MAX_UPLOAD_MB", "200"))
    except ValueError:
        limit = 200.0
    return min(limit, demo.MAX_UPLOAD_MB) if demo.on() else limit


def safe_name(name: str) -> bool:
    return (bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name
            and not any(ord(c) < 32 for c in name))


def check_upload(path: str | Path, allowed: tuple[str, ...], max_mb: float | None = None) -> Path:
    path = Path(path)
    name = path.name
    if not safe_name(name):
        raise UploadError(f"{name!r}: not a plain file name; rename the file and upload it again.")
    suffix = path.suffix.lower()
    if suffix not in allowed:
        raise UploadError(f"{name}: {suffix or 'a file without an extension'} is not accepted here; "
                          f"use {', '.join(allowed)}.")
    limit = max_upload_mb() if max_mb is None else max_mb
    size = path.stat().st_size
    if size > limit * 1024 * 1024:
        raise UploadError(f"{name}: {size / 2**20:.1f} MB is over the {limit:g} MB upload limit.")
    with open(path, "rb") as fh:
        head = fh.read(HEAD_BYTES)
    if suffix in TEXT_SUFFIXES and b"\x00" in head:
        raise UploadError(f"{name}: holds binary data (NUL bytes), not {suffix} text; "
                          "save it as UTF-8 text and upload it again.")
    if suffix == ".parquet" and not head.startswith(b"PAR1"):
        raise UploadError(f"{name}: is not a Parquet file (it lacks the PAR1 signature).")
    if suffix == ".pdf" and not head.lstrip().startswith(b"%PDF"):
        raise UploadError(f"{name}: is not a PDF (it does not start with %PDF).")
    if suffix == ".docx":
        if not zipfile.is_zipfile(path):
            raise UploadError(f"{name}: is not a Word document (a .docx is a zip archive).")
        with zipfile.ZipFile(path) as zf:
            expanded = sum(info.file_size for info in zf.infolist())
        if expanded > max(size, 1) * MAX_EXPANSION or expanded > limit * 1024 * 1024 * 10:
            raise UploadError(f"{name}: would expand to {expanded / 2**20:.0f} MB from {size / 2**20:.1f} MB; "
                              "refused as a possible zip bomb.")
    return path


def check_origin(path: str | Path, roots: list[Path]) -> Path:
    """The file's real path when it lies inside one of `roots` (links resolved); else UploadError.

    Checked before the file is opened, so a server file that was never uploaded is not read at all.
    """
    real = Path(path).resolve()
    if any(real.is_relative_to(Path(r).resolve()) for r in roots) and real.is_file():
        return real
    raise UploadError(f"{Path(path).name}: was not uploaded in this session, so it is not read; upload the file "
                      "from your computer.")


class Uploads:
    """Each person's uploads, apart from everyone else's, though Gradio keeps them all in one folder.

    Gradio stores an upload at `<upload folder>/<hash of its bytes>/<name>`, so two people who upload the same
    bytes under the same name get the same path, and anyone who learns that path can name it. Here the first
    handler to take a freshly uploaded file records it as taken by that person (with the file's inode and write
    time, which every new upload of it changes) and copies it into the person's own folder under `home`; the
    handlers read that copy. Taken again by the same person (a page reload, a re-upload), it is their copy; by
    someone else, it is refused unless they uploaded it themselves (a new upload rewrote it since), in which case
    it is theirs too: the same bytes from two people are two uploads. The records live in files under `home`,
    so a restart keeps them.
    """
    def __init__(self, home) -> None:
        self._home = home  # a callable: the folder is read when used, so a test or a restart may move it
        self._lock = threading.Lock()

    def folder(self, owner: str) -> Path:
        return Path(self._home()) / hashlib.sha256(owner.encode()).hexdigest()[:16]

    def _record(self, real: Path) -> Path:
        return Path(self._home()) / ".taken" / hashlib.sha256(str(real).encode()).hexdigest()

    def take(self, path: str | Path, owner: str) -> Path:
        """This person's own copy of the uploaded file `path`; UploadError when it is someone else's upload."""
        real = Path(path).resolve()
        stat = real.stat()
        stamp = f"{stat.st_ino} {stat.st_mtime_ns}"
        mine = self.folder(owner) / real.parent.name / real.name
        record = self._record(real)
        with self._lock:
            try:
                taken_stamp, taken_by = record.read_text().split("\n")[:2]
            except (OSError, ValueError):
                taken_stamp, taken_by = None, None
            if taken_stamp == stamp and taken_by != owner:  # not uploaded again since another person took it
                if mine.is_file():
                    return mine  # they uploaded the same bytes earlier themselves
                raise UploadError(f"{real.name}: was not uploaded by you, so it is not read; upload the file "
                                  "from your computer.")
            if taken_stamp != stamp or not mine.is_file():
                mine.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(real, mine)
            record.parent.mkdir(parents=True, exist_ok=True)
            record.write_text(f"{stamp}\n{owner}\n")
        return mine
