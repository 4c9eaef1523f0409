"""Files that reach a handler: only the ones this person uploaded (read from their own copy), or the bundled
samples.

Every handler that takes a file calls `accept(files, request)` before reading anything: a client can
name any path on the server in a file field, and Gradio passes it on (see engine/data/uploads.py).
`launch_paths()` gives Gradio's own `allowed_paths` / `blocked_paths` to match.

    Part of the studio page (ui/app.py); no layout here.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import gradio as gr

from engine.capability import cache_path
from engine.train.runs import runs_root
from engine.infer.playground import examples_path
from engine.data.uploads import Uploads, check_origin, check_upload, upload_root
from ui import owners
from rag.pipeline import collections_root

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = [ROOT / "assets" / "sample"]
UPLOADS = Uploads(owners.uploads_home)


def trusted(request: gr.Request | None = None) -> list[Path]:
    """Files the studio itself wrote or ships, readable without an upload: the samples, the chat
    examples this person saved from the Chat tab, the pairs written from their documents, and their own copies of
    what they uploaded."""
    owner = owners.person(request).owner
    return [*SAMPLES, examples_path(owner), generated_folder(request), UPLOADS.folder(owner)]


def generated_folder(request: gr.Request | None = None) -> Path:
    """Where the Data tab writes the question-answer pairs made from this person's documents."""
    owner = owners.person(request).owner
    return runs_root().parent / "generated" / hashlib.sha256(owner.encode()).hexdigest()[:12]


def accept(files, request: gr.Request | None, suffixes: tuple[str, ...]) -> list[str]:
    """The real paths of `files` when each was uploaded by this person (their own copy of it), or is a bundled
    sample, or their saved chat examples, and passes the upload checks; UploadError with one sentence otherwise."""
    out = []
    owner = owners.person(request).owner
    for f in files or []:
        real = check_origin(str(f), [upload_root(), *trusted(request)])
        if not any(real.is_relative_to(s.resolve()) for s in trusted(request)):
            check_upload(real, suffixes)
            real = UPLOADS.take(real, owner)
        out.append(str(real))
    return out


def launch_paths() -> dict:
    """Gradio's own file rules: the runs, the collections, the measured-capability cache and the checkout
    are never served or taken as file inputs (downloads are copied out first, see `servable`)."""
    return {"blocked_paths": [str(runs_root()), str(collections_root()), str(owners.uploads_home()),
                              str(cache_path().parent), str(ROOT)]}


def servable(path: str | Path) -> str:
    """A copy (a hard link where it can be) of an output under the runs, in a fresh temporary folder that
    Gradio may serve: the runs folder itself is blocked."""
    import shutil

    path = Path(path)
    target = Path(tempfile.mkdtemp(prefix="studio-download-")) / path.name
    try:
        os.link(path, target)
    except OSError:
        shutil.copy2(path, target)
    return str(target)
