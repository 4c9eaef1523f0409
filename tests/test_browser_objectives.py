"""The preference and reward objectives in a real browser (headless Chromium driven by Playwright): DPO
from preference pairs and GRPO from prompts with checkable answers, each from the Data tab through
training with its own plots to its score in Compare, on the tiny test model (tests/conftest.py
`studio_app`)."""

import json
import re

import pytest

from conftest import SAMPLE, SHOTS

pytestmark = pytest.mark.browser


def _upload(browser, app_url, name: str):
    """A new page on the app with the sample file `name` uploaded on the Data tab; (page, console errors)."""
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1280, "height": 1100})
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(app_url)
    # the page opens on the bundled sample (its token statistics included): upload once that has finished
    expect(page.locator("#token-stats")).to_contain_text("tokens per epoch", timeout=30000)
    page.locator("#data-upload input[type=file]").set_input_files(str(SAMPLE / name))
    return page, errors


def test_preference_pairs_train_dpo_and_score_in_compare(app_url, browser, studio_app):
    """Data (pairs) -> Train (DPO, with its reward plots) -> Compare (preference accuracy before and after)."""
    from playwright.sync_api import expect

    page, errors = _upload(browser, app_url, "preference.jsonl")
    expect(page.locator("#data-status")).to_contain_text("56 examples (56 pairs)", timeout=20000)
    expect(page.locator("#token-stats")).to_contain_text("rejected", timeout=30000)
    page.get_by_text("What gets trained").click()
    expect(page.locator("#trained-view")).to_contain_text("the same prompt, answered instead with", timeout=20000)

    page.get_by_role("tab", name="3 · Train").click()
    page.get_by_text("Objective: supervised, from preferences").click()
    page.locator("#objective input").click()
    page.get_by_role("option", name="dpo", exact=True).click()
    # a preference objective starts from a fifth of the supervised rate (engine/train/methods.py)
    expect(page.locator("#learning-rate input")).to_have_value("0.0002", timeout=10000)
    page.locator("#max-steps input").fill("30")
    page.locator("#max-prompt-length input").fill("64")
    page.locator("#start").click()
    status = page.locator("#run-status")
    expect(status).to_contain_text(re.compile(r"finished · step 30/30"), timeout=240000)
    run_id = re.search(r"Run (\S+)", status.inner_text()).group(1)
    assert re.fullmatch(r"\d{8}-\d{6}-lora-dpo-[0-9a-f]{10}", run_id), run_id
    expect(page.locator("#rewards-plot")).to_be_visible(timeout=20000)
    expect(page.locator("#reward-accuracy-plot")).to_be_visible()
    expect(page.locator("#log-odds-plot")).to_be_hidden()  # ORPO's alone
    events = [json.loads(line) for line in (studio_app.home / "runs" / run_id / "events.jsonl").read_text().splitlines()]
    assert any(e.get("rewards_accuracy") is not None for e in events if e["event"] == "logged")

    page.get_by_role("tab", name="4 · Compare").click()
    expect(page.locator("#run-pick input")).to_have_value(run_id, timeout=20000)
    page.get_by_text("Preference accuracy on held-out pairs").click()
    page.locator("#score-pairs").click()
    expect(page.locator("#preference-note")).to_contain_text("Preference accuracy on 12 held-out pairs",
                                                             timeout=120000)
    expect(page.locator("#preference-table")).to_contain_text("base (adapter off)")
    page.screenshot(path=str(SHOTS / "preference.png"), full_page=True)
    assert not errors, errors


def test_prompts_train_grpo_with_reward_plots_and_score_in_compare(app_url, browser, studio_app):
    """Data (prompts with answers) -> Train (GRPO: rewards picked on the page, per-function reward plots and
    sampled completions) -> Compare (the reward before and after on held-out prompts)."""
    from playwright.sync_api import expect

    page, errors = _upload(browser, app_url, "grpo.jsonl")
    expect(page.locator("#data-status")).to_contain_text("64 examples (64 prompts)", timeout=20000)
    expect(page.locator("#data-status")).to_contain_text("Read as prompts for GRPO (64 of 64 with a reference")
    expect(page.locator("#token-stats")).to_contain_text("prompts over the prompt budget", timeout=30000)

    page.get_by_role("tab", name="3 · Train").click()
    page.get_by_text("Objective: supervised, from preferences").click()
    page.locator("#objective input").click()
    page.get_by_role("option", name="grpo", exact=True).click()
    page.get_by_text("GRPO: learn from rewards a program checks").click()
    page.locator("#reward-starter input").click()
    page.get_by_role("option", name="a number, within a tolerance").click()
    expect(page.locator("#rewards")).to_contain_text("numeric", timeout=10000)
    page.locator("#num-generations input").fill("2")
    page.locator("#max-completion-length input").fill("12")
    page.locator("#sample-every input").fill("2")
    page.locator("#max-steps input").fill("4")
    page.get_by_text("The same run from the command line").click()
    expect(page.locator("#config-preview")).to_contain_text("kind: numeric", timeout=10000)
    page.locator("#start").click()
    status = page.locator("#run-status")
    expect(status).to_contain_text(re.compile(r"finished · step 4/4"), timeout=240000)
    expect(status).to_contain_text("of the step generating")
    run_id = re.search(r"Run (\S+)", status.inner_text()).group(1)
    assert re.fullmatch(r"\d{8}-\d{6}-lora-grpo-[0-9a-f]{10}", run_id), run_id
    expect(page.locator("#grpo-reward-plot")).to_be_visible(timeout=20000)
    expect(page.locator("#completion-length-plot")).to_be_visible()
    expect(page.locator("#kl-plot")).to_be_hidden()  # beta 0: no KL term
    expect(page.locator("#grpo-samples")).to_contain_text("What is")
    expect(page.locator("#rewards-plot")).to_be_hidden()  # the preference objectives' plots
    events = [json.loads(line) for line in (studio_app.home / "runs" / run_id / "events.jsonl").read_text().splitlines()]
    logged = [e for e in events if e["event"] == "logged"]
    assert len(logged) == 4 and all(set(e["reward_functions"]) == {"format", "numeric"} for e in logged)

    page.get_by_role("tab", name="4 · Compare").click()
    expect(page.locator("#run-pick input")).to_have_value(run_id, timeout=20000)
    page.get_by_text("Reward on held-out prompts (GRPO)").click()
    page.locator("#score-rewards").click()
    expect(page.locator("#reward-note")).to_contain_text("Total reward on 16 held-out prompts", timeout=120000)
    expect(page.locator("#reward-table")).to_contain_text("base (adapter off)")
    page.screenshot(path=str(SHOTS / "grpo.png"), full_page=True)
    assert not errors, errors
