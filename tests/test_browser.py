"""The studio in a real browser: headless Chromium driven by Playwright against `studio`.

Path: load the sample -> train a few LoRA steps (the curve grows while the run is going,
and a reload shows the same run) -> four non-empty answers in Compare, with sources.
Runs on the tiny test model so it takes seconds; the app is started the way the README
starts it, with STUDIO_MODEL pointing the form at that model (tests/conftest.py `studio_app`, one app
shared with test_browser_files.py and test_browser_objectives.py).
"""

import json
import re
import time
from pathlib import Path

import pytest

from conftest import SAMPLE, SHOTS


pytestmark = pytest.mark.browser


def _plot_points(page) -> int:
    """Steps on the loss plot, read from the x-axis range Vega states for screen readers."""
    label = page.locator("#loss-plot [aria-roledescription=axis]").first.get_attribute("aria-label") or ""
    m = re.search(r"values from (\S+) to (\S+)", label)
    if not m or "Infinity" in label:
        return 0
    return int(float(m.group(2).replace(",", "")) - float(m.group(1).replace(",", ""))) + 1


def test_sample_train_compare_in_the_browser(app_url, browser, tmp_path):
    from playwright.sync_api import expect

    SHOTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(app_url)

    # Data: a malformed upload is named by line; the bundled sample loads with its preview.
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n'
                   '{"messages": [{"role": "user", "content": "hi"}\n')
    page.locator("#data-upload input[type=file]").set_input_files(str(bad))
    expect(page.locator("#data-status")).to_contain_text("bad.jsonl line 2: not valid JSON", timeout=20000)
    page.get_by_role("button", name="Use the bundled sample").click()
    expect(page.locator("#data-status")).to_contain_text("68 examples", timeout=20000)
    expect(page.locator("#data-preview")).to_contain_text("Who founded Zorvane Robotics?")
    expect(page.locator("#token-stats")).to_contain_text("tokens per epoch", timeout=30000)
    page.get_by_text("What gets trained").click()
    expect(page.locator("#trained-view")).to_contain_text("Zorvane Robotics was founded by", timeout=20000)
    page.locator("#export").click()
    link = page.locator("#export-file a[href$='train.chat.jsonl']")
    expect(link).to_be_visible(timeout=30000)
    exported = page.request.get(link.get_attribute("href")).text()
    assert len(exported.splitlines()) == 68 and '"role": "assistant"' in exported
    page.screenshot(path=str(SHOTS / "data.png"), full_page=True)

    # Right-to-left text reads right to left in the preview; a table of no known format gets a mapping.
    rtl = tmp_path / "rtl.jsonl"
    rtl.write_text('{"messages": [{"role": "user", "content": "ما هو تيلي؟"}, '
                   '{"role": "assistant", "content": "روبوت حديقة."}]}\n', encoding="utf-8")
    page.locator("#data-upload input[type=file]").set_input_files(str(rtl))
    cell = page.locator("#data-preview td", has_text="ما هو تيلي؟")
    expect(cell).to_be_visible(timeout=20000)
    assert cell.evaluate("el => getComputedStyle(el).direction") == "rtl"
    table = tmp_path / "qa.csv"
    table.write_text("question,answer\nHow heavy is it?,6.4 kg\n")
    page.locator("#data-upload button[aria-label='Clear']").click()
    page.locator("#data-upload input[type=file]").set_input_files(str(table))
    expect(page.locator("#data-status")).to_contain_text("A mapping was guessed", timeout=20000)
    page.get_by_role("button", name="Apply mapping").click()
    expect(page.locator("#data-status")).to_contain_text("1 examples", timeout=20000)
    page.get_by_role("button", name="Use the bundled sample").click()
    expect(page.locator("#data-status")).to_contain_text("68 examples", timeout=20000)

    # Method: advice, the matrix, a ranking for the ticked scenarios, an estimate; the pick carries to Train.
    page.get_by_role("tab", name="2 · Method").click()
    expect(page.locator("#advice")).to_contain_text("Recommendation: fine-tuning", timeout=20000)
    expect(page.locator("#matrix")).to_contain_text("Reducing memory usage")
    expect(page.locator("#matrix")).to_contain_text("ours: Yes: against full fine-tuning")
    expect(page.locator("#ranking")).to_contain_text("QLoRA: serves 3 of 3")
    page.locator("#scenarios").get_by_text("Reducing memory usage").click()
    expect(page.locator("#ranking")).to_contain_text(re.compile(r"differs\):\s+LoRA: serves 2 of 2"),
                                                     timeout=10000)  # LoRA first: the simplest on a tie
    page.locator("#estimate").click()
    expect(page.locator("#estimate-text")).to_contain_text("Peak per device", timeout=30000)
    page.screenshot(path=str(SHOTS / "method.png"), full_page=True)
    page.locator("#use-method").click()

    # Train: the curve grows while the run is still running; a reload shows the same run.
    page.get_by_role("tab", name="3 · Train").click()
    expect(page.locator("#method input")).to_have_value(re.compile("^lora:"))
    page.locator("#max-steps input").fill("400")
    page.locator("#start").click()
    status = page.locator("#run-status")
    expect(status).to_contain_text("running · step", timeout=60000)
    deadline = time.time() + 60
    while _plot_points(page) < 2 and time.time() < deadline:
        page.wait_for_timeout(250)
    text = status.inner_text()
    assert "running" in text and _plot_points(page) >= 2, text
    run_id = re.search(r"Run (\S+)", text).group(1)
    page.reload()
    page.get_by_role("tab", name="3 · Train").click()
    expect(status).to_contain_text(f"Run {run_id}", timeout=20000)
    page.wait_for_timeout(1500)
    assert _plot_points(page) >= 2
    page.screenshot(path=str(SHOTS / "train.png"), full_page=True)
    expect(status).to_contain_text("finished · step 400/400", timeout=180000)

    # Compare: four non-empty answers, sources under the RAG ones.
    page.get_by_role("tab", name="4 · Compare").click()
    expect(page.locator("#run-pick input")).to_have_value(run_id, timeout=20000)
    page.locator("#question textarea").fill("How heavy is the Tilly T2?")
    page.locator("#ask").click()
    answers = [page.locator(f"#answer-{i}") for i in range(4)]
    for a in answers:
        expect(a).to_contain_text("answer tokens", timeout=120000)
    for i, a in enumerate(answers):
        text = a.inner_text()
        assert "(empty answer)" not in text and "Pick a finished run" not in text, text
        assert ("Sources" in text) == (i in (1, 3)), text
    expect(answers[1]).to_contain_text("02-tilly-t2.md")
    expect(page.locator("#compare-note")).to_contain_text("All four columns in one batch")
    page.screenshot(path=str(SHOTS / "compare.png"), full_page=True)

    # Batch evaluation on an uploaded question file: a summary row per column with its 95% interval,
    # the chart with error bars, the paired verdicts, and downloads.
    questions = tmp_path / "q.jsonl"
    questions.write_text("".join((SAMPLE / "eval.jsonl").read_text().splitlines(keepends=True)[:6]))
    page.get_by_text("Evaluate on questions with reference answers").click()
    page.locator("#evaluate").locator("xpath=..").locator("input[type=file]").set_input_files(str(questions))
    page.locator("#evaluate").click()
    summary = page.locator("#eval-summary")
    expect(summary).to_contain_text("fine-tuned + RAG", timeout=180000)
    expect(summary).to_contain_text("token F1")
    assert re.search(r"\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]", summary.inner_text())  # mean [low, high]
    verdicts = page.locator("#eval-verdicts")
    expect(verdicts).to_contain_text("fine-tuned vs base")
    assert re.search(r"beats|cannot be told apart", verdicts.inner_text())
    expect(page.locator("#eval-note")).to_contain_text("6 questions")
    expect(page.locator("#eval-chart img, #eval-chart svg").first).to_be_visible()

    # Your own documents: an HTML page becomes a saved collection that answers from it.
    doc = tmp_path / "dock.html"
    doc.write_text("<h1>Dock</h1><p>The Zorvane dock glows purple when the firmware updates.</p>")
    page.get_by_text("Documents for retrieval").click()
    page.locator("#rag-docs input[type=file]").set_input_files(str(doc))
    page.locator("#index").click()
    expect(page.locator("#index-status")).to_contain_text("Indexed 1 passages from 1 documents", timeout=60000)
    expect(page.locator("#collection input")).to_have_value("my-documents")
    page.locator("#question textarea").fill("What colour does the dock glow?")
    page.locator("#ask").click()
    expect(answers[1]).to_contain_text("dock.html", timeout=120000)

    # Runs: the history lists the run; picking it draws its curve; its adapter zips for download.
    page.get_by_role("tab", name="6 · Runs and export").click()
    expect(page.locator("#runs-table")).to_contain_text(run_id, timeout=20000)
    expect(page.locator("#runs-table")).to_contain_text("finished")
    page.locator("#runs-picked input").click()
    page.get_by_role("option", name=run_id).click()
    page.keyboard.press("Escape")
    page.wait_for_timeout(1500)
    label = page.locator("#runs-plot [aria-roledescription=axis]").first.get_attribute("aria-label") or ""
    assert re.search(r"(to|ending with) 400\b", label), label  # the curve runs to the last step
    page.locator("#export-run input").click()
    page.get_by_role("option", name=run_id).click()
    page.locator("#export-zip").click()
    expect(page.locator("#export-status")).to_contain_text("Zip of the adapter is ready", timeout=60000)
    page.screenshot(path=str(SHOTS / "runs.png"), full_page=True)
    assert not errors, errors


def _pick(page, dropdown: str, option: str) -> None:
    page.locator(f"{dropdown} input").click()
    page.get_by_role("option", name=option, exact=True).click()


def _step(status) -> int:
    return int(re.search(r"step (\d+)/", status.inner_text()).group(1))


def _wait_step_above(status, step: int, timeout_s: float = 120) -> int:
    """The status line's step once it is above `step` (polled: the page redraws every second)."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        m = re.search(r"running · step (\d+)/", status.inner_text())
        if m and int(m.group(1)) > step:
            return int(m.group(1))
        time.sleep(0.3)
    raise AssertionError(f"the step did not pass {step}: {status.inner_text()}")


def test_stop_during_a_slow_step_saves_it_and_resume_continues_from_the_checkpoint(app_url, browser, studio_app):
    """Stop in a step slower than the old fixed 8 s grace (STUDIO_FAULT=slow@9): the step is finished and
    saved, not killed; Resume continues from that checkpoint; a Stop while it starts again ends it at once."""
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(app_url)
    expect(page.locator("#data-status")).to_contain_text("68 examples", timeout=30000)
    page.get_by_role("tab", name="3 · Train").click()
    page.locator("#max-steps input").fill("100000")
    studio_app.fault.write_text("slow@9")
    try:
        page.locator("#start").click()
        status = page.locator("#run-status")
        expect(status).to_contain_text(re.compile(r"running · step [1-9]"), timeout=120000)
    finally:
        studio_app.fault.unlink()  # only this run is slow; it read the file when it started
    run_id = re.search(r"Run (\S+)", status.inner_text()).group(1)
    page.locator("#stop").click()
    expect(status).to_contain_text(re.compile(r"stopping: finishing step \d+ and saving a checkpoint"), timeout=10000)
    expect(status).to_contain_text(f"Run {run_id} · stopped", timeout=120000)
    expect(status).to_contain_text(re.compile(r"checkpoint-\d+ is saved, and Resume continues from it"))
    stopped_at = _step(status)
    page.locator("#resume").click()
    assert _wait_step_above(status, stopped_at) > stopped_at and run_id in status.inner_text()
    for name in ("#lr-plot", "#speed-plot"):  # the learning rate and speed plots draw too
        expect(page.locator(f"{name} [aria-roledescription=axis]").first).to_be_attached(timeout=20000)
    page.locator("#stop").click()
    expect(status).to_contain_text(f"Run {run_id} · stopped", timeout=60000)
    assert not errors, errors


def test_two_browser_sessions_keep_their_own_data_language_and_queue_place(app_url, browser, tmp_path):
    from playwright.sync_api import expect

    first, second = (browser.new_context().new_page() for _ in range(2))
    for page in (first, second):
        page.goto(app_url)
        expect(page.locator("#data-status")).to_contain_text("68 examples", timeout=30000)
    mine = tmp_path / "mine.jsonl"
    mine.write_text("".join('{"messages": [{"role": "user", "content": "q%d"}, {"role": "assistant", '
                            '"content": "a%d"}]}\n' % (i, i) for i in range(3)))
    first.locator("#data-upload input[type=file]").set_input_files(str(mine))
    expect(first.locator("#data-status")).to_contain_text("3 examples", timeout=20000)
    _pick(second, "#language", "فارسی")
    expect(second.get_by_role("tab", name="۳ · آموزش")).to_be_visible(timeout=10000)
    second.wait_for_timeout(1000)
    assert "3 examples in mine.jsonl" in first.locator("#data-status").inner_text()
    assert "68 examples" in second.locator("#data-status").inner_text()  # the other session keeps the sample
    expect(first.get_by_role("tab", name="3 · Train")).to_be_visible()  # the other session stays English
    assert first.evaluate("document.documentElement.dir") != "rtl"

    # Each session trains its own data; the second waits in the queue and is told its place.
    first.get_by_role("tab", name="3 · Train").click()
    first.locator("#max-steps input").fill("100000")
    first.locator("#start").click()
    expect(first.locator("#run-status")).to_contain_text("running · step", timeout=60000)
    second.get_by_role("tab", name="۳ · آموزش").click()
    second.locator("#start").click()
    expect(second.locator("#run-status")).to_contain_text("queued, position 1", timeout=30000)
    runs = [re.search(r"Run (\S+)", p.locator("#run-status").inner_text()).group(1) for p in (first, second)]
    assert runs[0] != runs[1]
    for page in (second, first):
        page.locator("#stop").click()
        expect(page.locator("#run-status")).to_contain_text("stopped", timeout=60000)
    first.get_by_text("The same run from the command line").click()
    expect(first.locator("#config-preview")).to_contain_text("mine.jsonl")
    second.get_by_text("همین اجرا از خط فرمان").click()
    expect(second.locator("#config-preview")).to_contain_text("train.jsonl")
    assert "mine.jsonl" not in second.locator("#config-preview").inner_text()


def test_arabic_persian_and_hebrew_read_right_to_left(app_url, browser):
    from playwright.sync_api import expect

    SHOTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(app_url)
    expect(page.locator("#data-status")).to_contain_text("68 examples", timeout=30000)
    _pick(page, "#language", "العربية")
    expect(page.get_by_role("tab", name="٣ · التدريب")).to_be_visible(timeout=10000)
    assert page.evaluate("[document.documentElement.dir, document.documentElement.lang]") == ["rtl", "ar"]
    page.get_by_role("tab", name="٣ · التدريب").click()
    start, stop_ = page.get_by_role("button", name="ابدأ التدريب"), page.get_by_role("button", name="أوقف")
    expect(start).to_be_visible()
    assert start.bounding_box()["x"] > stop_.bounding_box()["x"]  # the row runs right to left
    page.screenshot(path=str(SHOTS / "train-ar.png"), full_page=True)
    _pick(page, "#language", "English")
    expect(page.get_by_role("tab", name="3 · Train")).to_be_visible(timeout=10000)
    assert page.evaluate("document.documentElement.dir") == "ltr"
    start = page.get_by_role("button", name="Start training")
    assert start.bounding_box()["x"] < page.get_by_role("button", name="Stop").bounding_box()["x"]
    assert not errors, errors

    hebrew = browser.new_context(locale="he-IL").new_page()  # the browser's own language is the first choice
    hebrew.goto(app_url)
    expect(hebrew.get_by_role("tab", name="3 · אימון")).to_be_visible(timeout=30000)
    assert hebrew.evaluate("document.documentElement.dir") == "rtl"


def test_the_readme_shows_the_screenshots_the_walkthrough_takes():
    """The README's screenshots are the ones `python tests/ui_walkthrough.py` takes on the real model (all tabs)."""
    root = Path(__file__).resolve().parent.parent
    taken = set(re.findall(r'out / "([\w-]+\.png)"', (root / "tests" / "ui_walkthrough.py").read_text()))
    shown = set(re.findall(r"\(assets/screenshots/([\w-]+\.png)\)", (root / "README.md").read_text()))
    assert shown == taken and {"data.png", "method.png", "train.png", "compare.png", "runs.png"} <= shown
    assert all((root / "assets" / "screenshots" / name).is_file() for name in shown)


def test_chat_tab_streams_switches_adapter_retrieves_and_saves_examples(app_url, browser, tiny_model, studio_app):
    """Chat with a finished run, greedy: adapter on and off give different answers on the same weights; a
    collection adds its sources; a saved exchange lands in a chat JSONL the Data tab reads. The Runs tab
    shows the serve command and refuses a GGUF of a tokenizer llama.cpp does not know, in a sentence."""
    from playwright.sync_api import expect

    from conftest import train
    from engine.train.config import RunConfig
    from engine.data.dataset import check_files

    run = train(RunConfig(model=tiny_model, data=str(SAMPLE / "train.jsonl"), max_steps=8, learning_rate=1e-2,
                          batch_size=8, max_length=96, save_steps=100), studio_app.home / "runs")
    assert run.status() == "finished"
    page = browser.new_page(viewport={"width": 1280, "height": 1100})
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(app_url)
    page.get_by_role("tab", name="5 · Chat").click()
    page.locator("#chat-model input").click()
    page.get_by_role("option", name=run.id).click()
    page.locator("#chat-temperature input[type=number]").fill("0")
    page.locator("#chat-temperature input[type=number]").press("Enter")
    page.locator("#chat-max-tokens input[type=number]").fill("32")
    page.locator("#chat-max-tokens input[type=number]").press("Enter")
    status, log = page.locator("#chat-status"), page.locator("#chat-log")

    def ask(text, mode):
        """Send, then wait for this reply's own status (the last one may still be on the page for a moment)."""
        page.locator("#chat-input textarea").fill(text)
        page.locator("#chat-send").click()
        expect(status).to_contain_text(re.compile(rf"tokens in [\d.]+ s \({mode}; "), timeout=60000)
        return status.inner_text()

    assert "adapter on" in ask("How heavy is the Tilly T2?", "adapter on")
    expect(log).to_contain_text("How heavy is the Tilly T2?")
    page.locator("#chat-save").click()
    expect(page.locator("#chat-saved")).to_contain_text("you have 1 saved", timeout=20000)
    saved = studio_app.home / "chat-examples.jsonl"
    first = json.loads(saved.read_text().splitlines()[0])["messages"]
    assert [m["role"] for m in first] == ["user", "assistant"] and first[1]["content"].strip()
    report = check_files([str(saved)])
    assert report.ok and len(report.examples) == 1  # the Data tab reads it as it is

    page.locator("#chat-clear").click()
    page.locator("#chat-adapter input").uncheck()
    assert "adapter off" in ask("How heavy is the Tilly T2?", "adapter off")
    page.locator("#chat-save").click()
    expect(page.locator("#chat-saved")).to_contain_text("you have 2 saved", timeout=20000)
    second = json.loads(saved.read_text().splitlines()[1])["messages"]
    assert second[1]["content"] != first[1]["content"]  # the base answered, not the adapter

    page.locator("#chat-collection input").click()
    page.get_by_role("option", name="zorvane-sample").click()
    ask("How heavy is the Tilly T2?", "adapter off")
    expect(page.locator("#chat-sources")).to_contain_text("02-tilly-t2.md", timeout=20000)
    page.screenshot(path=str(SHOTS / "chat.png"), full_page=True)

    # the saved exchanges are a dataset on the Data tab
    page.get_by_role("tab", name="1 · Data").click()
    page.locator("#use-saved").click()
    expect(page.locator("#data-status")).to_contain_text("2 examples", timeout=20000)
    expect(page.locator("#data-preview")).to_contain_text("How heavy is the Tilly T2?")

    page.get_by_role("tab", name="6 · Runs and export").click()
    page.locator("#runs-refresh").click()
    page.locator("#export-run input").click()
    page.get_by_role("option", name=run.id).click()
    expect(page.locator("#serve-command")).to_contain_text(f"studio serve {run.id} --port 8000", timeout=20000)
    page.locator("#export-gguf").click()
    expect(page.locator("#export-status")).to_contain_text("does not recognise this model's tokenizer",
                                                          timeout=120000)
    assert not errors, errors
