"""Hostile input and secrets: uploads refused with a sentence, pickles never loaded, the token never written,
and the dataset reader surviving a fuzz run."""

import json
import os
import re
import zipfile
from pathlib import Path

import pytest
import torch

from conftest import SAMPLE, wait_for
from engine.data.uploads import UploadError, check_upload

ROOT = Path(__file__).resolve().parent.parent
DATA = (".jsonl", ".json", ".csv", ".tsv", ".parquet", ".txt")
DOCS = (".txt", ".md", ".html", ".pdf", ".docx", ".jsonl", ".csv")


def _file(tmp_path, name, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def test_a_good_upload_passes(tmp_path):
    good = _file(tmp_path, "ok.jsonl", (SAMPLE / "train.jsonl").read_bytes())
    assert check_upload(good, DATA) == good


@pytest.mark.parametrize("name, content, allowed, message", [
    ("run.exe", b"MZ\x90\x00", DATA, r"run.exe: .exe is not accepted here; use .jsonl, .json"),
    ("noext", b"hello", DATA, r"noext: a file without an extension is not accepted"),
    ("data.jsonl", b'{"text": "a"}\n\x00\x00\x7fELF', DATA, r"data.jsonl: holds binary data \(NUL bytes\)"),
    ("t.parquet", b"not parquet at all", DATA, r"t.parquet: is not a Parquet file"),
    ("doc.pdf", b"<html>fake</html>", DOCS, r"doc.pdf: is not a PDF"),
    ("doc.docx", b"plain text", DOCS, r"doc.docx: is not a Word document"),
])
def test_hostile_uploads_are_refused_with_a_sentence(tmp_path, name, content, allowed, message):
    with pytest.raises(UploadError, match=message):
        check_upload(_file(tmp_path, name, content), allowed)


def test_an_upload_over_the_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_MAX_UPLOAD_MB", "1")
    big = _file(tmp_path, "big.txt", b"a" * (2 * 1024 * 1024))
    with pytest.raises(UploadError, match=r"big.txt: 2.0 MB is over the 1 MB upload limit"):
        check_upload(big, DATA)


def test_a_zip_bomb_posing_as_docx_is_refused(tmp_path):
    bomb = tmp_path / "report.docx"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("word/document.xml", b"\x00" * (300 * 1024 * 1024))  # 300 MB of zeros, ~300 KB packed
    assert bomb.stat().st_size < 2 * 1024 * 1024
    with pytest.raises(UploadError, match="refused as a possible zip bomb"):
        check_upload(bomb, DOCS)


@pytest.mark.parametrize("name", ["..", "a/b.txt", "..\\evil.txt", "evil\x01.txt", ""])
def test_names_that_try_to_leave_the_upload_folder_are_refused(name):
    from engine.data.uploads import safe_name

    assert not safe_name(name)


def test_no_pickle_is_ever_loaded_without_weights_only():
    paths = [p for package in ("engine", "rag", "ui", "studio") for p in (ROOT / package).rglob("*.py")]
    assert ROOT / "engine" / "train" / "trainer.py" in paths  # the scan sees inside the stage folders
    for path in paths:
        for call in re.findall(r"torch\.load\([^)]*\)", path.read_text()):
            assert "weights_only=True" in call, f"{path.name}: {call}"
        assert "trust_remote_code=True" not in path.read_text(), path.name  # only from a config that asks


def test_remote_code_needs_a_pinned_revision():
    from engine.train.config import ConfigError, RunConfig
    from engine.models import _remote_code

    with pytest.raises(ConfigError, match="trust_remote_code: needs revision pinned to a commit hash"):
        RunConfig(trust_remote_code=True, revision="main")
    pinned = RunConfig(trust_remote_code=True, revision="a" * 40)
    assert _remote_code(pinned.revision, pinned.trust_remote_code) == {"revision": "a" * 40, "trust_remote_code": True}
    assert _remote_code("", False) == {}  # off unless asked


def test_a_model_folder_with_only_pickled_weights_is_refused(tiny_model, tmp_path):
    from transformers import AutoModelForCausalLM

    from engine.models import ModelError, load_causal_lm

    pickled = tmp_path / "pickled"
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    model.save_pretrained(pickled)  # transformers 5 writes safetensors only: swap them for a pickle
    torch.save(model.state_dict(), pickled / "pytorch_model.bin")
    (pickled / "model.safetensors").unlink()
    assert (pickled / "pytorch_model.bin").exists() and not list(pickled.glob("*.safetensors"))
    with pytest.raises(ModelError, match="could not be loaded"):
        load_causal_lm(str(pickled))


def test_the_hub_token_never_reaches_a_run_folder(tiny_model, runs_dir, monkeypatch):
    from engine.train.config import RunConfig
    from engine.train.preflight import create_run
    from engine.train.runs import launch

    secret = "hf_neverWrittenAnywhere42"
    monkeypatch.setenv("HF_TOKEN", secret)
    run = create_run(RunConfig(model=tiny_model, data=str(SAMPLE / "train.jsonl"), max_steps=3, max_length=64,
                               save_steps=2))
    launch(run)
    assert wait_for(run, 120) == "finished"
    files = [p for p in run.dir.rglob("*") if p.is_file()]
    assert any(p.name == "events.jsonl" for p in files) and any("tfevents" in p.name for p in files)
    for path in files:
        assert secret.encode() not in path.read_bytes(), path


hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
                         st.sampled_from(["messages", "role", "content", "text", "prompt", "completion",
                                          "instruction", "output", "conversations", "from", "value", "weight", "x"]),
                         inner, max_size=4), max_leaves=12)
_message = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system", "bot", ""]),
                                  "content": st.text(max_size=30) | st.none() | st.integers()})
_record = _json | st.fixed_dictionaries({"messages": st.lists(_message, max_size=4)})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(_record.map(json.dumps) | st.text(max_size=40), min_size=1, max_size=6))
def test_the_dataset_reader_survives_fuzzed_files(tmp_path_factory, lines):
    from engine.data.dataset import check_files

    path = tmp_path_factory.mktemp("fuzz") / "data.jsonl"
    path.write_text("\n".join(lines), encoding="utf-8")
    report = check_files([str(path)])  # no exception: every problem is a report line
    for problem in report.errors + report.warnings:
        assert problem.message and "Traceback" not in problem.message


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(messages=st.lists(_message.filter(lambda m: isinstance(m["content"], str)), min_size=1, max_size=5))
def test_chat_formatting_survives_fuzzed_conversations(tiny_model, messages):
    from engine.data.dataset import DataError, tokenize_example
    from engine.data.formats import Example

    tokenizer = _tokenizer(tiny_model)
    try:
        out = tokenize_example(Example(messages=messages, where="fuzz"), tokenizer, "assistant")
    except DataError as err:  # a validation sentence is the only error allowed
        assert str(err)
        return
    assert len(out["input_ids"]) == len(out["assistant_masks"])


_TOKENIZERS = {}


def _tokenizer(path):
    from engine.models import load_tokenizer

    if path not in _TOKENIZERS:
        _TOKENIZERS[path] = load_tokenizer(path)
    return _TOKENIZERS[path]


def test_the_run_status_api_reads_only_listed_runs(runs_dir):
    import gradio as gr

    from ui.train_tab import run_status

    for bad in ("../../etc", "/etc/passwd", "", "20990101-000000-lora"):
        with pytest.raises(gr.Error, match="There is no run"):
            run_status(bad)


def test_only_files_under_the_upload_folder_or_the_samples_are_read(tmp_path):
    from engine.data.uploads import check_origin

    uploads, elsewhere = tmp_path / "uploads", tmp_path / "elsewhere"
    uploads.mkdir(), elsewhere.mkdir()
    mine = _file(uploads, "mine.jsonl", b'{"text": "a"}\n')
    server = _file(elsewhere, "server.jsonl", b'{"text": "secret"}\n')
    (uploads / "link.jsonl").symlink_to(server)  # a link out of the folder is judged by where it leads
    assert check_origin(mine, [uploads]) == mine.resolve()
    for bad in (server, uploads / "link.jsonl", uploads / ".." / "elsewhere" / "server.jsonl", "/etc/passwd"):
        with pytest.raises(UploadError, match="was not uploaded in this session, so it is not read"):
            check_origin(bad, [uploads])


def _upload_again(path: Path, data: bytes) -> None:
    """As Gradio stores an upload: a new file renamed over the path its bytes' hash names."""
    fresh = path.with_name(".incoming")
    fresh.write_bytes(data)
    os.rename(fresh, path)


def test_each_persons_upload_is_their_own_copy_and_the_same_bytes_from_two_people_are_two_uploads(tmp_path):
    from engine.data.uploads import Uploads

    shared = tmp_path / "gradio" / "3fa9" / "mine.jsonl"  # Gradio's folder: one path for the same bytes and name
    shared.parent.mkdir(parents=True)
    data = b'{"text": "alice wrote this"}\n'
    _upload_again(shared, data)
    uploads = Uploads(lambda: tmp_path / "home")
    alice = uploads.take(shared, "user:alice")
    assert alice.read_bytes() == data and not alice.is_relative_to(shared.parent)
    assert uploads.take(shared, "user:alice") == alice  # taken again (a reload, a second event): her copy
    with pytest.raises(UploadError, match="mine.jsonl: was not uploaded by you"):  # named, never uploaded
        uploads.take(shared, "user:mallory")
    _upload_again(shared, data)  # bob uploads the very same bytes under the same name
    bob = uploads.take(shared, "user:bob")
    assert bob != alice and bob.read_bytes() == data
    assert Uploads(lambda: tmp_path / "home").take(shared, "user:alice") == alice  # after a restart: still hers
    _upload_again(shared, data)  # alice uploads it again after a reload
    assert uploads.take(shared, "user:alice") == alice
    with pytest.raises(UploadError, match="was not uploaded by you"):
        uploads.take(shared, "user:mallory")
