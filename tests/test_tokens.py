"""Tokens: the chat template, which tokens the loss uses, and token statistics."""

import pytest

from engine.data.dataset import DataError, check_files, token_stats, tokenize_example, trained_pieces
from engine.data.formats import Example
from engine.models import load_tokenizer


@pytest.fixture(scope="module")
def tok(tiny_model):
    return load_tokenizer(tiny_model)


def _chat(*turns, weights=None):
    """Turns alternate user / assistant; an odd count starts with a system message."""
    system = len(turns) % 2
    roles = ["system"] * system + ["user", "assistant"] * (len(turns) // 2)
    return Example(messages=[{"role": r, "content": c, "weight": (weights or {}).get(i)}
                             for i, (r, c) in enumerate(zip(roles, turns))])


def _trained_text(tok, ex, train_on="assistant"):
    t = tokenize_example(ex, tok, train_on)
    return tok.decode([i for i, m in zip(t["input_ids"], t["assistant_masks"]) if m])


def test_only_the_answers_and_their_end_marker_are_trained(tok):
    ex = _chat("Be brief.", "How heavy is it?", "It weighs 6.4 kg.", "And the price?", "1,290 euros.")
    trained = _trained_text(tok, ex)
    assert trained.replace("\n", "") == "It weighs 6.4 kg.<|im_end|>1,290 euros.<|im_end|>"
    assert "How heavy" not in trained and "assistant" not in trained


def test_weight_zero_turns_are_not_trained(tok):
    ex = _chat("How heavy is it?", "It weighs 6.4 kg.", "And the price?", "1,290 euros.", weights={1: 0})
    assert _trained_text(tok, ex).replace("\n", "") == "1,290 euros.<|im_end|>"


def test_all_tokens_switch_and_plain_text(tok):
    ex = _chat("Q?", "A.")
    t = tokenize_example(ex, tok, "all")
    assert all(t["assistant_masks"]) and tok.decode(t["input_ids"]).startswith("<|im_start|>user")
    plain = tokenize_example(Example(text="Corpus text.", format="text"), tok)
    assert tok.decode(plain["input_ids"]) == "Corpus text.<|im_end|>" and all(plain["assistant_masks"])


def test_trained_pieces_cover_the_rendered_text(tok):
    pieces = trained_pieces(_chat("Q?", "A."), tok)
    assert "".join(p for p, _ in pieces) == "<|im_start|>user\nQ?<|im_end|>\n<|im_start|>assistant\nA.<|im_end|>\n"
    assert [p for p, used in pieces if used][0] == "A"


def test_a_template_that_does_not_render_prefixes_is_refused(tok):
    tok2 = load_tokenizer(tok.name_or_path)
    tok2.chat_template = ("{{ messages | length }} turns\n{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n"
                          "{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}")
    with pytest.raises(DataError, match="does not render conversations as prefixes"):
        tokenize_example(_chat("Q?", "A."), tok2)


def test_token_stats_count_lengths_and_truncation(tok, tmp_path):
    from conftest import SAMPLE

    report = check_files([SAMPLE / "train.jsonl"])
    stats = token_stats(report.examples, tok, max_length=32)
    assert len(stats.lengths) == 68 and stats.total == sum(stats.lengths)
    assert stats.trained_tokens() == sum(min(n, 32) for n in stats.lengths)
    assert sum(c for _, c in stats.histogram()) == 68
    issue = stats.truncation_issue()
    cut = [n - 32 for n in stats.lengths if n > 32]
    assert issue is not None and f"{len(cut)} examples are longer than max_length 32" in str(issue)
    assert token_stats(report.examples, tok, 4096).truncation_issue() is None
    assert "about" in stats.sentences(tokens_per_s=100)[1] and "min per epoch" in stats.sentences(100)[1]


def test_stats_of_a_big_dataset_come_from_a_scaled_sample(tok):
    exs = [Example(text="word " * (i % 50 + 1), format="text") for i in range(1000)]
    full = token_stats(exs, tok, 64)
    sampled = token_stats(exs, tok, 64, sample=200)
    assert len(sampled.lengths) == 200 and "estimated from a seeded sample of 200" in sampled.sentences()[0]
    assert sampled.sentences()[0].startswith("1000 examples")
    assert abs(sampled.total - full.total) / full.total < 0.1
