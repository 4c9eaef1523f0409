"""The accounts of a self-hosted studio started with `studio --auth`: names with salted password hashes
(argon2id, by argon2-cffi) in one JSON file, and which of them are admins.

The file is `$STUDIO_ACCOUNTS`, else `/data/accounts.json` when `/data` is writable (a Space's persistent
storage), else `./accounts.json`. It is written whole to a temporary file and renamed, under a file lock,
so two `studio users add` at once lose nothing. Passwords are never stored or shown.

    studio users add NAME [--admin]      # the password from a prompt, or from standard input
    studio users list
    studio users remove NAME
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from filelock import FileLock

from engine.errors import StudioError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MIN_PASSWORD = 8


class AccountError(StudioError):
    """A bad account name or password, or an account that is not there: one sentence."""


def accounts_file() -> Path:
    if os.environ.get("STUDIO_ACCOUNTS"):
        return Path(os.environ["STUDIO_ACCOUNTS"])
    if os.path.isdir("/data") and os.access("/data", os.W_OK):
        return Path("/data/accounts.json")
    return Path("accounts.json")


def _hasher():
    from argon2 import PasswordHasher  # deferred: only sign-in needs it

    return PasswordHasher()


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        raise AccountError(f"{path} cannot be read as the accounts file: {err}.") from None
    return data.get("users", {}) if isinstance(data, dict) else {}


def _write(path: Path, users: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"users": users}, indent=1, sort_keys=True))
    os.chmod(tmp, 0o600)  # hashes only, yet nobody else's business
    tmp.replace(path)


def _lock(path: Path) -> FileLock:
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path) + ".lock")


def users(path: Path | None = None) -> dict[str, dict]:
    """{name: {"admin": bool}} of every account (no hashes)."""
    return {name: {"admin": bool(u.get("admin"))} for name, u in _read(path or accounts_file()).items()}


def add(name: str, password: str, admin: bool = False, path: Path | None = None) -> bool:
    """Create the account `name`, or set its password (and admin flag) if it exists; True when it is new."""
    if not NAME.match(name or ""):
        raise AccountError(f"{name!r} is not an account name: letters, digits, '.', '_' and '-', at most 64, "
                           "starting with a letter or digit.")
    if len(password or "") < MIN_PASSWORD:
        raise AccountError(f"The password of {name} is shorter than {MIN_PASSWORD} characters.")
    path = path or accounts_file()
    with _lock(path):
        found = _read(path)
        new = name not in found
        found[name] = {"hash": _hasher().hash(password), "admin": bool(admin)}
        _write(path, found)
    return new


def remove(name: str, path: Path | None = None) -> None:
    path = path or accounts_file()
    with _lock(path):
        found = _read(path)
        if name not in found:
            raise AccountError(f"There is no account {name!r}.")
        del found[name]
        _write(path, found)


def check(name: str, password: str, path: Path | None = None) -> bool:
    """Whether `password` is the password of `name` (False for an unknown name, at the same cost)."""
    from argon2.exceptions import InvalidHashError, VerificationError  # deferred: only sign-in needs it

    found = _read(path or accounts_file()).get(name or "")
    hasher = _hasher()
    try:
        if found is None:
            hasher.verify(_DUMMY.get("hash") or _dummy(hasher), password or "")  # an unknown name costs the same
            return False
        return hasher.verify(found["hash"], password or "")
    except (VerificationError, InvalidHashError):
        return False


_DUMMY: dict = {}


def _dummy(hasher) -> str:
    _DUMMY["hash"] = hasher.hash("not a password of anyone")
    return _DUMMY["hash"]


def is_admin(name: str, path: Path | None = None) -> bool:
    return bool(_read(path or accounts_file()).get(name or "", {}).get("admin"))
