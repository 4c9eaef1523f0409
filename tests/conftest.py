"""Shared test fixtures: offline mode, a tiny model built on the spot, a private runs folder, the app and the
browser the browser tests drive."""

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The suite's runs, indexes, saved chat examples and measured capability figures go to folders of its own,
# never the checkout or the developer's ~/.cache/studio (whose converted model weights and GGUF converter
# it shares: they are the same on every run). Tests that need a private folder set their own on top.
_HOME = Path(tempfile.mkdtemp(prefix="studio-test-"))
os.environ["STUDIO_RUNS"] = str(_HOME / "runs")
os.environ["STUDIO_INDEXES"] = str(_HOME / "indexes")
os.environ["STUDIO_EXAMPLES"] = str(_HOME / "chat-examples.jsonl")
os.environ["STUDIO_MEASURED"] = str(_HOME / "measured")
sys.path.insert(0, str(Path(__file__).resolve().parent))

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "assets" / "sample"
PEER_DATA = ROOT.parent / "shared" / "peer-data"
SHOTS = ROOT / "test-artifacts"  # the browser tests' screenshots (git ignores them)
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Float comparisons: whole tensors by norm-wise relative error, never element by element. Another CPU kind
# (an AMX Xeon against an AVX-512 EPYC) sums the same fp32 products in another order: the whole tensor agrees
# to fp32 rounding (a dot product of n terms: about sqrt(n) * 2**-24, 1e-7 to 1e-6 at these shapes), but an
# element near zero, the small result of large terms that cancel, can differ by 1e-2 of itself (seen: 9e-3).
# The tolerances: SAME_ORDER (1e-5), one computation against another order or a fused kernel of it, a few
# layers deep (tens of times the fp32 rounding of the longest sum); MODEL (1e-4), a whole model's outputs
# through two implementations (the server's packed layers against transformers'). tests/test_fast_step.py
# shows the element-wise check failing on a reordered sum that this one passes.
SAME_ORDER = 1e-5
MODEL = 1e-4


def relative_error(got, want) -> float:
    """||got - want|| / ||want|| over the whole tensor (or list of numbers), in float64."""
    import torch

    got, want = torch.as_tensor(got, dtype=torch.float64), torch.as_tensor(want, dtype=torch.float64)
    return float(torch.linalg.vector_norm(got - want) / torch.linalg.vector_norm(want).clamp_min(1e-30))


APP_SECRET = "hf_appSecretNeverShown77"  # the browser tests' app's Hub token: no page, log or run file may show it


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (Debian's) driven by Playwright, one per test module."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium is needed for the browser tests (.ci/run installs it)"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def studio_app(tiny_model, tmp_path_factory):
    """The studio started the way the README starts it, on the tiny model, with a Hub token, shared by the
    browser test modules (one start): `url`, `home` (its runs and saved examples) and `fault`, a file whose
    fault the next run it starts reads (STUDIO_FAULT=@FILE)."""
    from studio.app import running_app

    home = tmp_path_factory.mktemp("app")
    env = {"STUDIO_MODEL": tiny_model, "HF_TOKEN": APP_SECRET, "STUDIO_FAULT": f"@{home / 'fault'}"}
    with running_app(env, home=home) as app:
        yield SimpleNamespace(url=app.url, home=home, fault=home / "fault")


@pytest.fixture
def app_url(studio_app, request):
    """The shared app's address. After the test its pages close (open pages poll the app every second
    beside the next test's run) and no run it started goes on (a test that fails mid-run must not leave
    its trainer going)."""
    yield studio_app.url
    from studio.app import end_runs

    if "browser" in request.fixturenames:
        for context in request.getfixturevalue("browser").contexts:
            context.close()
    end_runs(studio_app.home / "runs")


def start_on_page(page, max_steps: int, timeout_ms: int = 60000):
    """On an open page: wait for the opening sample, then start a run of `max_steps` from the Train tab; the
    status line (a Playwright locator)."""
    from playwright.sync_api import expect

    expect(page.locator("#data-status")).to_contain_text("68 examples", timeout=timeout_ms)
    page.get_by_role("tab", name="3 · Train").click()
    page.locator("#max-steps input").fill(str(max_steps))
    page.locator("#start").click()
    return page.locator("#run-status")


@pytest.fixture(autouse=True)
def no_training_outlives_its_test(tmp_path):
    """A failed assertion must not leave a trainer running: it would slow every later test 15-40x."""
    yield
    import signal

    for pid_file in tmp_path.rglob("pid"):
        try:
            os.killpg(int(pid_file.read_text()), signal.SIGKILL)
        except (ValueError, ProcessLookupError, PermissionError, OSError):
            pass


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    from tiny_model import build_tiny_model

    return str(build_tiny_model(tmp_path_factory.mktemp("tiny-model")))


@pytest.fixture
def runs_dir(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "runs"
    monkeypatch.setenv("STUDIO_RUNS", str(path))
    return path


@pytest.fixture
def write_jsonl(tmp_path):
    def write(rows, name="data.jsonl") -> Path:
        path = tmp_path / name
        path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
        return path

    return write


def wait_for(run, timeout: float = 300) -> str:
    """The status a run ends with; fails the test (with the end of its log) if it is still going after `timeout`."""
    try:
        return run.wait(timeout)
    except TimeoutError as err:
        raise AssertionError(f"{err}; log:\n{(run.dir / 'train.log').read_text()[-3000:]}") from None


def train(cfg, root=None, timeout: float = 300):
    """Create a run of `cfg` and train it to its end in this process, through the trainer's own entry point
    (`studio.train_process.main`, which the launched process runs): the same events, checkpoints and outputs,
    without the ~9 s of imports a new process pays. Tests whose subject is the process itself (Stop, a
    kill, the queue, a restarted app) `launch` it instead. The caller checks how it ended."""
    import signal

    from engine.train.preflight import create_run
    from studio import train_process

    run = create_run(cfg, root)
    run.events.write("launched")
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        train_process.main([str(run.dir / "config.yaml")])
    finally:
        for sig, handler in handlers.items():  # the trainer's Stop handlers are not pytest's
            signal.signal(sig, handler)
    return run


def train_process(cfg, root=None, timeout: float = 300):
    """Create and launch a run of `cfg` as its own process, and wait for it to end."""
    from engine.train.preflight import create_run
    from engine.train.runs import launch

    run = create_run(cfg, root)
    launch(run)
    wait_for(run, timeout)
    return run


def training(cfg, steps: int, timeout: float = 180):
    """Launch a run of `cfg` and return it once it has logged `steps` steps and is still training."""
    from engine.train.preflight import create_run
    from engine.train.runs import launch

    run = create_run(cfg)
    launch(run)
    deadline = time.time() + timeout
    while len(run.logged()) < steps and time.time() < deadline:
        time.sleep(0.2)
    assert run.status() == "running", (run.dir / "train.log").read_text()[-3000:]
    return run
