"""GRPO rewards a program can check (engine/train/rewards.py), each on hand-written completions: right, wrong and
malformed; the refusals before a run; the LLM judge against a live `studio serve`."""


import pytest

from conftest import SAMPLE, train
from engine.infer.batching import run_here
from engine.infer.serve import load_models, start
from engine.train.config import RunConfig
from engine.train.distributed import free_port
from engine.train.rewards import RewardError, reward_from, rewards_from, total


def score(spec, completions, references=None):
    return reward_from(spec)(None, completions, answer=references)


def test_format_presets_and_patterns():
    tags = {"kind": "format", "preset": "answer_tags"}
    assert score(tags, ["<answer>4</answer>", "4", "<answer>4", " <answer>\n4\n</answer>\n"]) == [1, 0, 0, 1]
    think = {"kind": "format", "preset": "think_answer"}
    assert score(think, ["<think>2+2</think><answer>4</answer>", "<answer>4</answer>"]) == [1, 0]
    assert score({"kind": "format", "pattern": r"\d+ kg"}, ["6 kg", "six kg"]) == [1, 0]


def test_exact_and_contains_match_normalised_answers():
    exact = {"kind": "exact"}
    assert score(exact, ["<answer>Vellmar.</answer>", "vellmar", "It is in Vellmar", ""],
                 ["Vellmar"] * 4) == [1, 1, 0, 0]
    assert score({"kind": "contains"}, ["It is in Vellmar!", "Berlin"], ["vellmar", "vellmar"]) == [1, 0]
    assert score(exact, ["Vellmar"], [None]) == [None]  # no reference: trl leaves the function out for the row


def test_numeric_match_with_a_tolerance():
    spec = {"kind": "numeric", "tolerance": 0.05}
    assert score(spec, ["The robot weighs 6.42 kg", "<answer>1,290</answer>", "about seven", "6.5"],
                 ["6.4", "1290 euros", "7", "6.4"]) == [1, 1, 0, 0]
    assert score({"kind": "numeric", "relative": 0.1}, ["105"], ["100"]) == [1]


def test_length_and_json():
    assert score({"kind": "length", "target": 4}, ["one two three four", "one two", "", " ".join(["w"] * 9)]) == \
        [1.0, 0.5, 0.0, 0.0]
    schema = {"type": "object", "properties": {"kg": {"type": "number"}}, "required": ["kg"]}
    assert score({"kind": "json", "schema": schema}, ['{"kg": 6.4}', '{"kg": "six"}', "{kg: 6.4", "[]"]) == \
        [1, 0, 0, 0]
    assert score({"kind": "json"}, ['<answer>{"a": 1}</answer>', "not json"]) == [1, 0]


def test_chat_completions_and_weights_add_up():
    rewards = rewards_from([{"kind": "format", "preset": "answer_tags", "weight": 0.5},
                            {"kind": "exact", "weight": 2.0}])
    chats = [[{"role": "assistant", "content": "<answer>4</answer>"}], [{"role": "assistant", "content": "4"}],
             [{"role": "assistant", "content": "<answer>5</answer>"}]]
    assert total(rewards, chats, ["4", "4", "4"]) == [2.5, 2.0, 0.5]
    assert [r.__name__ for r in rewards] == ["format", "exact"]  # the names trl logs


def test_settings_that_cannot_work_are_refused_in_one_sentence(tmp_path, monkeypatch):
    cases = [([], "give at least one reward"),
             ([{"kind": "magic"}], "'magic' is not a reward kind"),
             ([{"kind": "format", "pattern": "(["}], "is not a regular expression"),
             ([{"kind": "format"}], "give a pattern, or a preset"),
             ([{"kind": "length"}], "give a target"),
             ([{"kind": "json", "schema": {"type": 5}}], "is not a JSON schema"),
             ([{"kind": "exact"}, {"kind": "exact"}], "exact named twice"),
             ([{"kind": "judge"}], "give the endpoint's url")]
    for specs, said in cases:
        with pytest.raises(RewardError, match=said):
            rewards_from(specs)
    with pytest.raises(RewardError, match="numeric compares with a reference answer, and this data has none"):
        rewards_from([{"kind": "format", "preset": "answer_tags"}, {"kind": "numeric"}], references=False)


def test_a_custom_reward_runs_from_a_file_but_never_from_the_page_or_the_demo(tmp_path, monkeypatch):
    code = tmp_path / "mine.py"
    code.write_text("def short(text, reference):\n    return 1.0 if len(text) < 5 else 0.0\n")
    spec = {"kind": "custom", "path": f"{code}:short"}
    assert reward_from(spec)(None, ["ok", "far too long"]) == [1.0, 0.0]
    with pytest.raises(RewardError, match="never from the web page"):
        reward_from(spec, from_page=True)
    monkeypatch.setenv("STUDIO_DEMO", "1")
    with pytest.raises(RewardError, match="public demo runs no code"):
        reward_from(spec)
    monkeypatch.delenv("STUDIO_DEMO")
    with pytest.raises(RewardError, match="has no function nope"):
        reward_from({"kind": "custom", "path": f"{code}:nope"})


def test_the_judge_asks_a_live_studio_serve_and_scales_its_score(tiny_model, tmp_path):
    run = train(RunConfig(model=tiny_model, data=str(SAMPLE / "train.jsonl"), max_steps=2, batch_size=8,
                          max_length=96, save_steps=100), tmp_path / "runs")
    models = load_models([run.id], root=tmp_path / "runs")
    port = free_port()
    server = start(models, port=port)
    try:
        judge = reward_from({"kind": "judge", "url": f"http://127.0.0.1:{port}/v1", "model": run.id,
                             "rubric": "Is the weight right?"})
        scores = run_here(judge, None, ["6.4 kg", "It weighs a ton"], answer=["6.4 kg", "6.4 kg"])
    finally:
        server.should_exit = True
    # the endpoint's JSON mode holds the judge to {"score": 0..10}: each answer is read, scaled to 0..1
    assert len(scores) == 2 and all(s is not None and 0.0 <= s <= 1.0 for s in scores)
    assert all(round(s * 10) == s * 10 for s in scores)  # whole points out of ten, as the schema asks
    down = reward_from({"kind": "judge", "url": f"http://127.0.0.1:{free_port()}/v1", "model": "x"})
    with pytest.raises(RewardError, match="did not answer"):
        down(None, ["6.4 kg"])
