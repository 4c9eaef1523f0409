"""Reading data in every supported shape, and one clear sentence for each kind of bad file."""

import json

import pytest

from conftest import PEER_DATA, SAMPLE
from engine.data.dataset import (DataError, check_files, export_chat_jsonl, load_examples, read_chat_jsonl,
    split_examples)
from engine.data.formats import guess_mapping

U = {"role": "user", "content": "What is the Tilly?"}
A = {"role": "assistant", "content": "A garden robot."}
S = {"role": "system", "content": "Be brief."}
GOOD = {"messages": [U, A]}
J = json.dumps


def test_sample_loads_with_its_examples():
    ds = read_chat_jsonl(SAMPLE / "train.jsonl")
    assert len(ds) >= 60
    assert ds.preview(2)[0][1].startswith("Who founded")
    assert check_files([SAMPLE / "train.jsonl"]).warnings == []


# ---- every valid format gives the same internal examples ------------------------------

def _write(tmp_path, name, content):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _parquet(tmp_path, rows):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "data.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


SAME = [
    ("chat.jsonl", J(GOOD) + "\n" + J({"messages": [S, U, A]}) + "\n"),
    ("chat.json", J([GOOD, {"messages": [S, U, A]}])),
    ("sharegpt.jsonl", J({"conversations": [{"from": "human", "value": U["content"]},
                                            {"from": "gpt", "value": A["content"]}]}) + "\n"
     + J({"system": "Be brief.", "conversations": [{"from": "human", "value": U["content"]},
                                                   {"from": "gpt", "value": A["content"]}]}) + "\n"),
    ("alpaca.json", J([{"instruction": U["content"], "input": "", "output": A["content"]},
                       {"instruction": U["content"], "output": A["content"], "system": "Be brief."}])),
    ("completion.jsonl", J({"prompt": U["content"], "completion": A["content"]}) + "\n"
     + J({"prompt": [S, U], "completion": [A]}) + "\n"),
    ("table.csv", f"prompt,completion,system\n\"{U['content']}\",{A['content']},\n"
                  f"\"{U['content']}\",{A['content']},Be brief.\n"),
    ("table.tsv", f"instruction\toutput\tsystem\n{U['content']}\t{A['content']}\t\n"
                  f"{U['content']}\t{A['content']}\tBe brief.\n"),
    ("parquet", None),
]


@pytest.mark.parametrize("name, content", SAME, ids=[n for n, _ in SAME])
def test_every_format_gives_the_same_examples(tmp_path, name, content):
    if name == "parquet":
        path = _parquet(tmp_path, [{"messages": [U, A]}, {"messages": [S, U, A]}])
    else:
        path = _write(tmp_path, name, content)
    report = check_files([path])
    assert report.errors == [], report.lines()
    assert [e.to_chat() for e in report.examples] == [GOOD, {"messages": [S, U, A]}]


def test_alpaca_input_and_history_become_turns(tmp_path):
    path = _write(tmp_path, "a.json", J([{"instruction": "Translate", "input": "Hallo", "output": "Hello",
                                          "history": [["Hi", "Hey"]]}]))
    [ex] = load_examples(path)
    assert [(m["role"], m["content"]) for m in ex.messages] == [
        ("user", "Hi"), ("assistant", "Hey"), ("user", "Translate\n\nHallo"), ("assistant", "Hello")]


def test_plain_text_and_txt_files_are_corpus_examples(tmp_path):
    txt = _write(tmp_path, "corpus.txt", "First paragraph\nstill first.\n\n\nSecond one.\n")
    exs = load_examples(txt)
    assert [e.text for e in exs] == ["First paragraph\nstill first.", "Second one."]
    assert exs[1].where == "corpus.txt line 5"
    assert load_examples(_write(tmp_path, "t.jsonl", J({"text": "Hello"}) + "\n"))[0].text == "Hello"


def test_several_files_at_once_and_weights(tmp_path):
    a = _write(tmp_path, "a.jsonl", J({"messages": [U, {**A, "weight": 0}, U, A]}) + "\n")
    b = _write(tmp_path, "b.csv", "question,answer\nq,a\n")
    report = check_files([a, b], mapping=None)
    assert "b.csv row 2: no known format" in str(report.errors[0])
    report = check_files([a, b], mapping={"prompt": "question", "completion": "answer"})
    assert len(report.examples) == 2 and not report.errors
    assert report.examples[0].messages[1]["weight"] == 0


def test_column_mapping_is_guessed_from_names():
    assert guess_mapping(["id", "Question", "Answer"]) == {"prompt": "Question", "completion": "Answer"}
    assert guess_mapping(["query", "response", "system"]) == {"prompt": "query", "completion": "response",
                                                               "system": "system"}
    assert guess_mapping(["a", "b"]) is None


# ---- malformed files: each its own sentence, naming the line or row --------------------

M = [  # (file name, content, expected sentence fragment)
    ("bad-json.jsonl", J(GOOD) + "\n{\"messages\": [\n", "bad-json.jsonl line 2: not valid JSON"),
    ("list-line.jsonl", J(GOOD) + "\n[1, 2]\n", "list-line.jsonl line 2: expected a JSON object, got list"),
    ("no-format.jsonl", J({"question": "q"}) + "\n", "no-format.jsonl line 1: no known format (found 'question')"),
    ("messages-not-list.jsonl", J({"messages": "hi"}) + "\n", "line 1: \"messages\" must be a list of messages"),
    ("messages-empty.jsonl", J({"messages": []}) + "\n", "line 1: \"messages\" is an empty list"),
    ("message-not-object.jsonl", J({"messages": ["hi"]}) + "\n", "line 1: messages[0] must be an object"),
    ("no-role.jsonl", J({"messages": [{"content": "x"}, A]}) + "\n", "line 1: messages[0] has no \"role\""),
    ("no-content.jsonl", J({"messages": [U, {"role": "assistant"}]}) + "\n", "line 1: messages[1] has no \"content\""),
    ("unknown-role.jsonl", J({"messages": [{"role": "robot", "content": "x"}, A]}) + "\n",
     "line 1: messages[0].role 'robot' is not one of system, user, assistant"),
    ("empty-content.jsonl", J({"messages": [{"role": "user", "content": "  "}, A]}) + "\n",
     "line 1: messages[0].content is empty"),
    ("no-assistant.jsonl", J({"messages": [S, U]}) + "\n", "line 1: the conversation has no assistant message"),
    ("no-user.jsonl", J({"messages": [S, A]}) + "\n", "line 1: the conversation has no user message"),
    ("ends-with-user.jsonl", J({"messages": [U, A, U]}) + "\n",
     "line 1: the conversation must end with an assistant message"),
    ("content-number.jsonl", J({"messages": [{"role": "user", "content": 5}, A]}) + "\n",
     "line 1: messages[0].content must be text, got int"),
    ("bad-weight.jsonl", J({"messages": [U, {**A, "weight": 0.5}]}) + "\n", "line 1: messages[1].weight must be 0 or 1"),
    ("all-weight-zero.jsonl", J({"messages": [U, {**A, "weight": 0}]}) + "\n",
     "line 1: every assistant message has weight 0"),
    ("image-part.jsonl", J({"messages": [{"role": "user", "content": [{"type": "image_url"}]}, A]}) + "\n",
     "line 1: messages[0].content[0] is a 'image_url' part"),
    ("sharegpt-bad-from.jsonl", J({"conversations": [{"from": "alien", "value": "x"}]}) + "\n",
     "line 1: conversations[0].from 'alien' is not one of human, gpt, system"),
    ("sharegpt-no-value.jsonl", J({"conversations": [{"from": "human"}]}) + "\n",
     "line 1: conversations[0] needs \"from\" and \"value\""),
    ("sharegpt-tool.jsonl", J({"conversations": [{"from": "human", "value": "x"},
                                                {"from": "function_call", "value": "{}"}]}) + "\n",
     "line 1: conversations[1].from 'function_call' is a tool turn"),
    ("alpaca-history.json", J([{"instruction": "i", "output": "o", "history": ["x"]}]),
     "alpaca-history.json item 1: history[0] must be a [question, answer] pair"),
    ("preference.json", J([{"conversations": [], "chosen": {}, "rejected": {}}]),
     "preference.json item 1: \"conversations\" must be a non-empty list of turns"),
    ("completion-no-prompt.jsonl", J({"completion": "x"}) + "\n", "line 1: has \"completion\" but no \"prompt\""),
    ("top-level.json", J({"a": 1}), "top-level.json item 1: no known format (found 'a')"),
    ("top-level-number.json", "42", "top-level-number.json: the top level must be a list of objects, got int"),
    ("broken.json", "[{\"messages\": [}\n]", "broken.json line 1: not valid JSON"),
    ("latin1.jsonl", J(GOOD).encode() + b"\n" + b'{"messages": "caf\xe9"}\n',
     "latin1.jsonl line 2: byte 136 (column 18) is not UTF-8 text"),
    ("short-row.csv", "prompt,completion\nq,a\nq,a,extra\n", "short-row.csv row 3: has 3 cells but the header has 2"),
    ("no-completion.csv", "prompt,completion\nq,\n", "no-completion.csv row 2: has \"prompt\" but no \"completion\""),
    ("empty.jsonl", "\n\n", "no examples found in empty.jsonl"),
    ("empty-text.jsonl", J({"text": " "}) + "\n", "line 1: text is empty"),
    ("mixed-text.jsonl", J(GOOD) + "\n" + J({"text": "corpus"}) + "\n",
     "mixed-text.jsonl line 2: mixed formats in one file: this is text, the file began as chat"),
    ("picture.png", b"\x89PNG\r\n", "picture.png: .png cannot be read"),
]


@pytest.mark.parametrize("name, content, expected", M, ids=[m[0] for m in M])
def test_malformed_file_gets_its_own_sentence(tmp_path, name, content, expected):
    report = check_files([_write(tmp_path, name, content)])
    assert report.errors, report.lines()
    first = str(report.errors[0])
    assert expected in first, first
    assert "\n" not in first and first.endswith(".")
    with pytest.raises(DataError, match="^" + first[:20].replace("(", r"\(").replace("[", r"\[")):
        load_examples(tmp_path / name)


def test_malformed_messages_are_all_different():
    assert len({m[2] for m in M}) == len(M) >= 25


def test_a_bad_parquet_file_is_named(tmp_path):
    report = check_files([_write(tmp_path, "bad.parquet", b"PAR1 not really")])
    assert str(report.errors[0]).startswith("bad.parquet: not a readable Parquet file")


@pytest.mark.parametrize("content, warning", [
    (b"\xef\xbb\xbf" + J(GOOD).encode() + b"\n", "starts with a byte-order mark"),
    (J(GOOD).encode() + b"\r\n" + J({"messages": [S, U, A]}).encode() + b"\r\n",
     "2 lines end with Windows line ends"),
    ((J(GOOD) + "\n" + J(GOOD) + "\n").encode(), "w.jsonl line 2: repeats w.jsonl line 1"),
    (J({**GOOD, "colour": "red"}).encode(), "w.jsonl line 1: unknown key 'colour' was ignored"),
    (J({"messages": [{**U, "mood": "happy"}, A]}).encode(), "line 1: unknown key 'messages[0].mood' was ignored"),
    (J(GOOD).encode(), "only 1 examples; fine-tuning usually needs 20"),
    ((J(GOOD) + "\n" + J({"prompt": "p", "completion": "c"}) + "\n").encode(),
     "line 2: mixed formats in one file: this is completion, the file began as chat"),
])
def test_warnings_do_not_block(tmp_path, content, warning):
    report = check_files([_write(tmp_path, "w.jsonl", content)])
    assert not report.errors and report.ok
    assert any(warning in str(w) for w in report.warnings), report.lines()


# ---- peer data: real files from another tool ------------------------------------------

peer = pytest.mark.skipif(not PEER_DATA.exists(), reason="shared/peer-data is not beside the checkout")


@peer
@pytest.mark.parametrize("name, count, fmt", [
    ("alpaca_en_demo.json", 999, "alpaca"), ("alpaca_zh_demo.json", 1000, "alpaca"),
    ("identity.json", 91, "alpaca"), ("c4_demo.jsonl", 300, "text"), ("wiki_demo.txt", None, "text"),
    ("v1_sft_demo.jsonl", 500, "chat"),
])
def test_peer_datasets_are_read(name, count, fmt):
    report = check_files([PEER_DATA / name])
    assert report.errors == [], report.lines()[:5]
    assert report.formats().most_common(1)[0][0] == fmt
    if count:
        assert len(report.examples) == count
    if name == "alpaca_zh_demo.json":
        assert any("\u4e00" <= ch <= "\u9fff" for ch in report.examples[0].messages[0]["content"])
    if name == "identity.json":
        assert "{{name}}" in report.examples[0].messages[1]["content"]


@peer
@pytest.mark.parametrize("name, expected", [
    ("glaive_toolcall_en_demo.json", "is a tool turn; tool calls are not trained here"),
])
def test_peer_datasets_that_cannot_be_trained_are_refused_clearly(name, expected):
    report = check_files([PEER_DATA / name])
    assert expected in str(report.errors[0])


# ---- split and export -----------------------------------------------------------------

def test_split_is_seeded_and_disjoint():
    items = list(range(100))
    train, val = split_examples(items, 0.1, seed=3)
    assert len(val) == 10 and sorted(train + val) == items
    assert split_examples(items, 0.1, seed=3) == (train, val)
    assert split_examples(items, 0.1, seed=4)[1] != val
    assert split_examples(items, 0.0, seed=3) == (items, [])


def test_export_round_trips_as_chat_jsonl(tmp_path):
    src = _write(tmp_path, "a.json", J([{"instruction": "i", "output": "o"}]))
    out = tmp_path / "out.jsonl"
    assert export_chat_jsonl(load_examples(src), out) == 1
    assert json.loads(out.read_text()) == {"messages": [{"role": "user", "content": "i"},
                                                        {"role": "assistant", "content": "o"}]}
    assert [e.to_chat() for e in load_examples(out)] == [json.loads(out.read_text())]


def test_a_hub_dataset_id_offline_is_one_sentence(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    report = check_files(["someone/some-dataset"])
    assert [str(e) for e in report.errors] == [
        "someone/some-dataset: is not a file here, and the Hugging Face Hub cannot be reached to load it as a "
        "dataset id."]
