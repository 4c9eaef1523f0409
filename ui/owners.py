"""Who is asking, for every handler of the page, and what of the studio's work they may see and touch.

One code path for three ways of running:
- a Space with Hugging Face sign-in (`hf_oauth: true`): the signed-in user, `hf:NAME`; the Space's owner
  (SPACE_AUTHOR_NAME) is an admin;
- `studio --auth`: the account Gradio's sign-in checked (engine/accounts.py), `user:NAME`; admins are the
  accounts made with `--admin` and the names given to `studio --auth --admin NAME`;
- neither: one local owner, everything as on a person's own machine.
Where visitors share a page without an account (a public demo, `STUDIO_DEMO=1`, or a signed-in Space's visitor
who has not signed in), each browser is its own anonymous owner: a random key kept in that browser's storage
(`gr.BrowserState`, encrypted with a secret kept beside the runs), so a reload keeps it.

The identity comes from the request (Gradio's sign-in cookie, the OAuth session, the session the page opened
with), never from a value the page sends with an event: a run id or collection name a client sends is checked
against it (`run_of`, `collection_of`), and another owner's is refused with one sentence that does not even
say whether it exists. An admin sees and may stop every run.

Every model a person names (the Model field of every tab, a start-from run) goes through `model_of`: the
embedded default or a Hugging Face Hub id, one of the person's own runs by its id, or, where people share the
page, the model the operator started it with (STUDIO_MODEL) or a folder the operator allowed (`studio --models-dir
DIR`, STUDIO_MODELS_DIRS); any path that resolves
(links and `..` followed) into the studio's runs, collections, uploads or decisions must be the person's own.

    Part of the studio page (ui/app.py); no layout here.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import threading
from dataclasses import dataclass

import gradio as gr

from pathlib import Path

from engine import accounts, demo, owners
from engine.data.uploads import upload_root
from engine.errors import StudioError
from engine.models import DEFAULT_MODEL, hub_reachable
from engine.train.runs import Run, list_runs, runs_in_flight, runs_root
from rag.pipeline import collections_root

SETTINGS = {"auth": False, "admins": set(), "models_dirs": []}  # set by ui/app.py's main from `studio --auth [--admin NAME] ...`
_SESSIONS: dict[str, str] = {}  # session hash -> anonymous owner, from the key the page opened with
_LOCK = threading.Lock()
KEY_STORAGE = "studio-visitor"
MAX_SESSIONS = 100_000  # page loads remembered (about 10 MB); an older session is a stranger until it reloads
SAMPLE_COLLECTION = "zorvane-sample"  # the bundled documents, everyone's
WAIT_CAP = 5  # in "wait" mode, a person's runs queued or training at most: a queue is not a store


@dataclass(frozen=True)
class Person:
    owner: str
    admin: bool = False

    @property
    def name(self) -> str:
        return owners.describe(self.owner)


def oauth_on() -> bool:
    """Hugging Face sign-in: on a Space with `hf_oauth: true` (it sets OAUTH_CLIENT_ID), or asked for."""
    return bool(os.environ.get("OAUTH_CLIENT_ID")) or os.environ.get("STUDIO_OAUTH", "") == "1"


def shared() -> bool:
    """Whether people without an account share this page, so each browser needs an owner of its own."""
    return demo.on() or oauth_on() or SETTINGS["auth"]


def _field(obj, name: str):
    """`obj[name]` of a mapping, or `obj.name` of the object Gradio rebuilds a queued request's dicts into."""
    if obj is None:
        return None
    return obj.get(name) if hasattr(obj, "get") else getattr(obj, name, None)


def _oauth_name(request) -> str | None:
    """The Hugging Face user name in the request's session, where Gradio's OAuth put it (after the sign-in on
    a Space, or its mocked sign-in elsewhere). The session lives in the HTTP request's scope; a queued request
    Gradio rebuilt carries it as a plain attribute."""
    underlying = getattr(request, "request", None) or request
    scope = getattr(underlying, "scope", None)
    if isinstance(scope, dict):
        session = scope.get("session")  # never `.session`: Starlette asserts where no OAuth session is installed
    else:
        try:
            session = getattr(underlying, "session", None)
        except (AttributeError, AssertionError):
            session = None
    return _field(_field(_field(session, "oauth_info"), "userinfo"), "preferred_username")


def person(request: gr.Request | None) -> Person:
    """Who sent `request`."""
    if request is None:  # called from Python, not from the page: the operator, where nobody else shares it
        if shared():
            raise RuntimeError("Bug: a handler of a shared page asked who is asking without its request.")
        return Person(owners.LOCAL, admin=True)
    username = getattr(request, "username", None)
    if SETTINGS["auth"] and username:
        return Person(f"user:{username}", admin=username in SETTINGS["admins"] or accounts.is_admin(username))
    name = _oauth_name(request) if oauth_on() else None
    if name:
        space_owner = os.environ.get("SPACE_AUTHOR_NAME")
        return Person(f"hf:{name}", admin=name == space_owner or name in SETTINGS["admins"])
    if not shared():
        return Person(owners.LOCAL, admin=True)
    session = getattr(request, "session_hash", None) or "no-session"
    with _LOCK:
        known = _SESSIONS.get(session)
    # a session that never opened the page (a raw client) is an owner of its own, with nothing
    return Person(known or "anon:" + hashlib.sha256(f"session:{session}".encode()).hexdigest()[:32])


def _who(asker) -> Person:
    """The person of a request, or the person itself when a handler already worked it out (one `person` per
    request: in `--auth` mode it reads the accounts file)."""
    return asker if isinstance(asker, Person) else person(asker)


def browser_secret() -> str:
    """The secret the browser-kept visitor keys are encrypted with, kept beside the runs so a restarted app
    still reads them."""
    path = runs_root() / ".browser-secret"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        path.write_text(secrets.token_hex(16))
        os.chmod(path, 0o600)
        return path.read_text().strip()


def visitor_key() -> gr.BrowserState:
    return gr.BrowserState("", storage_key=KEY_STORAGE, secret=browser_secret())


def open_page(key: str, request: gr.Request):
    """On page load: the browser's visitor key (a new one when it has none) names this session's anonymous
    owner; returned to be kept in the browser."""
    if not re.fullmatch(r"[0-9a-f]{32}", key or ""):
        key = secrets.token_hex(16)
    session = getattr(request, "session_hash", None)
    if session and shared():
        with _LOCK:
            _SESSIONS[session] = "anon:" + hashlib.sha256(f"visitor:{key}".encode()).hexdigest()[:32]
            while len(_SESSIONS) > MAX_SESSIONS:  # the oldest page loads first; a reload registers again
                _SESSIONS.pop(next(iter(_SESSIONS)))
    return key


def runs(request, finished: bool = False) -> list[Run]:
    """The runs this person sees: their own (an admin: every run), newest first."""
    who = _who(request)
    found = list_runs(owner=None if who.admin else who.owner)
    return [r for r in found if r.weights] if finished else found


def run_ids(request, finished: bool = False) -> list[str]:
    return [r.id for r in runs(request, finished)]


def run_of(request, run_id: str | None) -> Run | None:
    """The run `run_id` when this person may use it (None for no id); a gr.Error with one sentence otherwise
    (the same for a run of someone else and one that does not exist)."""
    if not run_id:
        return None
    who = _who(request)
    if not isinstance(run_id, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,200}", run_id) or run_id.startswith("."):
        raise gr.Error(f"There is no run {re.sub(r'[^ -~]', '?', str(run_id))[:80]} of yours.")
    run = Run(runs_root() / run_id)
    if not (run.dir / "config.yaml").exists() or not (who.admin or run.owner == who.owner):
        raise gr.Error(f"There is no run {run_id[:80]} of yours.")
    return run


# ---- models ----------------------------------------------------------------------------------------------

HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}(/[A-Za-z0-9][A-Za-z0-9_.-]{0,95})?")
RUN_ID = re.compile(r"[0-9]{8}-[0-9]{6}-[A-Za-z0-9_.-]{1,120}")


NO_MODEL = ("There is no such model of yours here: name a model on the Hugging Face Hub, the id of one of your "
            "runs, or a folder this studio's operator allowed.")


def no_model() -> gr.Error:
    """The one sentence for a model a person may not use, whether it is missing, another person's or a server
    folder nobody allowed: the same words for all, naming nothing of the server's."""
    return gr.Error(NO_MODEL)


def models_dirs() -> list[Path]:
    """The folders of models the operator lets everyone load: `studio --models-dir DIR` (repeatable), else
    STUDIO_MODELS_DIRS (folders separated by the path separator, as in PATH)."""
    named = SETTINGS.get("models_dirs") or os.environ.get("STUDIO_MODELS_DIRS", "").split(os.pathsep)
    return [Path(d).expanduser().resolve() for d in named if str(d).strip()]


def uploads_home() -> Path:
    """Where each person's own copies of their uploads are kept (engine/data/uploads.py `Uploads`)."""
    return runs_root().parent / "uploads"


def private_roots() -> list[Path]:
    """The studio's own folders, where everything belongs to someone: runs (and the decisions inside), RAG
    collections, uploads (Gradio's and each person's copies) and the pairs written from documents."""
    runs = runs_root()
    return [runs, collections_root(), upload_root(), uploads_home(), runs.parent / "generated"]


def model_of(request, name) -> str:
    """What to load for the model `name` a person typed, checked against who is asking: the default or a hub id
    as it is, a run of theirs (by id) as the folder of its whole model, and a local folder where nobody else
    shares the page, or where it is the asker's own or in a folder the operator allowed. Anything else is
    `no_model`'s one sentence, whether it exists or not."""
    name = str(name or "").strip() or DEFAULT_MODEL
    if name in (DEFAULT_MODEL, os.environ.get("STUDIO_MODEL")):  # the default, or the one the operator set
        return name
    who = _who(request)
    if len(name) > 1000 or any(ord(c) < 32 for c in name):
        raise no_model()
    if RUN_ID.fullmatch(name) and (runs_root() / name / "config.yaml").is_file():
        run = Run(runs_root() / name)
        if not (who.admin or run.owner == who.owner):
            raise no_model()
        whole = run.model_dir or (run.dir / "merged" if (run.dir / "merged" / "config.json").is_file() else None)
        if whole is None:
            raise gr.Error(f"Run {name} has only an adapter, no whole model to load: pick it as the run to chat "
                           "with or compare, start from it with Start from run (init_from), or merge it on the "
                           "Runs tab first.")
        return str(whole)
    path = Path(name).expanduser()
    if name.startswith(("/", ".", "~")) or path.exists():  # a folder on this machine
        if not shared():
            return name  # a person's own machine: any folder of theirs
        owner = owners.owner_of_path(path, private_roots())
        if owner is not None:
            if who.admin or owner == who.owner:
                return str(path.resolve())
            raise no_model()
        if any(path.resolve().is_relative_to(d) for d in models_dirs()):
            return str(path.resolve())
        raise no_model()
    if not HUB_ID.fullmatch(name) or ".." in name:
        raise no_model()
    if shared() and not hub_reachable():  # offline a hub id cannot load: say it as for anything else
        raise no_model()
    return name


def fair_use() -> tuple[int, str]:
    """(runs a person may hold queued or training at once, what happens to one more: "refuse" or "wait"),
    from `studio --runs-per-person N --over-limit refuse|wait`, else STUDIO_RUNS_PER_PERSON (default 1;
    0: no limit) and STUDIO_OVER_LIMIT (default refuse)."""
    limit = SETTINGS.get("runs_per_person")
    if limit is None:
        limit = os.environ.get("STUDIO_RUNS_PER_PERSON", "1")
        if not limit.strip().isdigit():
            raise StudioError(f"STUDIO_RUNS_PER_PERSON is {limit!r}: it takes 0 (no limit) or a number of runs.")
    mode = SETTINGS.get("over_limit") or os.environ.get("STUDIO_OVER_LIMIT", "refuse")
    if mode not in ("refuse", "wait"):
        raise StudioError(f"STUDIO_OVER_LIMIT is {mode!r}: it takes refuse or wait.")
    return int(limit), mode


def may_start(asker) -> str | None:
    """Why this person may not start another run now (None when they may): past the per-person limit a run
    is refused, or in "wait" mode taken to wait behind every other person's (engine/train/runs.py's
    `queue_order`), up to WAIT_CAP runs of theirs in flight. The local owner of a machine nobody shares is
    not limited."""
    who = _who(asker)
    limit, mode = fair_use()
    if limit <= 0 or not shared():
        return None
    mine = runs_in_flight(who.owner)
    cap = max(limit, WAIT_CAP) if mode == "wait" else limit
    if len(mine) >= cap:
        return (f"You already have {len(mine)} run{'s' if len(mine) > 1 else ''} queued or training "
                f"({', '.join(r.id for r in mine)}); "
                + ("stop it or wait until it ends" if len(mine) == 1 else "stop one or wait until one ends")
                + ", then start the next.")
    return None


def waits_note(asker) -> str | None:
    """Said when a run is taken past the person's limit in "wait" mode: it waits behind others' runs."""
    who = _who(asker)
    limit, mode = fair_use()
    mine = runs_in_flight(who.owner) if shared() and limit > 0 and mode == "wait" else []
    if len(mine) > limit:
        return (f"You have {len(mine)} runs queued or training; this one waits until your earlier "
                f"{'run ends' if len(mine) == 2 else 'runs end'}, and other people's runs go first.")
    return None


# ---- collections ---------------------------------------------------------------------------------------

def _prefix(who: Person) -> str:
    """The collection folder prefix of a person: none for the local owner (the names people already have),
    a short hash of the owner for everyone else, so two people may each have a "my-documents"."""
    if who.owner == owners.LOCAL:
        return ""
    return "o" + hashlib.sha256(who.owner.encode()).hexdigest()[:12] + "--"


def collections(request) -> list[str]:
    """The names of this person's saved collections, and the sample."""
    who = _who(request)
    root = collections_root()
    names = []
    for p in sorted(root.iterdir()):
        if not (p / "meta.json").exists():
            continue
        if owners.owner_of(p) == who.owner:
            names.append(p.name[len(_prefix(who)):] if p.name.startswith(_prefix(who)) else p.name)
    return [SAMPLE_COLLECTION] + [n for n in names if n != SAMPLE_COLLECTION]


def collection_of(request, name: str | None, create: bool = False) -> str | None:
    """The folder name of this person's collection `name` (None for the bundled sample); a gr.Error with one
    sentence for a collection that is not theirs. `create`: a new one is theirs, recorded as theirs."""
    if name in (None, ""):
        return None
    name = str(name)
    if name == SAMPLE_COLLECTION:
        if create:
            raise gr.Error(f"{SAMPLE_COLLECTION} is the bundled sample's collection, which nobody adds to; give "
                           "your collection another name.")
        return None
    who = _who(request)
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,100}", name) or name.startswith("."):
        if create:
            raise gr.Error(f"{name[:80]!r} cannot name a collection: use up to 100 letters, digits, '-', '_' or "
                           "'.', not starting with '.'.")
        raise gr.Error(f"There is no collection {name[:80]} of yours.")
    folder = collections_root() / (_prefix(who) + name)
    if (folder / "meta.json").exists() or (folder / "owner").exists():
        if owners.owner_of(folder) != who.owner:
            raise gr.Error(f"There is no collection {name} of yours.")
    elif create:
        owners.claim(folder, who.owner)
    else:
        raise gr.Error(f"There is no collection {name} of yours.")
    return folder.name



def banner(request) -> str:
    """The line that says whose work the page shows."""
    who = _who(request)
    if who.owner == owners.LOCAL:
        return ""
    if who.owner.startswith("anon:"):
        sign = " Sign in with Hugging Face to keep it under your name." if oauth_on() else ""
        return (f"Your runs, collections and uploads here are private to this browser (kept across reloads).{sign}")
    role = " (admin: you see every run and may stop any)" if who.admin else ""
    return f"Signed in as **{who.name}**{role}. You see only your own runs, collections and uploads."
