"""The studio's file routes and file endpoints against requests a browser would not send, and its Hub token
kept from every page, log and run file: raw HTTP calls and a real browser against the app the browser tests
share (tests/conftest.py `studio_app`, on the tiny test model, with HF_TOKEN set)."""

import json
import re
import urllib.request
from pathlib import Path

import pytest

from conftest import APP_SECRET as SECRET
from conftest import start_on_page

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("route", [
    "/gradio_api/file=/etc/passwd", "/gradio_api/file=../../../../etc/passwd",
    "/gradio_api/file=%2Fetc%2Fpasswd", "/gradio_api/file=..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "/gradio_api/file=/proc/self/environ", "/file=/etc/passwd", "/gradio_api/file=//etc/passwd",
    "/static/../../../../etc/passwd", "/assets/..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/gradio_api/file={runs}/../../../../etc/passwd", "/gradio_api/file={runs}",
])
def test_file_routes_serve_nothing_outside_the_allowed_folders(app_url, route, studio_app):
    """Path-traversal requests against the app's file routes get no file from outside its folders."""
    import urllib.error

    runs = str(studio_app.home / "runs")
    url = app_url.rstrip("/") + route.format(runs=runs)
    try:
        with urllib.request.urlopen(urllib.request.Request(url), timeout=10) as resp:
            body = resp.read()
    except urllib.error.HTTPError as err:
        assert err.code in (400, 403, 404, 405), (route, err.code)
        return
    assert b"root:" not in body and b"HF_HUB_OFFLINE" not in body and b"PATH=" not in body, route


SERVER_FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".txt", ".md", ".html", ".parquet", ".pdf", ".docx")


def _file_endpoints(app_url) -> list[tuple[str, list[dict], list[int]]]:
    """(api name, parameters, indexes of the file parameters) of every endpoint that takes a file, read from
    the app's own API description: an endpoint added later is covered the day it is added."""
    import httpx

    out = []
    for name, info in httpx.get(app_url + "gradio_api/info", timeout=30).json()["named_endpoints"].items():
        params = info["parameters"]
        files = [i for i, p in enumerate(params) if "FileData" in json.dumps(p.get("type", {}))]
        if files:
            out.append((name, params, files))
    return out


def _call(app_url, name: str, args: list, session: str) -> str:
    """One raw HTTP call of an endpoint (no client that would upload a local path first); its whole answer."""
    import httpx

    r = httpx.post(f"{app_url}gradio_api/call{name}", json={"data": args, "session_hash": session}, timeout=30)
    if r.status_code != 200:
        return r.text
    with httpx.stream("GET", f"{app_url}gradio_api/call{name}/{r.json()['event_id']}", timeout=300) as resp:
        return resp.read().decode()


def _server_file(folder: Path, suffix: str, secret: str) -> Path:
    """A file of `suffix` on the server that holds `secret` and was never uploaded."""
    path = folder / f"server-secret{suffix}"
    if suffix == ".parquet":
        import pandas as pd

        pd.DataFrame({"prompt": [secret] * 3, "completion": [secret] * 3}).to_parquet(path)
    elif suffix in (".jsonl", ".json"):
        row = json.dumps({"messages": [{"role": "user", "content": secret}, {"role": "assistant", "content": secret}]})
        path.write_text(row + "\n" if suffix == ".jsonl" else f"[{row}]")
    elif suffix in (".csv", ".tsv"):
        sep = "," if suffix == ".csv" else "\t"
        path.write_text(f"question{sep}answer\n{secret}{sep}{secret}\n")
    else:
        path.write_text(f"{secret}\n\n{secret} is the secret.\n")
    return path


def test_no_endpoint_that_takes_a_file_reads_a_server_file_it_was_not_sent(app_url, tmp_path):
    """Every file endpoint, called over HTTP with a server path of each suffix and the app's own README: each
    is refused before it is read, and nothing of them comes back."""
    endpoints = _file_endpoints(app_url)
    assert {"/read_data", "/index_documents", "/run_evaluation"} <= {name for name, _, _ in endpoints}
    secret = "Quokka-7731-never-uploaded"
    paths = [_server_file(tmp_path, suffix, secret) for suffix in SERVER_FILE_SUFFIXES]
    paths.append(Path(__file__).resolve().parent.parent / "README.md")
    for name, params, files in endpoints:
        for path in paths:
            args = [p.get("parameter_default") if p.get("parameter_has_default") else None for p in params]
            for i in files:
                data = {"path": str(path), "meta": {"_type": "gradio.FileData"}, "orig_name": path.name}
                args[i] = [data] if "array" in json.dumps(params[i].get("type", {})) else data
            shown = _call(app_url, name, args, session="prober")
            assert secret not in shown and "Fine-tuning studio" not in shown, (name, path.name, shown[:400])
            assert "passages from" not in shown and "examples** in" not in shown, (name, path.name, shown[:400])


def test_the_hub_token_never_reaches_the_page_the_log_or_the_runs(app_url, browser, studio_app):
    """The app runs with HF_TOKEN set: this test trains a short run through the page and has it answer in
    Compare, then no page, API description, log or run file shows the token."""
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(app_url)
    status = start_on_page(page, 3, timeout_ms=30000)
    expect(status).to_contain_text(re.compile(r"Run \S+ · finished"), timeout=180000)
    run_id = re.search(r"Run (\S+)", status.inner_text()).group(1)
    page.get_by_role("tab", name="4 · Compare").click()
    expect(page.locator("#run-pick input")).to_have_value(run_id, timeout=20000)
    page.locator("#question textarea").fill("How heavy is the Tilly T2?")
    page.locator("#ask").click()
    for i in range(4):
        expect(page.locator(f"#answer-{i}")).to_contain_text("answer tokens", timeout=120000)
    shown = [page.content()]
    for route in ("config", "gradio_api/info"):
        with urllib.request.urlopen(app_url + route, timeout=10) as resp:
            shown.append(resp.read().decode())
    page.close()
    for text in shown:
        assert SECRET not in text
    files = [p for p in studio_app.home.rglob("*") if p.is_file()]
    assert any(p.name == "events.jsonl" and run_id in str(p) for p in files)  # the run's own records are read
    for path in files:
        assert SECRET.encode() not in path.read_bytes(), path
