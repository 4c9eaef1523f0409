"""Who owns a thing the studio keeps (a run, a RAG collection, a saved chat example): an owner id in a file
`owner` inside its folder, written when it is made. A folder without one belongs to the local owner, so
everything made before owners existed is the local owner's (the operator can hand it over with
`studio runs give RUN OWNER`).

Owner ids, one per person:
    local            the person on their own machine (no sign-in), and the machine's operator
    user:NAME        an account of `studio --auth` (engine/accounts.py)
    hf:NAME          a Hugging Face sign-in on a Space
    anon:HEX         one browser on a public demo without sign-in (a random key kept in that browser)
Who is asking is worked out by the page (ui/owners.py) from the request, never from a value the page sends.

    from engine.owners import owner_of, claim, owner_of_path
"""

from __future__ import annotations

import re
from pathlib import Path

LOCAL = "local"
_ID = re.compile(r"^(local|(user|hf):[A-Za-z0-9][A-Za-z0-9_.-]{0,63}|anon:[0-9a-f]{16,64})$")
FILE = "owner"


def valid(owner: str) -> bool:
    return bool(_ID.match(owner or ""))


def check(owner: str) -> str:
    if not valid(owner):
        raise ValueError(f"{owner!r} is not an owner id (local, user:NAME, hf:NAME or anon:HEX)")
    return owner


def owner_of(folder: Path) -> str:
    """The owner recorded in `folder` (the local owner when none is)."""
    try:
        text = (Path(folder) / FILE).read_text().strip()
    except OSError:
        return LOCAL
    return text if valid(text) else LOCAL


def claim(folder: Path, owner: str) -> None:
    """Record `owner` as the owner of `folder` (made if missing)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / FILE).write_text(check(owner) + "\n")


def describe(owner: str) -> str:
    """An owner's name as the page shows it to that person: the account or Hugging Face name."""
    kind, _, name = owner.partition(":")
    return {"local": "this machine's owner", "anon": "an anonymous visitor"}.get(kind, name)


def owner_of_path(path: str | Path, roots: list[Path]) -> str | None:
    """Whose is the thing `path` names, when it lies inside one of the studio's own folders `roots` (runs,
    collections, uploads, decisions): the owner recorded by the nearest folder at or above it, up to that root
    (the local owner where none records one); None when it lies in none of them. Links and `..` are followed
    first, so a link in one's own folder to another's run is the other's."""
    real = Path(path).expanduser().resolve()
    for root in roots:
        root = Path(root).expanduser().resolve()
        if not real.is_relative_to(root):
            continue
        for folder in [real, *real.parents]:
            if (folder / FILE).is_file():
                return owner_of(folder)
            if folder == root:
                break
        return LOCAL
    return None
