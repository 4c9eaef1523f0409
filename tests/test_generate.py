"""Question-answer pairs from documents (rag/rules.py, rag/generate.py, `studio data generate`).

The offline writer on the bundled sample's ten documents alone: at least five kept pairs per document,
each quote verbatim in its document and holding the answer, chunks held out whole, RAFT prompts with the
oracle among hard distractors. The teacher route against a real OpenAI-compatible server twice: `studio
serve` on the tiny model (the request shape and the parse, end to end), and a scripted endpoint whose
replies break each filter once (each drop counted under its reason). Bad input is one sentence.
"""

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import httpx

from engine.data.dataset import check_files
from rag.generate import Options, generate, gives_away, supported
from rag.rules import Reader
from studio.cli import main

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "assets" / "sample" / "docs"


def _squash(text: str) -> str:
    return " ".join(text.split())


def test_the_rules_ask_what_each_sentence_answers_without_giving_it_away():
    text = ("The Kestrel K4 costs 790 euros. It weighs 1.2 kg.\n\n"
            "The museum was founded in 1975 by Ada Lind in the town of Brisk.\n\n"
            "To reset the drone, hold the power button for 10 seconds.\n\n"
            "Clean the rotors with a dry cloth once a week.\n\n"
            "- E7: the battery is empty.")
    facts = Reader([text]).facts(text)
    asked = {q for f in facts for q in f.questions}
    for question in ("How much does the Kestrel K4 cost?", "How much does the Kestrel K4 weigh?",
                     "When was the museum founded?", "Who was the museum founded by?",
                     "Where was the museum founded?", "How do I reset the drone?",
                     "How often should I clean the rotors?", "What does E7 mean?"):
        assert question in asked, sorted(asked)
    for f in facts:
        assert _squash(f.quote) in _squash(text)  # the evidence is the document's own words
        assert not any(gives_away(q, f.key) for q in f.questions), f
    # "It weighs" borrows its subject from the sentence before, which then joins the quote
    weigh = next(f for f in facts if "weigh" in f.questions[0])
    assert weigh.answer.startswith("The Kestrel K4 weighs") and weigh.quote.startswith("The Kestrel K4 costs")
    assert supported(weigh.answer, weigh.quote)


def test_an_faq_properties_a_table_and_numbered_clauses_are_read_as_what_they_are():
    """Issue 42: documents of other kinds than the sample's prose. A question the document asks itself (an
    FAQ) is asked with its answer; "Key: value" lines and two-column table rows are asked as properties of
    what the document is about; a clause number ("2.1") is a marker, not part of the sentence."""
    text = ("# About the Osprey X1\n\n- Length: 42 cm\n- Rotors: 6\n- Launched: 2021, in Oslo\n\n"
            "## Prices\n\n- Student ticket: £4.50\n\n"
            "| Property | Value |\n|---|---|\n| Weight | 2.5 kg |\n\n"
            "**How do I charge the drone?**\nPlug the base into a USB-C socket for two hours.\n\n"
            "2.1 A member may cancel with one month's notice.\n")
    facts = Reader([text]).facts(text)
    asked = {q: f for f in facts for q in f.questions}
    for question, holds in (("What is the length of the Osprey X1?", "42 cm"),
                            ("How many rotors does the Osprey X1 have?", "6"),
                            ("When was the Osprey X1 launched?", "2021"),
                            ("How much is a student ticket?", "£4.50"),
                            ("What is the weight of the Osprey X1?", "2.5 kg"),
                            ("How do I charge the drone?", "two hours")):
        assert question in asked and holds in asked[question].answer, (question, sorted(asked))
    assert not any("2.1" in q for q in asked) and not any("Property" in q or "|" in q for q in asked), sorted(asked)
    for f in facts:
        assert _squash(f.quote) in _squash(text) and supported(f.answer, f.quote), f
        assert not any(gives_away(q, f.key) for q in f.questions), f

def test_the_offline_writer_keeps_five_pairs_per_sample_document_each_with_its_quote(tmp_path):
    out = tmp_path / "pairs.jsonl"
    report = generate([DOCS], out, Options(raft=True))
    texts = {p.name: p.read_text(encoding="utf-8") for p in DOCS.iterdir()}
    assert report.documents == 10 and set(report.per_document) == set(texts)
    assert min(report.per_document.values()) >= 5, report.per_document
    assert report.kept + sum(report.dropped.values()) == report.proposed
    train = [json.loads(line) for line in out.read_text().splitlines()]
    held = [json.loads(line) for line in (tmp_path / "pairs.heldout.jsonl").read_text().splitlines()]
    assert len(train) == report.train and len(held) == report.held_seen + report.held_unseen
    for row in train:
        meta, answer = row["metadata"], row["messages"][-1]["content"]
        assert _squash(meta["quote"]) in _squash(texts[meta["source"]]) and supported(answer, meta["quote"])
    # chunks held out whole are never trained on; "seen" questions ask trained facts in other words
    trained_chunks = {r["metadata"]["chunk"] for r in train}
    trained_questions = {r["messages"][0]["content"] for r in train}
    unseen = [h for h in held if not h["seen"]]
    assert unseen and all(h["chunk"] not in trained_chunks for h in unseen)
    seen = [h for h in held if h["seen"]]
    assert seen and all(h["chunk"] in trained_chunks and h["question"] not in trained_questions for h in seen)
    # the file is training data as it is
    checked = check_files([str(out)])
    assert not checked.errors and len(checked.examples) == len(train)
    # RAFT: each question in the "+ RAG" prompt, the oracle among retrieved distractors about 80% of the time
    raft = [json.loads(line) for line in (tmp_path / "pairs.raft.jsonl").read_text().splitlines()]
    assert len(raft) == len(train)
    with_oracle = [r for r in raft if r["metadata"]["oracle"]]
    assert 0.6 <= len(with_oracle) / len(raft) <= 0.95
    for r in raft:
        user, answer = r["messages"][1]["content"], r["messages"][-1]["content"]
        assert user.startswith("Sources:\n[1] (") and "[3] (" in user and "\n\nQuestion: " in user
        assert answer.endswith("]") == r["metadata"]["oracle"]  # it cites the oracle only when it is there
        if r["metadata"]["oracle"]:
            cited = int(answer.rsplit("[", 1)[1].rstrip("]"))
            source = re.search(rf"^\[{cited}\] \((.*?)(?=^\[\d+\] \(|\n\nQuestion: )", user, re.S | re.M).group(1)
            assert _squash(r["metadata"]["quote"]) in _squash(source)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Scripted(BaseHTTPRequestHandler):
    """A teacher whose reply holds one pair of each kind, to see each filter count its drop."""
    seen: list = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Scripted.seen.append((self.headers.get("Authorization"), body))
        passage = body["messages"][1]["content"]
        pairs = [
            {"questions": ["How heavy is the Tilly T2?", "What does the Tilly T2 weigh?"],
             "answer": "The Tilly T2 weighs 6.4 kg.", "quote": "The Tilly T2 weighs 6.4 kg"},
            {"questions": ["How tall is the Tilly T2?"], "answer": "It is 26 cm high.",
             "quote": "The Tilly T2 is 30 cm high"},                                       # quote not in the chunk
            {"questions": ["How wide is the Tilly T2?"], "answer": "It is 50 cm wide.",
             "quote": "The Tilly T2 weighs 6.4 kg and measures 58 cm long"},               # answer not supported
            {"questions": ["Does the Tilly T2 weigh 6.4 kg?"], "answer": "It weighs 6.4 kg.",
             "quote": "The Tilly T2 weighs 6.4 kg"},                                       # gives its answer away
            {"questions": ["How heavy is the Tilly T2 ?"], "answer": "The Tilly T2 weighs 6.4 kg.",
             "quote": "The Tilly T2 weighs 6.4 kg"},                                       # near-duplicate
        ] if "weighs 6.4 kg" in passage else []
        reply = json.dumps({"choices": [{"message": {"role": "assistant", "content": json.dumps({"pairs": pairs})}}]})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(reply.encode())

    def log_message(self, *args):
        pass


def test_a_teacher_reply_is_filtered_and_each_drop_counted_under_its_reason(tmp_path, monkeypatch):
    doc = tmp_path / "tilly.md"
    doc.write_text((DOCS / "02-tilly-t2.md").read_text(encoding="utf-8"), encoding="utf-8")
    server = HTTPServer(("127.0.0.1", free_port()), Scripted)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("MY_TEACHER_KEY", "sk-teacher-123")
    try:
        report = generate([doc], tmp_path / "out.jsonl", Options(
            teacher=f"http://127.0.0.1:{server.server_port}/v1", teacher_model="big", held_out=0,
            teacher_key_env="MY_TEACHER_KEY"))
    finally:
        server.shutdown()
    auth, body = Scripted.seen[0]
    assert auth == "Bearer sk-teacher-123" and body["model"] == "big"
    assert body["response_format"]["type"] == "json_schema"
    assert dict(report.dropped) == {"quote": 1, "unsupported": 1, "gives away": 1, "duplicate": 1}, report.dropped
    kept = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["messages"][0]["content"] for r in kept] == ["How heavy is the Tilly T2?", "What does the Tilly T2 weigh?"]
    assert kept[0]["metadata"]["writer"].startswith("teacher big")


def test_the_teacher_route_runs_against_studio_serve(tiny_model, tmp_path, capsys):
    doc = tmp_path / "battery.md"
    doc.write_text((DOCS / "03-battery.md").read_text(encoding="utf-8"), encoding="utf-8")
    port = free_port()
    env = {**os.environ, "STUDIO_RUNS": str(tmp_path / "runs"), "STUDIO_API_KEY": ""}
    proc = subprocess.Popen([sys.executable, "-m", "studio.cli", "serve", "--model", tiny_model, "--port", str(port)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            try:
                served = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=5).json()["data"][0]["id"]
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "studio serve did not start"
                time.sleep(0.5)
        code = main(["data", "generate", str(doc), "-o", str(tmp_path / "out.jsonl"),
                     "--teacher", f"http://127.0.0.1:{port}/v1", "--teacher-model", served,
                     "--teacher-max-tokens", "160"])  # the tiny model's context is 512 tokens
    finally:
        proc.terminate()
        proc.wait(30)
    # The tiny random model writes schema-shaped JSON whose quotes are not in the passage: what it proposed
    # is read and dropped for its reason, and the command says so (exit 1: nothing to train on).
    report = json.loads((tmp_path / "out.report.json").read_text())
    assert report["writer"].startswith(f"teacher {served}")
    assert report["chunks"] >= 2 and report["kept"] == 0
    assert sum(report["dropped"].values()) == report["proposed"] + report["dropped"].get(
        "the teacher's reply was not a list of pairs", 0) > 0
    assert code == 1 and "dropped" in capsys.readouterr().out


def test_unreadable_documents_and_an_unreachable_teacher_are_one_sentence(tmp_path, capsys):
    bad = tmp_path / "scan.pdf"
    bad.write_bytes(b"%PDF-1.4 not really a pdf")
    out = tmp_path / "out.jsonl"

    def cli(*args):
        code = main(["data", "generate", *args, "-o", str(out)])
        err = capsys.readouterr().err
        (said,) = [line for line in err.splitlines() if line.startswith("error:")]  # one sentence, no traceback
        assert "Traceback" not in err
        return code, said

    code, said = cli(str(bad))
    assert code == 2 and said.startswith("error: no text to write questions from: ") and "scan.pdf" in said
    code, said = cli(str(DOCS / "03-battery.md"), "--teacher", f"http://127.0.0.1:{free_port()}/v1",
                     "--teacher-model", "x")
    assert code == 2 and "the teacher at http://127.0.0.1:" in said and "cannot be reached" in said
    assert not out.exists()


def test_the_writer_covers_a_held_out_set_with_supported_answers_that_its_questions_do_not_give_away():
    """Issue 42: measured on documents the sample is not (assets/heldout/: six sets with questions written by
    hand; `python -m rag.coverage assets/heldout` gives every figure). One set here, the membership terms with
    numbered clauses, where the writer went from 11 to 16 of 20 hand-written facts."""
    from rag.coverage import measure

    r = measure(ROOT / "assets" / "heldout" / "cowork")
    assert r["coverage"] >= 0.7 and r["supported"] == 1.0 and r["gives_away"] <= 0.05, r
