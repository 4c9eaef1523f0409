"""The whole path through the UI on the real default model, timed, with README screenshots.

    .venv/bin/python tests/ui_walkthrough.py [OUT_DIR]     (default: assets/screenshots)

Starts `studio` on a fresh runs folder, loads the bundled sample, trains LoRA with the
form's defaults, asks a held-back question in Compare, chats with the run (retrieval on), trains
DPO from it on the bundled pairs and scores the held-back pairs, trains GRPO on the bundled sums and
scores the held-back sums, shows the run on the Runs tab and
the Train tab in Arabic, and prints how long training took through the page. Minutes on a CPU:
run it alone, with nothing else using the cores.
"""

import contextlib
import shutil
import sys
import time
from pathlib import Path

PAIRS = Path(__file__).resolve().parent.parent / "assets" / "sample" / "preference.jsonl"
PROMPTS = PAIRS.with_name("grpo.jsonl")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def main(out: Path, browser=None) -> float:
    """Walk the path, write the screenshots to `out`; the seconds training took through the page."""
    from playwright.sync_api import expect, sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from studio.app import running_app

    # STUDIO_MODEL left out: the form starts on the embedded default, as for a new user.
    with running_app({"HF_HUB_OFFLINE": "1", "STUDIO_MODEL": None}) as app:
        url = app.url
        with contextlib.ExitStack() as stack:
            if browser is None:  # run as a script; the test suite passes its own (one Playwright per thread)
                browser = stack.enter_context(sync_playwright()).chromium.launch(
                    executable_path=shutil.which("chromium"), args=FLAGS)
                stack.callback(browser.close)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url)
            page.get_by_role("button", name="Use the bundled sample").click()
            expect(page.locator("#data-status")).to_contain_text("68 examples", timeout=30000)
            page.screenshot(path=str(out / "data.png"), full_page=True)
            page.get_by_role("tab", name="2 · Method").click()
            expect(page.locator("#advice")).to_contain_text("Recommendation", timeout=30000)
            page.locator("#estimate").click()
            expect(page.locator("#estimate-text")).to_contain_text("Peak per device", timeout=60000)
            page.screenshot(path=str(out / "method.png"), full_page=True)
            page.get_by_role("tab", name="3 · Train").click()
            t0 = time.time()
            page.locator("#start").click()
            status = page.locator("#run-status")
            expect(status).to_contain_text("running · step 20/", timeout=600000)
            page.screenshot(path=str(out / "train.png"), full_page=True)
            expect(status).to_contain_text("finished", timeout=900000)
            trained = time.time() - t0
            print(f"training through the UI: {trained:.0f} s ({status.inner_text().splitlines()[0]})")
            page.get_by_role("tab", name="4 · Compare").click()
            page.locator("#question textarea").fill("What is the price of a Tilly T2?")
            page.locator("#ask").click()
            for i in range(4):
                expect(page.locator(f"#answer-{i}")).to_contain_text("answer tokens", timeout=300000)
            page.screenshot(path=str(out / "compare.png"), full_page=True)
            for i in range(4):
                print(page.locator(f"#answer-{i}").inner_text().split("\n\n")[:2])
            run_id = page.locator("#run-pick input").input_value()
            page.get_by_role("tab", name="5 · Chat").click()
            page.locator("#chat-refresh").click()
            page.locator("#chat-model input").click()
            page.get_by_role("option", name=run_id).click()
            page.locator("#chat-collection input").click()
            page.get_by_role("option", name="zorvane-sample").click()
            page.locator("#chat-input textarea").fill("How heavy is the Tilly T2?")
            page.locator("#chat-send").click()
            expect(page.locator("#chat-status")).to_contain_text("tokens in", timeout=300000)
            page.screenshot(path=str(out / "chat.png"), full_page=True)
            print("chat:", page.locator("#chat-status").inner_text())
            # Preference tuning: the bundled pairs, DPO on the finished run's adapter, reward plots
            page.get_by_role("tab", name="1 · Data").click()
            page.locator("#data-upload input[type=file]").set_input_files(str(PAIRS))
            expect(page.locator("#data-status")).to_contain_text("56 pairs", timeout=30000)
            page.get_by_role("tab", name="3 · Train").click()
            page.get_by_text("Objective: supervised, from preferences").click()
            page.locator("#objective input").click()
            page.get_by_role("option", name="dpo", exact=True).click()
            page.locator("#init-from input").click()
            page.get_by_role("option", name=run_id).click()
            page.locator("#max-steps input").fill("20")
            page.locator("#start").click()
            expect(status).to_contain_text("finished · step 20/20", timeout=900000)
            page.wait_for_timeout(2000)
            page.screenshot(path=str(out / "train-dpo.png"), full_page=True)
            print("dpo:", status.inner_text().splitlines()[0])
            page.get_by_role("tab", name="4 · Compare").click()
            page.get_by_text("Preference accuracy on held-out pairs").click()
            page.locator("#score-pairs").click()
            expect(page.locator("#preference-note")).to_contain_text("Preference accuracy on", timeout=300000)
            print("preference:", page.locator("#preference-note").inner_text())
            print("grpo:", grpo_step(page, out))
            page.get_by_role("tab", name="6 · Runs and export").click()
            page.locator("#runs-picked input").click()
            page.get_by_role("option").first.click()
            page.keyboard.press("Escape")
            page.wait_for_timeout(2000)
            page.screenshot(path=str(out / "runs.png"), full_page=True)
            page.locator("#language input").click()
            page.get_by_role("option", name="العربية").click()
            page.get_by_role("tab", name="٣ · التدريب").click()
            page.wait_for_timeout(2000)
            page.screenshot(path=str(out / "train-ar.png"), full_page=True)
            page.close()
    return trained


def grpo_step(page, out: Path, steps: int = 30) -> str:
    """GRPO on the bundled sums, as grpo-sample.yaml sets it (numeric reward, 8 answers to one prompt per step),
    from the page: the Train tab's reward plot and samples, then the reward before and after in Compare.
    The objective accordion is open from the DPO step; init_from is cleared (GRPO starts from the base)."""
    from playwright.sync_api import expect

    page.get_by_role("tab", name="1 · Data").click()
    page.locator("#data-upload input[type=file]").set_input_files(str(PROMPTS))
    expect(page.locator("#data-status")).to_contain_text("64 prompts", timeout=30000)
    page.get_by_role("tab", name="3 · Train").click()
    page.locator("#objective input").click()
    page.get_by_role("option", name="grpo", exact=True).click()
    page.locator("#init-from input").fill("")
    page.keyboard.press("Enter")
    page.get_by_text("GRPO: learn from rewards a program checks").click()
    page.locator("#reward-starter input").click()
    page.get_by_role("option", name="a number, within a tolerance").click()
    expect(page.locator("#rewards")).to_contain_text("numeric", timeout=10000)
    for field, value in (("num-generations", "8"), ("batch-size", "8"), ("max-completion-length", "32"),
                         ("learning-rate", "0.0003"), ("max-steps", str(steps))):
        page.locator(f"#{field} input").fill(value)
    page.locator("#start").click()
    status = page.locator("#run-status")
    expect(status).to_contain_text(f"finished · step {steps}/{steps}", timeout=1800000)
    expect(page.locator("#grpo-samples")).to_contain_text("What is", timeout=30000)
    page.wait_for_timeout(2000)
    page.screenshot(path=str(out / "train-grpo.png"), full_page=True)
    said = status.inner_text().splitlines()[0]
    page.get_by_role("tab", name="4 · Compare").click()
    page.get_by_text("Reward on held-out prompts (GRPO)").click()
    page.locator("#score-rewards").click()
    expect(page.locator("#reward-note")).to_contain_text("held-out prompts", timeout=600000)
    return said + " | " + page.locator("#reward-note").inner_text()


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "assets" / "screenshots")
