"""Four columns, streamed and batch-evaluated, with a stand-in model and the real retrieval."""

import csv
import json

import pytest

from conftest import SAMPLE
from rag.compare import COLUMNS, compare, one_by_one, stream_compare
from rag.evaluate import (contains_reference, evaluate, exact_match, format_summary, groundedness, load_questions,
                          rouge_l, token_f1, write_csv, write_json)
from rag.pipeline import RagPipeline


@pytest.fixture(scope="module")
def pipeline():
    rag = RagPipeline()
    rag.index([SAMPLE / "docs"])
    return rag


class Out:
    def __init__(self, text):
        self.text, self.prompt_tokens, self.answer_tokens, self.seconds = text, 10, len(text.split()), 0.01


def echo(name):
    """A stand-in model: answers with its name and the first source line it was given, if any."""
    def generate(messages):
        content = messages[-1]["content"]
        line = next((ln for ln in content.splitlines() if ln.startswith("[1]")), content)
        return Out(f"{name}: {line.split(') ', 1)[-1]}")
    return generate


def test_compare_gives_four_columns_with_sources_under_rag_only(pipeline):
    answers = compare("How heavy is the Tilly T2?", pipeline, one_by_one(echo("base"), echo("tuned")))
    assert [a.column for a in answers] == list(COLUMNS)
    assert [bool(a.hits) for a in answers] == [False, True, False, True]
    assert answers[1].text == "base: The Tilly T2 weighs 6.4 kg and measures 58 cm long, 44 cm wide and 26 cm high."
    assert all(a.seconds >= 0 for a in answers)
    assert len(compare("x", pipeline, one_by_one(echo("base")))) == 2


def test_stream_compare_yields_growing_text_then_the_final_answer(pipeline):
    def streaming(messages):
        for i in range(1, 4):
            yield "word " * i
        yield Out("word word word [1]")

    seen = list(stream_compare("How heavy is the Tilly T2?", pipeline, one_by_one(streaming)))
    columns = [a.column for a, done in seen if done]
    assert columns == ["base", "base + RAG"]
    partial = [a.text for a, done in seen if not done and a.column == "base"]
    assert partial == ["word ", "word word ", "word word word "]
    final = [a for a, done in seen if done][1]
    assert final.answer_tokens == 4 and final.cited() == {1}


def test_metrics():
    assert token_f1("The Tilly T2 weighs 6.4 kg.", "The Tilly T2 weighs 6.4 kg") == 1.0
    assert token_f1("It weighs 6.4 kg", "The Tilly T2 weighs 6.4 kg.") == pytest.approx(2 * 0.75 * 0.6 / 1.35)
    assert token_f1("It costs 1,290 euros.", "1,290 euros") == pytest.approx(2 / 3)  # "1,290" stays one token
    assert exact_match("6.4 kg.", "6.4 KG") == 1.0
    assert rouge_l("the robot weighs 6.4 kg", "robot weighs exactly 6.4 kg") == pytest.approx(8 / 9)  # LCS 4 of 4 / 5
    assert rouge_l("kg 6.4 weighs", "weighs 6.4 kg") == pytest.approx(1 / 3)
    assert contains_reference("The Tilly T2 weighs 6.4 kg and measures 58 cm.", "The Tilly T2 weighs 6.4 kg.")
    assert not contains_reference("The Tilly T2 weighs 7.1 kg.", "The Tilly T2 weighs 6.4 kg.")
    assert groundedness("It weighs 6.4 kg", "The Tilly T2 weighs 6.4 kg.") == 1.0
    assert groundedness("It weighs 9 tonnes", "The Tilly T2 weighs 6.4 kg.") == pytest.approx(1 / 3)


def test_batch_evaluation_on_the_bundled_questions(pipeline, tmp_path):
    questions = load_questions(SAMPLE / "eval.jsonl")
    seen = []
    result = evaluate(questions, pipeline, one_by_one(echo("base"), echo("tuned")), progress=lambda i, n: seen.append(i))
    summary = result["summary"]
    assert list(summary) == list(COLUMNS) and seen[-1] == 20
    assert summary["base + RAG"]["hit"] >= 0.9 and summary["base"]["hit"] is None
    # an answer copied from the top passage is better grounded and closer to the reference than the question
    assert summary["base + RAG"]["grounded"] > 0.9
    assert summary["base + RAG"]["f1"] > summary["base"]["f1"]
    assert all(-1 <= r["semantic"] <= 1 for r in result["rows"])
    table = format_summary(summary)
    assert table.splitlines()[0].split()[:5] == ["column", "correct", "judged", "token", "F1"]  # correctness first
    assert len(table.splitlines()) == 5 and summary["base + RAG"]["correct"] > summary["base"]["correct"]
    write_csv(result["rows"], tmp_path / "rows.csv")
    write_json(result, tmp_path / "result.json")
    rows = list(csv.DictReader(open(tmp_path / "rows.csv")))
    assert len(rows) == 80 and rows[1]["column"] == "base + RAG" and rows[1]["sources"]
    assert json.loads((tmp_path / "result.json").read_text())["summary"]["fine-tuned"]["f1"] == summary["fine-tuned"]["f1"]


def test_question_files_name_their_bad_line(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text('{"question": "a", "answer": "b"}\n{"question": "c"}\n')
    with pytest.raises(ValueError, match=r"q.jsonl line 2: needs \"question\" and \"answer\""):
        load_questions(path)
    csv_path = tmp_path / "q.csv"
    csv_path.write_text("question,answer\nWho?,Aiko\n")
    assert load_questions(csv_path) == [{"question": "Who?", "answer": "Aiko"}]


def test_an_answer_equal_to_the_reference_scores_full_marks(pipeline):
    questions = load_questions(SAMPLE / "eval.jsonl")[:3]
    truth = {q["question"]: q["answer"] for q in questions}

    def oracle(messages):
        asked = messages[-1]["content"].rsplit("Question: ", 1)[-1]
        return Out(truth[asked])

    summary = evaluate(questions, pipeline, one_by_one(oracle, oracle))["summary"]
    for column in COLUMNS:
        assert summary[column]["f1"] == summary[column]["em"] == summary[column]["rouge_l"] == 1.0
        assert summary[column]["semantic"] > 0.99


def test_a_correct_long_answer_scores_correct_and_a_fluent_wrong_one_does_not():
    """Issue 42: token F1 scored "The railway carried 412,000 passengers in 2023." 0.29 against its reference
    and a terse wrong answer higher. The primary score asks whether the answer holds the reference's fact."""
    from rag.evaluate import correct

    cases = [  # reference, a right answer in more words, a fluent wrong one that shares more of its words
        ("412,000 passengers", "The railway carried 412,000 passengers in 2023, more than ever before.",
         "The railway carried 214,000 passengers."),
        ("Ilse Marchetti", "The engineer who began the line in 1888 was Ilse Marchetti.",
         "Ilse Weber began the line."),
        ("It weighs 6.4 kg.", "The Tilly T2 weighs 6.4 kilograms with its battery.", "It weighs 6.4 km."),
        ("The charging station is called the Nest.", "Tilly docks at a charging station known as the Nest.",
         "The charging station is called the Burrow."),
    ]
    for reference, right, wrong in cases:
        assert correct(right, reference) == 1.0, (reference, right)
        assert correct(wrong, reference) == 0.0, (reference, wrong)
    assert token_f1(cases[0][2], cases[0][0]) > 0 and correct(cases[0][2], cases[0][0]) == 0.0


def test_the_primary_score_is_correctness_and_a_judge_decides_where_one_is_given(pipeline):
    questions = load_questions(SAMPLE / "eval.jsonl")[:5]
    truth = {q["question"]: q["answer"] for q in questions}

    def wordy(messages):  # the reference inside a longer sentence: correct, with a low token F1
        return Out("Here is what I know about that: " + truth[messages[-1]["content"].rsplit("Question: ", 1)[-1]]
                   + " I hope this helps you with your garden robot.")

    result = evaluate(questions, pipeline, one_by_one(wordy, wordy))
    assert result["primary"] == "correct" and result["judge"] is None
    assert result["summary"]["base"]["correct"] == 1.0 and result["summary"]["base"]["f1"] < 0.7
    asked = []

    def judge(question, reference, answer):
        asked.append(question)
        return 0.0 if "garden robot" in answer and question == questions[0]["question"] else 1.0

    judge.name = "a stand-in judge"
    judged = evaluate(questions, pipeline, one_by_one(wordy, wordy), judge=judge)
    assert judged["primary"] == "judged" and judged["judge"] == "a stand-in judge" and len(asked) == 4 * 5
    assert judged["summary"]["base"]["judged"] == 0.8 and judged["summary"]["base"]["correct"] == 1.0
    assert [d["metric"] for d in judged["differences"]][:2] == ["correct", "judged"]

def test_intervals_and_paired_differences_say_how_sure(pipeline, tmp_path):
    """An oracle against a model that repeats the question: a clear, paired difference with an interval;
    two stand-ins that answer alike cannot be told apart; three questions are too few."""
    from rag.evaluate import bootstrap_interval, format_confidence, write_summary_csv

    questions = load_questions(SAMPLE / "eval.jsonl")
    truth = {q["question"]: q["answer"] for q in questions}

    def oracle(messages):
        return Out(truth[messages[-1]["content"].rsplit("Question: ", 1)[-1]])

    def parrot(messages):
        return Out(messages[-1]["content"].rsplit("Question: ", 1)[-1])

    result = evaluate(questions, pipeline, one_by_one(parrot, oracle))
    ci = result["intervals"]["fine-tuned"]["f1"]
    assert ci == [1.0, 1.0]  # every answer right: no spread
    low, high = result["intervals"]["base"]["f1"]
    assert low <= result["summary"]["base"]["f1"] <= high and high - low > 0.01
    tuned_vs_base = next(d for d in result["differences"]
                         if (d["a"], d["b"], d["metric"]) == ("fine-tuned", "base", "f1"))
    assert tuned_vs_base["low"] > 0 and tuned_vs_base["questions"] == 20
    assert tuned_vs_base["verdict"].startswith("fine-tuned beats base on token F1 by ")
    alike = next(d for d in result["differences"]
                 if (d["a"], d["b"], d["metric"]) == ("fine-tuned + RAG", "fine-tuned", "f1"))
    assert alike["difference"] == 0 and "cannot be told apart" in alike["verdict"]
    # the same answers give the same interval (a fixed seed), and it is in the JSON and the summary CSV
    assert evaluate(questions, pipeline, one_by_one(parrot, oracle))["intervals"] == result["intervals"]
    write_summary_csv(result, tmp_path / "summary.csv")
    rows = list(csv.DictReader(open(tmp_path / "summary.csv")))
    mean = next(r for r in rows if r["kind"] == "mean" and r["column"] == "base" and r["metric"] == "f1")
    assert float(mean["low"]) == pytest.approx(low) and mean["questions"] == "20"
    assert any(r["kind"] == "difference" and r["verdict"] == tuned_vs_base["verdict"] for r in rows)
    assert tuned_vs_base["verdict"] in format_confidence(result)
    few = evaluate(questions[:3], pipeline, one_by_one(parrot, oracle))
    assert few["intervals"]["base"]["f1"] is None
    assert all("too few" in d["verdict"] for d in few["differences"])
    # the interval of a known sample: the mean of 0/1 values, 10 of 20, lies well inside (0.25, 0.75)
    box = bootstrap_interval([0, 1] * 10)
    assert 0.2 < box[0] < 0.5 < box[1] < 0.8


def test_evaluation_batches_several_questions_and_keeps_its_progress(pipeline):
    """A batch answerer gets several questions' columns at once; progress still counts every question."""
    calls, seen = [], []

    class Batch(one_by_one):
        def batch_rows(self, tokens=1024):
            return 8  # two questions of four columns

        def __call__(self, jobs):
            calls.append(len(jobs))
            yield from super().__call__(jobs)

    questions = load_questions(SAMPLE / "eval.jsonl")[:5]
    result = evaluate(questions, pipeline, Batch(echo("base"), echo("tuned")), progress=lambda i, n: seen.append(i))
    assert calls == [8, 8, 4] and seen == [1, 2, 3, 4, 5]
    assert [r["column"] for r in result["rows"][:4]] == list(COLUMNS) and len(result["rows"]) == 20
