"""Several people on one studio (issue 30): accounts with salted hashes, owners recorded with each run and
collection, who is asking worked out from the request in each of the three modes (sign-in accounts, a
Hugging Face sign-in on a Space, anonymous browsers on a public page, one local owner), the per-person run
limit, and the CLI (`studio users`, `studio runs give`). The same over HTTP and in a browser, against a
running app with two accounts and with two anonymous visitors: tests/test_shared_app.py."""

from __future__ import annotations

import json
import subprocess
from types import SimpleNamespace

import pytest

from conftest import ROOT, SAMPLE
from engine import accounts, owners
from engine.train.config import RunConfig
from engine.train.preflight import create_run
from engine.train.runs import list_runs

STUDIO = str(ROOT / ".venv" / "bin" / "studio")


def test_accounts_keep_salted_hashes_and_check_passwords(tmp_path):
    path = tmp_path / "accounts.json"
    assert accounts.add("alice", "correct horse", path=path) is True
    assert accounts.add("bob", "battery staple", admin=True, path=path) is True
    text = path.read_text()
    assert "correct horse" not in text and "$argon2id$" in text
    assert accounts.check("alice", "correct horse", path=path)
    assert not accounts.check("alice", "battery staple", path=path)
    assert not accounts.check("nobody", "correct horse", path=path)
    assert accounts.users(path) == {"alice": {"admin": False}, "bob": {"admin": True}}
    assert accounts.add("alice", "a new password", path=path) is False  # a new password, the same account
    assert accounts.check("alice", "a new password", path=path) and not accounts.check("alice", "correct horse",
                                                                                       path=path)
    with pytest.raises(accounts.AccountError, match="shorter than 8"):
        accounts.add("carol", "short", path=path)
    with pytest.raises(accounts.AccountError, match="is not an account name"):
        accounts.add("../carol", "long enough", path=path)
    accounts.remove("bob", path=path)
    assert set(accounts.users(path)) == {"alice"}


def test_studio_users_reads_the_password_from_standard_input(tmp_path):
    env = {"STUDIO_ACCOUNTS": str(tmp_path / "accounts.json"), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    made = subprocess.run([STUDIO, "users", "add", "alice", "--admin"], input="s3cret-password\n", env=env,
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0 and "account alice made (admin)" in made.stdout, made.stderr
    assert accounts.check("alice", "s3cret-password", path=tmp_path / "accounts.json")
    short = subprocess.run([STUDIO, "users", "add", "bob"], input="short\n", env=env, capture_output=True, text=True,
                           timeout=120)
    assert short.returncode == 2 and short.stderr.strip() == "error: The password of bob is shorter than 8 characters."
    listed = subprocess.run([STUDIO, "users", "list"], env=env, capture_output=True, text=True, timeout=120)
    assert listed.stdout.split("\n")[0] == "alice  (admin)"
    no_accounts = subprocess.run([STUDIO, "--auth"], env={**env, "STUDIO_ACCOUNTS": str(tmp_path / "none.json")},
                                 capture_output=True, text=True, timeout=120)
    assert no_accounts.returncode == 2 and "studio users add NAME" in no_accounts.stderr


def _config(tiny_model):
    return RunConfig(model=tiny_model, data=str(SAMPLE / "train.jsonl"), max_steps=1, batch_size=8, max_length=64,
                     report_to=[])


def test_runs_record_their_owner_and_list_by_owner(tiny_model, runs_dir):
    mine = create_run(_config(tiny_model), owner="user:alice")
    theirs = create_run(_config(tiny_model), owner="hf:bob")
    operator = create_run(_config(tiny_model))
    legacy = create_run(_config(tiny_model))
    (legacy.dir / "owner").unlink()  # a run made before owners existed
    assert (mine.owner, theirs.owner, operator.owner, legacy.owner) == ("user:alice", "hf:bob", "local", "local")
    assert [r.id for r in list_runs(owner="user:alice")] == [mine.id]
    assert {r.id for r in list_runs(owner="local")} == {operator.id, legacy.id}
    assert len(list_runs()) == 4
    with pytest.raises(ValueError, match="is not an owner id"):
        owners.claim(mine.dir, "user:../x")
    given = subprocess.run([STUDIO, "runs", "give", legacy.id, "user:alice"], capture_output=True, text=True,
                           timeout=120, env={"STUDIO_RUNS": str(runs_dir), "PATH": "/usr/bin:/bin",
                                             "HF_HUB_OFFLINE": "1"})
    assert given.returncode == 0, given.stderr
    assert legacy.owner == "user:alice"
    listed = subprocess.run([STUDIO, "runs"], capture_output=True, text=True, timeout=120,
                            env={"STUDIO_RUNS": str(runs_dir), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"})
    assert any(line.startswith(theirs.id) and line.endswith("hf:bob") for line in listed.stdout.splitlines())


def _request(session="s1", username=None, oauth=None):
    """What Gradio hands a handler: the sign-in's user name, the session, the HTTP request with its session."""
    http = SimpleNamespace(session={"oauth_info": {"userinfo": {"preferred_username": oauth}}} if oauth else {})
    return SimpleNamespace(username=username, session_hash=session, request=http)


@pytest.fixture
def page_settings(monkeypatch, runs_dir):
    from ui import owners as page

    monkeypatch.setattr(page, "SETTINGS", {"auth": False, "admins": set(), "models_dirs": []})
    monkeypatch.setattr(page, "_SESSIONS", {})
    for name in ("STUDIO_DEMO", "OAUTH_CLIENT_ID", "STUDIO_OAUTH", "SPACE_AUTHOR_NAME"):
        monkeypatch.delenv(name, raising=False)
    return page


def test_who_is_asking_in_each_mode(page_settings, monkeypatch, tmp_path):
    page = page_settings
    # a person on their own machine: the local owner, who sees everything
    assert page.person(_request()) == page.Person("local", admin=True)
    # studio --auth: the account Gradio's sign-in checked; admins by flag or by account
    monkeypatch.setenv("STUDIO_ACCOUNTS", str(tmp_path / "accounts.json"))
    accounts.add("carol", "admin password", admin=True)
    page.SETTINGS.update(auth=True, admins={"dave"})
    assert page.person(_request(username="alice")) == page.Person("user:alice")
    assert page.person(_request(username="dave")).admin and page.person(_request(username="carol")).admin
    page.SETTINGS.update(auth=False, admins=set())
    # a Space with Hugging Face sign-in: the profile Gradio keeps in the session (its mocked profile's shape);
    # the Space's owner is an admin
    monkeypatch.setenv("OAUTH_CLIENT_ID", "space-client")
    monkeypatch.setenv("SPACE_AUTHOR_NAME", "erin")
    assert page.person(_request(oauth="frank")) == page.Person("hf:frank")
    assert page.person(_request(oauth="erin")).admin
    # ... and a visitor there who has not signed in: a browser of its own, kept across reloads by its key
    key = page.open_page("", _request(session="tab-1"))
    assert len(key) == 32
    first = page.person(_request(session="tab-1"))
    assert first.owner.startswith("anon:") and not first.admin
    assert page.open_page(key, _request(session="tab-2-after-reload")) == key
    assert page.person(_request(session="tab-2-after-reload")) == first
    other = page.open_page("", _request(session="another-browser"))
    assert other != key and page.person(_request(session="another-browser")) != first
    # a client that never opened the page is nobody else
    stranger = page.person(_request(session="raw-client"))
    assert stranger.owner.startswith("anon:") and stranger != first
    # on a shared page a handler that lost its request is our bug, never the operator's powers
    with pytest.raises(RuntimeError, match="^Bug: a handler of a shared page"):
        page.person(None)


def test_another_owners_run_or_collection_is_refused_in_one_sentence(page_settings, tiny_model, monkeypatch,
                                                                    tmp_path):
    import gradio as gr

    page = page_settings
    monkeypatch.setenv("STUDIO_DEMO", "1")
    monkeypatch.setenv("STUDIO_INDEXES", str(tmp_path / "indexes"))
    page.open_page("a" * 32, _request(session="alice"))
    page.open_page("b" * 32, _request(session="bob"))
    alice, bob = page.person(_request(session="alice")), page.person(_request(session="bob"))
    assert alice != bob and alice.owner.startswith("anon:")
    run = create_run(_config(tiny_model), owner=alice.owner)
    assert page.run_of(_request(session="alice"), run.id).id == run.id
    assert page.run_ids(_request(session="alice")) == [run.id] and page.run_ids(_request(session="bob")) == []
    for asked in (run.id, "no-such-run", "../" + run.id):
        with pytest.raises(gr.Error) as refused:
            page.run_of(_request(session="bob"), asked)
        assert refused.value.message == f"There is no run {asked} of yours."
    # collections: each person's "docs" is their own folder, and another's is refused
    folder = page.collection_of(_request(session="alice"), "docs", create=True)
    (tmp_path / "indexes" / folder / "meta.json").write_text(json.dumps({"embedder": "x"}))
    assert "docs" in page.collections(_request(session="alice"))
    assert page.collections(_request(session="bob")) == [page.SAMPLE_COLLECTION]
    with pytest.raises(gr.Error) as refused:
        page.collection_of(_request(session="bob"), "docs")
    assert refused.value.message == "There is no collection docs of yours."
    assert page.collection_of(_request(session="bob"), "docs", create=True) != folder
    assert owners.owner_of(tmp_path / "indexes" / folder) == alice.owner
    # one queued or running run per person: the second is refused with a sentence, another person is not held
    (run.dir / "events.jsonl").write_text(json.dumps({"event": "launched", "time": 1.0}) + "\n")
    # a live process of its own group stands for the trainer (the autouse fixture kills it after the test)
    trainer = subprocess.Popen(["sleep", "120"], start_new_session=True)
    (run.dir / "pid").write_text(str(trainer.pid))
    assert run.status() in ("running", "queued")
    assert "You already have 1 run queued or training" in page.may_start(_request(session="alice"))
    assert page.may_start(_request(session="bob")) is None
    monkeypatch.setenv("STUDIO_RUNS_PER_PERSON", "2")
    assert page.may_start(_request(session="alice")) is None


def _in_flight(run, *events):
    """`run` with a live process of its own (the autouse fixture ends it) and these events, written now."""
    trainer = subprocess.Popen(["sleep", "120"], start_new_session=True)
    (run.dir / "pid").write_text(str(trainer.pid))
    for event in events:
        run.events.write(event)
    return trainer


def test_the_queue_is_fair_between_people_and_a_run_past_the_limit_waits_or_is_refused(page_settings, tiny_model,
                                                                                      monkeypatch):
    import threading

    from engine.errors import StudioError
    from engine.train.runs import queue_order, queue_position
    from engine.train.trainer import queue_slot

    page = page_settings
    monkeypatch.setenv("STUDIO_DEMO", "1")
    page.open_page("a" * 32, _request(session="alice"))
    alice = page.person(_request(session="alice"))
    a1 = create_run(_config(tiny_model), owner=alice.owner)
    a2, b1 = create_run(_config(tiny_model), owner=alice.owner), create_run(_config(tiny_model), owner="user:bob")
    _in_flight(a1, "launched", "started")
    _in_flight(a2, "launched", "queued")
    _in_flight(b1, "launched", "queued")
    assert (a1.status(), a2.status(), b1.status()) == ("running", "queued", "queued")
    # alice's second run waits behind bob's first, though queued before it ...
    assert [r.id for r in queue_order()] == [b1.id, a2.id] and (queue_position(b1), queue_position(a2)) == (1, 2)
    # ... and still does once her first has ended: her turn came after bob had queued
    a1.events.write("finished")
    assert [r.id for r in queue_order()] == [b1.id, a2.id]
    # someone who comes after alice's turn began waits behind her
    c1 = create_run(_config(tiny_model), owner="user:carol")
    _in_flight(c1, "launched", "queued")
    assert [r.id for r in queue_order()] == [b1.id, a2.id, c1.id]
    # the trainer tries the slot only on its turn
    lock = a2.dir.parent / ".training.lock"
    turn, held = threading.Event(), threading.Event()

    def wait_in_queue():
        with queue_slot(lock, a2.events, SimpleNamespace(requested=False), my_turn=turn.is_set) as got:
            held.set() if got else None

    waiter = threading.Thread(target=wait_in_queue)
    waiter.start()
    assert not held.wait(1.5)  # the slot is free, but it is not this run's turn
    turn.set()
    assert held.wait(10)
    waiter.join(10)
    # the fair use of the slot: past the limit a run is refused (default), or taken to wait
    assert "You already have 1 run queued or training" in page.may_start(_request(session="alice"))
    page.SETTINGS.update(over_limit="wait")
    assert page.may_start(_request(session="alice")) is None and page.waits_note(_request(session="alice")) is None
    a3 = create_run(_config(tiny_model), owner=alice.owner)
    _in_flight(a3, "launched", "queued")
    assert page.waits_note(_request(session="alice")) == (
        "You have 2 runs queued or training; this one waits until your earlier run ends, and other people's runs "
        "go first.")
    for _ in range(3):
        _in_flight(create_run(_config(tiny_model), owner=alice.owner), "launched", "queued")
    assert "You already have 5 runs queued or training" in page.may_start(_request(session="alice"))
    page.SETTINGS.update(over_limit=None)
    monkeypatch.setenv("STUDIO_OVER_LIMIT", "later")
    with pytest.raises(StudioError, match="^STUDIO_OVER_LIMIT is 'later': it takes refuse or wait.$"):
        page.may_start(_request(session="alice"))


def test_a_model_path_is_checked_against_who_asks_and_every_refusal_reads_the_same(page_settings, tiny_model,
                                                                                   monkeypatch, tmp_path):
    """Issue 40: the Model field loaded any server folder with a config.json. Now, on a shared page: a run of
    one's own by id or path, the operator's model or folders, a hub id; another person's run by path, `..`, a
    link or id, a guessed id and any other server folder all get the one sentence, which names no server path."""
    import shutil

    import gradio as gr

    page = page_settings
    monkeypatch.setenv("STUDIO_ACCOUNTS", str(tmp_path / "accounts.json"))
    monkeypatch.delenv("STUDIO_MODEL", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    alice_req, bob_req = _request(username="alice"), _request(username="bob")
    alice_run = create_run(_config(tiny_model), owner="user:alice")
    bob_run = create_run(_config(tiny_model), owner="user:bob")
    shutil.copytree(tiny_model, alice_run.dir / "model")  # a full fine-tune's weights
    (bob_run.dir / "hers").symlink_to(alice_run.dir / "model")
    allowed = tmp_path / "operator-models"
    shutil.copytree(tiny_model, allowed / "tiny")
    page.SETTINGS.update(auth=True, models_dirs=[str(allowed)])
    assert page.model_of(alice_req, alice_run.id) == str(alice_run.dir / "model")  # her run, by id
    assert page.model_of(alice_req, str(alice_run.dir / "model")) == str((alice_run.dir / "model").resolve())
    assert page.model_of(bob_req, str(allowed / "tiny")) == str((allowed / "tiny").resolve())
    assert page.model_of(bob_req, "") == page.model_of(bob_req, None) == "HuggingFaceTB/SmolLM2-135M-Instruct"
    guessed = alice_run.id[:-10] + "0123456789"
    refusals = {}
    for bad in (alice_run.id, guessed, str(alice_run.dir / "model"), str(bob_run.dir / ".." / alice_run.id / "model"),
                str(bob_run.dir / "hers"), str(alice_run.dir), str(bob_run.dir.parent), tiny_model, "/etc",
                str(allowed / ".." / "operator-models" / ".." / alice_run.dir.parent.name), "Qwen/Qwen2.5-0.5B",
                "../../x", "a\x00b"):
        with pytest.raises(gr.Error) as err:
            page.model_of(bob_req, bad)
        refusals[bad] = err.value.message
    assert set(refusals.values()) == {page.NO_MODEL}, refusals  # missing, foreign or a server folder: one sentence
    assert "/" not in page.NO_MODEL  # it names no path at all
    with pytest.raises(gr.Error, match="has only an adapter"):  # her own LoRA run: said plainly, it is hers
        page.model_of(bob_req, bob_run.id)
    page.SETTINGS.update(auth=True, admins={"carol"})
    assert page.model_of(_request(username="carol"), alice_run.id) == str(alice_run.dir / "model")  # the admin
    page.SETTINGS.update(auth=False, admins=set())  # one person's own machine: any folder of theirs
    assert page.model_of(_request(), tiny_model) == tiny_model
