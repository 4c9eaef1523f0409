"""Questions and answers from documents, each with its evidence: training data for people who have only documents.

    studio data generate DOCS... -o OUT.jsonl [--phrasings 2] [--held-out 0.2] [--raft]
                                 [--teacher URL --teacher-model NAME [--teacher-key-env VAR]]

1. The documents are read and chunked exactly as retrieval indexes them (rag/pipeline.py: the embedder's
   token counts), so the chunk a pair comes from is a passage the "+ RAG" columns can retrieve.
2. A writer proposes facts per chunk, each with several phrasings of its question, an answer and a quote:
   offline by rules (rag/rules.py, no model, no network), or by any OpenAI-compatible teacher endpoint
   (a larger model on a GPU, Ollama, vLLM, a hosted API, or `studio serve`), asked for JSON.
3. Filters, each counted in the report with examples of what it dropped: the quote is not in the chunk
   (verbatim, up to whitespace); the answer is not supported by the quote (its numbers and 80% of its
   content words are not there); the question contains its answer; a near-duplicate of a kept question;
   the round trip (the question does not retrieve its own chunk in the top k).
4. The chunks are split: a share of them (`held_out`) is never trained on, and their questions are held
   out as "unseen"; from the trained chunks, one phrasing of every other fact with two or more kept
   phrasings is held out as "seen" (its fact is trained, in other words). Evaluation can then tell
   learning facts from learning to answer.

Files written beside OUT.jsonl (OUT = its name without .jsonl):
    OUT.jsonl            chat examples to train on (metadata: source, chunk, quote, fact, writer)
    OUT.heldout.jsonl    question, answer, evidence, source, seen: for `studio eval --questions`, `studio decide`
    OUT.raft.jsonl       with --raft: the same questions in the "+ RAG" prompt, the oracle chunk (with probability
                         P) among k hard distractors retrieved from the same documents (RAFT, Zhang et al. 2024)
    OUT.report.json      what was read, proposed, kept and dropped (by reason), per document

    python -m rag.generate DOCS... -o OUT.jsonl    # the same as `studio data generate`
"""

from __future__ import annotations

import json
import os
import random
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from rag.documents import Chunk
from rag.errors import RagError
from rag.evaluate import contains_reference, content_words, normalise
from rag.pipeline import RagPipeline
from rag.rules import Fact, Reader
from rag.store import Hit

REASONS = {
    "unreadable": "the teacher's reply was not a list of pairs",
    "quote": "quote not in the chunk",
    "unsupported": "answer not supported by the quote",
    "gives away": "question contains its answer",
    "duplicate": "near-duplicate of a kept question",
    "round trip": "question does not retrieve its own chunk",
}
TEACHER_SYSTEM = (
    "You write question-answer pairs for training a model on a document. For the passage given, write "
    "{n} pairs about different facts in it. Each pair: {p} differently worded questions a user might ask about "
    "the fact, a short answer in a full sentence, and a quote: words copied exactly from the passage that "
    "support the answer. Never put the answer in the question. Reply with JSON only: "
    '{{"pairs": [{{"questions": ["..."], "answer": "...", "quote": "..."}}]}}')
TEACHER_SCHEMA = {"type": "object", "required": ["pairs"], "properties": {"pairs": {"type": "array", "items": {
    "type": "object", "required": ["questions", "answer", "quote"], "properties": {
        "questions": {"type": "array", "items": {"type": "string"}}, "answer": {"type": "string"},
        "quote": {"type": "string"}}}}}}


@dataclass
class Options:
    phrasings: int = 2          # questions kept per fact (paraphrases)
    held_out: float = 0.2       # share of chunks never trained on
    hold_phrasings: bool = True  # hold out one phrasing of every other trained fact ("seen" questions)
    round_trip_k: int = 3       # a question must retrieve its own chunk among this many
    raft: bool = False
    raft_p: float = 0.8         # RAFT: the oracle chunk is in the prompt with this probability
    raft_k: int = 3             # RAFT: passages in the prompt
    seed: int = 0
    teacher: str = ""           # OpenAI-compatible base URL (.../v1); empty: the offline rules
    teacher_model: str = ""
    teacher_key_env: str = "STUDIO_TEACHER_KEY"
    teacher_pairs: int = 4      # facts asked of the teacher per chunk
    teacher_max_tokens: int = 0  # the length of its answer (0: the server's default)


@dataclass
class Pair:
    question: str
    answer: str
    quote: str
    source: str
    chunk: str      # "source#n": the n-th chunk of its document
    fact: str       # pairs of one fact share it: paraphrases
    writer: str
    seen: bool = True

    def chat(self) -> dict:
        return {"messages": [{"role": "user", "content": self.question}, {"role": "assistant", "content": self.answer}],
                "metadata": {"source": self.source, "chunk": self.chunk, "quote": self.quote, "fact": self.fact,
                             "writer": self.writer}}

    def held(self) -> dict:
        return {"question": self.question, "answer": self.answer, "evidence": self.quote, "source": self.source,
                "chunk": self.chunk, "seen": self.seen}


@dataclass
class Report:
    documents: int = 0
    chunks: int = 0
    writer: str = "rules"
    proposed: int = 0
    kept: int = 0
    train: int = 0
    held_seen: int = 0
    held_unseen: int = 0
    dropped: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)          # reason -> a few dropped questions
    per_document: Counter = field(default_factory=Counter)  # kept pairs per source
    skipped: list = field(default_factory=list)           # documents that could not be read, with the reason
    seconds: float = 0.0
    index_seconds: float = 0.0  # of `seconds`, reading, chunking and embedding the documents into the index
    files: dict = field(default_factory=dict)

    def drop(self, reason: str, what: str) -> None:
        self.dropped[reason] += 1
        self.examples.setdefault(reason, [])
        if len(self.examples[reason]) < 3:
            self.examples[reason].append(what)

    def lines(self) -> list[str]:
        out = [f"read {self.documents} documents as {self.chunks} chunks; the {self.writer} proposed "
               f"{self.proposed} questions, {self.kept} kept in {self.seconds:.1f} s",
               f"  to train on: {self.train}; held out: {self.held_unseen} on chunks never trained on, "
               f"{self.held_seen} on trained facts asked in other words"]
        for reason, n in self.dropped.most_common():
            out.append(f"  dropped {n}: {REASONS[reason]} (e.g. {self.examples[reason][0]!r})")
        for source, n in sorted(self.per_document.items()):
            out.append(f"  {source}: {n} kept")
        for s in self.skipped:
            out.append(f"  skipped {s}")
        return out

    def as_dict(self) -> dict:
        d = {k: v for k, v in vars(self).items()}
        d["per_document"] = dict(self.per_document)
        d["dropped"] = {REASONS[k]: v for k, v in self.dropped.items()}
        d["examples"] = {REASONS[k]: v for k, v in self.examples.items()}
        return d


# ---- writers ----------------------------------------------------------------------------------------------

class RuleWriter:
    name = "offline rules"

    def __init__(self, chunks: list[Chunk]):
        self.reader = Reader([c.text for c in chunks])

    def __call__(self, chunk: Chunk, phrasings: int) -> list[Fact]:
        return self.reader.facts(chunk.text)


class TeacherWriter:
    """An OpenAI-compatible chat endpoint asked for JSON pairs per chunk (response_format where it takes one)."""
    name = "teacher"

    def __init__(self, url: str, model: str, key_env: str = "STUDIO_TEACHER_KEY", pairs: int = 4, timeout: float = 300,
                 max_tokens: int = 0):
        import httpx

        self.url, self.model, self.pairs, self.max_tokens = url.rstrip("/"), model, pairs, max_tokens
        key = os.environ.get(key_env, "")
        self.client = httpx.Client(timeout=timeout, headers={"Authorization": f"Bearer {key}"} if key else {})
        self.schema = True
        self.name = f"teacher {model} at {self.url}"

    def _post(self, body: dict) -> dict:
        import httpx

        try:
            r = self.client.post(f"{self.url}/chat/completions", json=body)
        except httpx.HTTPError as exc:
            raise RagError(f"the teacher at {self.url} cannot be reached ({type(exc).__name__}: {exc}); "
                           "check --teacher (the base URL ending in /v1) and that the server runs.") from None
        if r.status_code == 400 and self.schema and "response_format" in r.text:
            self.schema = False  # a server without structured output: ask in words alone
            return self._post({k: v for k, v in body.items() if k != "response_format"})
        if r.status_code in (401, 403):
            raise RagError(f"the teacher at {self.url} refused the key ({r.status_code}); set it in the environment "
                           "variable named by --teacher-key-env.")
        if r.status_code == 404:
            raise RagError(f"the teacher at {self.url} has no /chat/completions or no model {self.model!r} "
                           f"({r.status_code}: {r.text[:120]}).")
        if r.status_code >= 400:
            try:
                said = r.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                said = r.text[:200]
            hint = " (--teacher-max-tokens sets the answer's length)" if "context" in said.lower() else ""
            raise RagError(f"the teacher at {self.url} answered {r.status_code}: {said}{hint}")
        return r.json()

    def __call__(self, chunk: Chunk, phrasings: int) -> list[Fact] | None:
        body = {"model": self.model, "temperature": 0.3, **({"max_tokens": self.max_tokens} if self.max_tokens else {}),
                "messages": [{"role": "system", "content": TEACHER_SYSTEM.format(n=self.pairs, p=phrasings)},
                             {"role": "user", "content": f"Passage ({chunk.source}, {chunk.location()}):\n{chunk.text}"}]}
        if self.schema:
            body["response_format"] = {"type": "json_schema", "json_schema": {"name": "pairs", "schema": TEACHER_SCHEMA}}
        reply = self._post(body)
        text = ((reply.get("choices") or [{}])[0].get("message") or {}).get("content") or ""
        found = re.search(r"\{.*\}", text, re.S)
        try:
            pairs = json.loads(found.group())["pairs"] if found else None
        except (json.JSONDecodeError, KeyError, TypeError):
            pairs = None
        if not isinstance(pairs, list):
            return None
        facts = []
        for p in pairs:
            if not isinstance(p, dict):
                continue
            qs = p.get("questions") or ([p["question"]] if p.get("question") else [])
            qs = [str(q).strip() for q in qs if str(q).strip()]
            answer, quote = str(p.get("answer", "")).strip(), str(p.get("quote", "")).strip()
            if qs and answer:
                at = chunk.text.find(quote) if quote else -1
                facts.append(Fact(qs, answer, quote, max(at, 0), max(at, 0) + len(quote), answer, "teacher"))
        return facts


# ---- filters ----------------------------------------------------------------------------------------------

def _squash(text: str) -> str:
    return " ".join(text.replace("“", '"').replace("”", '"').replace("’", "'").split())


def quote_in_chunk(quote: str, chunk: Chunk) -> bool:
    return bool(quote.strip()) and _squash(quote) in _squash(chunk.text)


def supported(answer: str, quote: str) -> bool:
    """The quote holds the answer: its numbers and 80% of its content words."""
    return contains_reference(quote, answer, share=0.8)


def gives_away(question: str, key: str) -> bool:
    """Whether the question holds what it asks for: every number of the key (a name such as "T2" counts, so
    one that also names the subject does not give the answer away alone), or every content word of it."""
    asked, words = set(normalise(question)), content_words(key)
    numbers = [w for w in words if any(ch.isdigit() for ch in w)]
    if numbers:
        return all(n in asked for n in numbers)
    return bool(words) and all(w in asked for w in words)


def _near(a: set, b: set) -> bool:
    return len(a & b) / max(1, len(a | b)) >= 0.9


# ---- the whole step ---------------------------------------------------------------------------------------

def generate(paths, out: str | Path, options: Options | None = None, pipeline: RagPipeline | None = None,
             progress: Callable[[int, int, str], None] | None = None) -> Report:
    """Write OUT.jsonl, OUT.heldout.jsonl (and OUT.raft.jsonl) and OUT.report.json; returns the report."""
    o = options or Options()
    if o.phrasings < 1:
        raise RagError("phrasings must be at least 1.")
    if not 0 <= o.held_out < 1:
        raise RagError("held_out must be a share from 0 up to (not including) 1, e.g. 0.2.")
    if o.teacher and not o.teacher_model:
        raise RagError("--teacher needs --teacher-model: the model name the endpoint serves.")
    start = time.perf_counter()
    out = Path(out)
    stem = out.with_suffix("") if out.suffix == ".jsonl" else out
    pipeline = pipeline or RagPipeline()
    ingest = pipeline.index(paths)
    report = Report(documents=ingest.documents, skipped=[f"{s.source}: {s.reason}" for s in ingest.skipped],
                    index_seconds=ingest.seconds)
    chunks = [c for c in pipeline.store.chunks if c is not None]
    report.chunks = len(chunks)
    if not chunks:
        why = "; ".join(report.skipped) or "they hold no text"
        raise RagError(f"no text to write questions from: {why}.")
    writer = TeacherWriter(o.teacher, o.teacher_model, o.teacher_key_env, o.teacher_pairs,
                           max_tokens=o.teacher_max_tokens) if o.teacher \
        else RuleWriter(chunks)
    report.writer = writer.name
    chunk_ids, ordinal = {}, Counter()
    for c in chunks:
        chunk_ids[(c.source, c.start)] = f"{Path(c.source).name}#{ordinal[c.source]}"
        ordinal[c.source] += 1

    proposed: list[tuple[Pair, str]] = []  # (pair, key)
    for i, chunk in enumerate(chunks):
        if progress:
            progress(i, len(chunks), f"{Path(chunk.source).name} > {chunk.location()}")
        facts = writer(chunk, o.phrasings)
        if facts is None:
            report.drop("unreadable", chunk_ids[(chunk.source, chunk.start)])
            continue
        for n, f in enumerate(facts):
            fact_id = f"{chunk_ids[(chunk.source, chunk.start)]}/{n}"
            for q in f.questions[: o.phrasings]:
                report.proposed += 1
                proposed.append((Pair(q, f.answer, f.quote, Path(chunk.source).name,
                                      chunk_ids[(chunk.source, chunk.start)], fact_id, writer.name), f.key))
    by_id = {chunk_ids[(c.source, c.start)]: c for c in chunks}

    kept: list[Pair] = []
    seen_questions: list[set] = []
    for pair, key in proposed:
        chunk = by_id[pair.chunk]
        if not quote_in_chunk(pair.quote, chunk):
            report.drop("quote", pair.question)
        elif not supported(pair.answer, pair.quote):
            report.drop("unsupported", pair.question)
        elif gives_away(pair.question, key):
            report.drop("gives away", pair.question)
        elif (words := set(normalise(pair.question))) and any(_near(words, s) for s in seen_questions):
            report.drop("duplicate", pair.question)
        else:
            seen_questions.append(words)
            kept.append(pair)
    if kept:  # the round trip: one batch of question vectors
        vectors = pipeline.embedder.embed([p.question for p in kept])
        still = []
        for p, v in zip(kept, vectors):
            hits = pipeline.store.search(v, o.round_trip_k)
            if any(chunk_ids[(h.chunk.source, h.chunk.start)] == p.chunk for h in hits):
                still.append(p)
            else:
                report.drop("round trip", p.question)
        kept = still
    report.kept = len(kept)
    for p in kept:
        report.per_document[p.source] += 1

    train, held = split(kept, o)
    report.train, report.held_seen = len(train), sum(p.seen for p in held)
    report.held_unseen = len(held) - report.held_seen
    files = {"train": stem.with_suffix(".jsonl"), "heldout": Path(f"{stem}.heldout.jsonl"),
             "report": Path(f"{stem}.report.json")}
    if o.raft:
        files["raft"] = Path(f"{stem}.raft.jsonl")
    files["train"].parent.mkdir(parents=True, exist_ok=True)
    _write_jsonl(files["train"], [p.chat() for p in train])
    _write_jsonl(files["heldout"], [p.held() for p in held])
    if o.raft:
        _write_jsonl(files["raft"], raft_rows(train, pipeline, by_id, o))
    report.seconds = time.perf_counter() - start
    report.files = {k: str(v) for k, v in files.items()}
    files["report"].write_text(json.dumps(report.as_dict(), indent=2), encoding="utf-8")
    if progress:
        progress(len(chunks), len(chunks), "done")
    return report


def split(kept: list[Pair], o: Options) -> tuple[list[Pair], list[Pair]]:
    """Training pairs and held-out pairs: whole chunks held out (unseen), and from the trained chunks one
    phrasing of every other fact that has two or more (seen)."""
    chunk_list = sorted({p.chunk for p in kept})
    rng = random.Random(o.seed)
    rng.shuffle(chunk_list)
    n_held = round(o.held_out * len(chunk_list)) if len(chunk_list) > 1 else 0
    if o.held_out and len(chunk_list) > 1:
        n_held = max(1, n_held)
    unseen = set(chunk_list[:n_held])
    train, held = [], []
    facts: dict[str, list[Pair]] = {}
    for p in kept:
        facts.setdefault(p.fact, []).append(p)
    several = 0
    for fact, pairs in facts.items():
        if pairs[0].chunk in unseen:
            for p in pairs[:1]:  # one question per fact: its paraphrases would count the fact twice
                p.seen = False
                held.append(p)
            continue
        if len(pairs) >= 2 and o.hold_phrasings:
            several += 1
            if several % 2 == 0:
                held.append(pairs[-1])
                pairs = pairs[:-1]
        train += pairs
    return train, held


def raft_rows(train: list[Pair], pipeline: RagPipeline, by_id: dict[str, Chunk], o: Options) -> list[dict]:
    """The training pairs in the "+ RAG" prompt: the oracle chunk (with probability raft_p) among hard
    distractors, the nearest other chunks to the question; the answer cites the oracle when it is there."""
    return _raft(train, [by_id[p.chunk] for p in train], pipeline, o)


def raft_rows_for_examples(rows: list[dict], pipeline: RagPipeline, o: Options) -> list[dict]:
    """RAFT rows for chat examples written by hand (no chunk of their own): the oracle is the retrieved chunk
    that holds the answer (the first of the top 10 that does), else the top one."""
    pairs, oracles = [], []
    for r in rows:
        user = next((m["content"] for m in r["messages"] if m["role"] == "user"), "")
        answer = r["messages"][-1]["content"]
        hits = pipeline.retrieve(user, k=10)
        if not user or not hits:
            continue
        oracle = next((h.chunk for h in hits if contains_reference(h.chunk.text, answer)), hits[0].chunk)
        pairs.append(Pair(user, answer, "", Path(oracle.source).name, "", "", "given"))
        oracles.append(oracle)
    return _raft(pairs, oracles, pipeline, o)


def _raft(train: list[Pair], oracles: list[Chunk], pipeline: RagPipeline, o: Options) -> list[dict]:
    rng = random.Random(o.seed + 1)
    rows = []
    vectors = pipeline.embedder.embed([p.question for p in train]) if train else []
    for p, v, oracle in zip(train, vectors, oracles):
        distractors = [h for h in pipeline.store.search(v, o.raft_k + 1) if h.chunk is not oracle][: o.raft_k]
        with_oracle = rng.random() < o.raft_p
        hits = distractors[: o.raft_k - 1] + [Hit(oracle, 1.0)] if with_oracle else distractors[: o.raft_k]
        rng.shuffle(hits)
        messages = RagPipeline.messages(p.question, hits)
        cite = next((i for i, h in enumerate(hits, start=1) if h.chunk is oracle), None)
        answer = f"{p.answer} [{cite}]" if cite else p.answer
        rows.append({"messages": messages + [{"role": "assistant", "content": answer}],
                     "metadata": {"source": p.source, "chunk": p.chunk, "quote": p.quote, "fact": p.fact,
                                  "writer": p.writer, "oracle": bool(cite)}})
    return rows


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(path)


if __name__ == "__main__":
    args = sys.argv[1:]
    if "-o" not in args:
        sys.exit("usage: python -m rag.generate DOCS... -o OUT.jsonl")
    i = args.index("-o")
    print("\n".join(generate(args[:i] + args[i + 2:], args[i + 1]).lines()))
