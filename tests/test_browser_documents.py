"""Documents alone, in a real browser (headless Chromium, Playwright) against `studio` on the tiny model:
the Data tab writes question-answer pairs from uploaded documents and shows a RAFT prompt as what gets
trained; the Method tab's "Measure it on my documents" runs the whole measurement on uploaded documents
and shows its stages, then the grid and the verdict; the Runs tab lists the saved report."""

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

DOCS = Path(__file__).resolve().parent.parent / "assets" / "sample" / "docs"


@pytest.fixture(scope="module")
def app(tiny_model, tmp_path_factory):
    from studio.app import end_runs, running_app

    home = tmp_path_factory.mktemp("app")
    with running_app({"STUDIO_MODEL": tiny_model}, home=home) as running:
        yield running.url, home
        end_runs(home / "runs")


def test_documents_become_pairs_and_the_measured_answer_in_the_browser(app, browser):
    from playwright.sync_api import expect

    url, home = app
    docs = [str(DOCS / "02-tilly-t2.md"), str(DOCS / "03-battery.md")]
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(url)

    # Data: pairs written from the documents, with the report, read as the dataset; RAFT shows its prompt.
    page.get_by_text("From documents: write questions and answers with their evidence").click()
    page.locator("#gen-docs input[type=file]").set_input_files(docs)
    page.locator("#gen-raft input[type=checkbox]").check()
    page.locator("#gen-start").click()
    expect(page.locator("#gen-status")).to_contain_text("kept", timeout=120000)
    expect(page.locator("#gen-status")).to_contain_text("02-tilly-t2.md:")
    expect(page.locator("#data-status")).to_contain_text("examples", timeout=30000)
    expect(page.locator("#data-preview")).to_contain_text("Sources:")
    page.get_by_text("What gets trained").click()
    expect(page.locator("#trained-view")).to_contain_text("Question:", timeout=30000)

    # Method: the whole measurement on uploaded documents, its stages, then the grid and the verdict.
    page.get_by_role("tab", name="2 · Method").click()
    page.locator("#decide-docs input[type=file]").set_input_files(docs)
    page.locator("#decide-start").click()
    expect(page.locator("#decide-status")).to_contain_text("stage", timeout=60000)
    expect(page.locator("#decide-report")).to_contain_text("closed-book", timeout=400000)
    report = page.locator("#decide-report").inner_text()
    for row in ("base", "fine-tuned", "RAFT", "with retrieval", "Chunks never trained on", "Forgetting"):
        assert row in report, report
    # correctness first (issue 42): the grid is the share answered correctly, with costs; token F1 secondary
    assert "The primary score, which decides, is correct (holds the reference fact)" in report, report
    assert "mean answer latency and tokens" in report and "Secondary: token F1" in report, report
    assert re.search(r"Index: \d+ passages", report), report
    assert re.search(r"(Both fine-tunes trained as planned|The budget cut .* short)", report), report
    expect(page.locator("#decide-status")).to_contain_text("finished")
    status = page.locator("#decide-status").inner_text()
    assert any(word in status for word in ("RAG", "Fine-tuning", "Both", "Cannot tell")), status

    # Runs: the saved report is listed and opens.
    page.get_by_role("tab", name="6 · Runs and export").click()
    page.get_by_text("Measured decisions: fine-tune, RAG, or both? (Method tab)").click()
    expect(page.locator("#decision-report")).to_contain_text("Fine-tune, RAG, or both?", timeout=30000)
