"""Chat JSONL reading: the sample loads, and each malformed file is named by line and field."""

import json

import pytest

from conftest import PEER_DATA, SAMPLE
from engine.data import DataError, read_chat_jsonl, to_prompt_completion

GOOD = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}


def test_sample_loads_with_its_examples():
    ds = read_chat_jsonl(SAMPLE / "train.jsonl")
    assert len(ds) >= 60
    assert ds.preview(2)[0][1].startswith("Who founded")


def test_prompt_completion_split_keeps_the_last_answer_for_the_loss():
    ex = {"messages": [{"role": "system", "content": "S"}, *GOOD["messages"]]}
    pc = to_prompt_completion(ex)
    assert [m["role"] for m in pc["prompt"]] == ["system", "user"]
    assert pc["completion"] == [{"role": "assistant", "content": "Hello"}]


@pytest.mark.parametrize("bad_line, expected", [
    ('{"messages": [', "line 3: not valid JSON"),
    ('[1, 2]', "line 3: expected a JSON object"),
    ('{"text": "hello"}', "line 3: no \"messages\" field"),
    ('{"messages": []}', "line 3: \"messages\" must be a non-empty list"),
    ('{"messages": [{"content": "x"}]}', "line 3: messages[0] has no \"role\""),
    ('{"messages": [{"role": "user"}]}', "line 3: messages[0] has no \"content\""),
    ('{"messages": [{"role": "robot", "content": "x"}]}', "line 3: messages[0].role 'robot'"),
    ('{"messages": [{"role": "user", "content": "  "}, {"role": "assistant", "content": "x"}]}',
     "line 3: messages[0].content is empty"),
    ('{"messages": [{"role": "user", "content": "x"}]}', "line 3: the conversation must end with an assistant"),
    ('{"messages": [{"role": "assistant", "content": "x"}]}', "line 3: the conversation has no user message"),
    ('{"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "x"}]}',
     "line 3: messages[0].content must be text"),
])
def test_malformed_line_is_named(write_jsonl, bad_line, expected):
    path = write_jsonl([GOOD, GOOD, bad_line, GOOD])
    with pytest.raises(DataError) as err:
        read_chat_jsonl(path)
    assert f"data.jsonl {expected}" in str(err.value)
    assert "\n" not in str(err.value)


def test_non_utf8_byte_names_line_and_byte(tmp_path):
    path = tmp_path / "latin.jsonl"
    path.write_bytes(json.dumps(GOOD).encode() + b"\n" + b'{"messages": "caf\xe9"}\n')
    with pytest.raises(DataError, match=r"latin.jsonl line 2: byte \d+ is not UTF-8"):
        read_chat_jsonl(path)


def test_empty_file_and_missing_file(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(DataError, match="no examples found"):
        read_chat_jsonl(tmp_path / "empty.jsonl")
    with pytest.raises(DataError, match="no such file"):
        read_chat_jsonl(tmp_path / "nope.jsonl")


def test_a_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(GOOD).encode() + b"\r\n")
    assert len(read_chat_jsonl(path)) == 1


@pytest.mark.skipif(not PEER_DATA.exists(), reason="shared/peer-data is not beside the checkout")
def test_another_tools_format_is_refused_naming_the_line():
    # Plain-text rows (continued pre-training) are not chat examples: the first line is named.
    with pytest.raises(DataError, match=r"c4_demo.jsonl line 1: no \"messages\" field \(found 'text'\)"):
        read_chat_jsonl(PEER_DATA / "c4_demo.jsonl")
