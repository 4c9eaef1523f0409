"""Hugging Face Spaces: the README's header makes the repository a Gradio Space as it is, and the
app starts the way a Space starts it (`python ui/app.py`, listening where GRADIO_SERVER_* say).
"""

import re
import sys
import urllib.request
from pathlib import Path

import gradio
import yaml

ROOT = Path(__file__).resolve().parent.parent


def _header() -> dict:
    text = (ROOT / "README.md").read_text()
    m = re.match(r"---\n(.*?)\n---\n", text, re.S)
    assert m, "README.md must open with the Space's YAML header"
    return yaml.safe_load(m.group(1))


def test_the_readme_header_describes_a_gradio_space_of_this_repository():
    header = _header()
    assert header["sdk"] == "gradio"
    assert str(header["sdk_version"]) == gradio.__version__  # the version the tests ran against
    assert (ROOT / header["app_file"]).is_file()
    assert len(header.get("short_description", "")) <= 60  # longer is refused by the Hub
    requirements = [line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()
                    if line.strip() and not line.startswith("#")]
    # the Space installs this package, so its dependencies are pyproject's; torch first, as the CPU build CI
    # installs (.ci/setup), from PyTorch's CPU index: from PyPI alone a CPU Space would get the CUDA build
    tested = re.search(r'"(torch==[^"]+\+cpu)"', (ROOT / ".ci" / "setup").read_text()).group(1)
    assert requirements == ["--extra-index-url https://download.pytorch.org/whl/cpu", tested, "."]


def test_the_app_starts_as_a_space_starts_it(tiny_model, tmp_path):
    from studio.app import running_app

    env = {"GRADIO_SERVER_NAME": "127.0.0.1", "SPACE_ID": "you/studio", "STUDIO_MODEL": tiny_model,
           "STUDIO_DEMO": "1"}
    with running_app(env, home=tmp_path, args=[sys.executable, _header()["app_file"]]) as app:
        page = urllib.request.urlopen(app.url + "config", timeout=10).read().decode()
    assert "Fine-tuning studio" in page and "Public demo" in page  # the demo notice, as set on a public Space
