"""Benchmarks before and after: evaluation-harness tasks scored on the base model and on a fine-tuned run,
by the harness itself (the `lm-eval` package), and what fine-tuning cost outside its training data.

The harness drives the studio's own OpenAI-compatible endpoint (engine/infer/serve.py) through its
`local-completions` model: multiple-choice tasks by log-likelihood (`echo` with `logprobs`), generation
tasks by greedy answers. That route, rather than the harness's in-process Hugging Face model, is the one
chosen: base and fine-tuned answer from one copy of the weights (the adapter switched per request), the
studio's batching serves the harness's requests, and the same command scores any OpenAI-compatible URL
(`--url`: another server, a hosted API). tests/test_benchmarks.py checks that its scores equal the
in-process harness's on the same tasks.

Tasks are the harness's own YAML files with local data (`dataset_path: json`; nothing is downloaded):
the project's in `assets/tasks/` (`zorvane_mc`, `zorvane_qa`: the sample's facts; `general_mc`: general
questions the project wrote, the forgetting check) and any folder of YAMLs a person gives. Each score
comes with its few-shot count and prompt template (scores differ from published ones with either), and a
95% interval (a bootstrap over the task's documents; the change from base to fine-tuned by a paired
bootstrap over the same documents).

    studio eval RUN_ID --tasks zorvane_mc,zorvane_qa,general_mc [--tasks-dir DIR] [--limit N] [--url URL]
"""

from __future__ import annotations

import functools
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import yaml

from engine.errors import StudioError
from engine.infer.serve import load_models, start
from engine.models import resolve_model
from engine.train.config import ASSETS
from engine.train.distributed import free_port
from engine.train.runs import Run

TASKS_DIR = ASSETS / "tasks"
BATCH = 8  # prompts per request: the endpoint answers them in one batch
FORGETTING = ("general_mc",)  # tasks outside the sample's domain: their drop is what fine-tuning cost


class BenchmarkError(StudioError, ValueError):
    """Tasks or a run the harness cannot score, in one sentence."""


@dataclass
class Score:
    task: str
    metric: str
    value: float
    low: float
    high: float
    n: int
    fewshot: int
    template: str  # the prompt as the task writes it (doc_to_text), and how it is sent

    def cell(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


@dataclass
class Change:
    task: str
    metric: str
    before: float
    after: float
    low: float  # 95% interval of after - before, paired over the same documents
    high: float

    def sentence(self) -> str:
        diff = self.after - self.before
        if self.low > 0:
            verdict = "better after fine-tuning"
        elif self.high < 0:
            verdict = "worse after fine-tuning"
        else:
            verdict = "no change the documents can tell"
        return (f"{self.task} {self.metric}: {self.before:.3f} -> {self.after:.3f} ({diff:+.3f}, 95% interval "
                f"[{self.low:+.3f}, {self.high:+.3f}]): {verdict}")


@dataclass
class Report:
    run: str
    base: str
    tasks: list[str]
    scores: dict[str, list[Score]] = field(default_factory=dict)  # "base" / "fine-tuned" -> scores
    changes: list[Change] = field(default_factory=list)
    forgetting: list[Change] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)

    def rows(self) -> list[dict]:
        """One row per task and metric: base and fine-tuned with intervals, the paired change, the prompt."""
        after = {(s.task, s.metric): s for s in self.scores.get("fine-tuned", [])}
        changes = {(c.task, c.metric): c for c in self.changes}
        out = []
        for s in self.scores.get("base", []):
            a, c = after.get((s.task, s.metric)), changes.get((s.task, s.metric))
            out.append({"task": s.task, "metric": s.metric, "shots": s.fewshot, "base": s.cell(),
                        "fine-tuned": a.cell() if a else "",
                        "change": f"{c.after - c.before:+.3f} [{c.low:+.3f}, {c.high:+.3f}]" if c else "",
                        "prompt": s.template})
        return out

    def table(self) -> str:
        head = ["task", "metric", "shots", "base", "fine-tuned", "change"]
        lines = ["| " + " | ".join(head[:5]) + " | change (95% interval) |", "|---|---|---|---|---|---|"]
        return "\n".join(lines + ["| " + " | ".join(str(r[k]) for k in head) + " |" for r in self.rows()])

    def lines(self) -> list[str]:
        templates = {s.task: (s.fewshot, s.template) for s in self.scores.get("base", [])}
        out = [self.table(), ""]
        out += [f"{task}: {shots}-shot, prompt {template!r}" for task, (shots, template) in templates.items()]
        if self.forgetting:
            out += ["", "Forgetting (outside the training data):"] + [c.sentence() for c in self.forgetting]
        return out


def task_folder(tasks_dir: str | Path | None = None) -> Path:
    """A folder of the task YAMLs the harness reads, their local data files made absolute (the harness reads
    a relative path from where it runs, not from the YAML)."""
    out = Path(tempfile.mkdtemp(prefix="studio-tasks-"))
    for folder in [TASKS_DIR] + ([Path(tasks_dir)] if tasks_dir else []):
        if not folder.is_dir():
            raise BenchmarkError(f"--tasks-dir: {folder} is not a folder of task YAML files.")
        for path in sorted(folder.glob("*.y*ml")):
            text = path.read_text(encoding="utf-8")
            try:
                task = yaml.safe_load(text)
            except yaml.YAMLError:  # harness tags (!function ...): copied as they are, beside their code
                task = None
            files = ((task or {}).get("dataset_kwargs") or {}).get("data_files")
            if isinstance(files, dict):
                task["dataset_kwargs"]["data_files"] = {
                    k: str((path.parent / v).resolve()) if not Path(v).is_absolute() else v for k, v in files.items()}
                text = yaml.safe_dump(task, sort_keys=False, allow_unicode=True)
            (out / path.name).write_text(text, encoding="utf-8")
        for code in folder.glob("*.py"):
            shutil.copy(code, out / code.name)
    return out


def available_tasks(tasks_dir: str | Path | None = None) -> list[str]:
    """The task names in assets/tasks/ (and `tasks_dir`), as their YAMLs name them."""
    names = []
    for folder in [TASKS_DIR] + ([Path(tasks_dir)] if tasks_dir else []):
        for path in sorted(folder.glob("*.y*ml")):
            try:
                names.append(str((yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("task") or path.stem))
            except yaml.YAMLError:
                names.append(path.stem)
    return names


@functools.lru_cache(maxsize=2)
def _task_manager(include: str, builtins: bool):
    """The harness's TaskManager over the folder `include`, and over its own ~10,000 task YAMLs too when
    `builtins` (seconds to index each time), kept for the folder's next evaluations (each evaluation's folder
    is its own, so two are kept)."""
    # deferred: the harness imports datasets, evaluate and torch: seconds the CLI should not pay at start
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=include, include_defaults=builtins)


def _harness(model: str, model_args: dict, tasks: list[str], include: Path, limit: int | None) -> dict:
    # deferred: the harness imports datasets, evaluate and torch: seconds the CLI should not pay at start
    from lm_eval import simple_evaluate

    # only the local folder is indexed unless a task asked for is not in it (a built-in task, whose data the
    # harness then fetches)
    manager = _task_manager(str(include), False)
    if any(t not in manager.all_tasks for t in tasks):
        manager = _task_manager(str(include), True)
    unknown = [t for t in tasks if t not in manager.all_tasks]
    if unknown:
        known = sorted(t for t in manager.all_tasks if (include / f"{t}.yaml").exists())
        raise BenchmarkError(f"--tasks: {', '.join(unknown)} not found; the tasks here are {', '.join(known)} "
                             "(add yours with --tasks-dir).")
    return simple_evaluate(model=model, model_args=model_args, tasks=tasks, task_manager=manager, limit=limit,
                           log_samples=True, bootstrap_iters=0)


def through_endpoint(url: str, model_id: str, tokenizer: str, tasks: list[str], include: Path,
                     limit: int | None = None, api_key: str | None = None) -> dict:
    """The harness's results for `model_id` served at `url` (an OpenAI-compatible base URL, .../v1)."""
    args = {"base_url": url.rstrip("/") + "/completions", "model": model_id, "tokenizer": tokenizer,
            "tokenizer_backend": "huggingface", "tokenized_requests": True, "num_concurrent": 1, "max_retries": 1,
            "batch_size": BATCH}
    if api_key:
        args["auth_token"] = api_key
    return _harness("local-completions", args, tasks, include, limit)


def in_process(model: str, adapter: str | None, tasks: list[str], include: Path, limit: int | None = None) -> dict:
    """The harness's results with its own in-process Hugging Face model (the check the endpoint is held to)."""
    args = {"pretrained": resolve_model(model), "dtype": "float32", "device": "cpu", "batch_size": 1}
    if adapter:
        args["peft"] = str(adapter)
    return _harness("hf", args, tasks, include, limit)


def per_document(results: dict) -> dict[tuple[str, str], dict[int, float]]:
    """(task, metric) -> {document id: its score}, from the harness's logged samples."""
    out: dict = {}
    for task, samples in (results.get("samples") or {}).items():
        for sample in samples:
            for key, value in sample.items():
                if isinstance(value, (int, float, bool)) and key not in ("doc_id", "target"):
                    out.setdefault((task, key), {})[int(sample["doc_id"])] = float(value)
    return out


def bootstrap(values, seed: int = 0, resamples: int = 2000) -> tuple[float, float]:
    """The 95% percentile-bootstrap interval of the mean of `values` (over documents)."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return 0.0, 0.0
    means = values[np.random.default_rng(seed).integers(0, len(values), size=(resamples, len(values)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def scores(results: dict) -> list[Score]:
    """Each task's metrics with their 95% intervals (bootstrap over the documents), few-shot count and prompt."""
    docs = per_document(results)
    out = []
    for task, metrics in results["results"].items():
        config = results["configs"].get(task, {})
        template = str(config.get("doc_to_text", ""))
        shots = int(results.get("n-shot", {}).get(task, config.get("num_fewshot") or 0) or 0)
        n = int(results.get("n-samples", {}).get(task, {}).get("effective", 0))
        for key, value in metrics.items():
            if "," not in key or "_stderr" in key or not isinstance(value, (int, float)):
                continue
            metric = key.split(",")[0]
            low, high = bootstrap(list(docs[(task, metric)].values())) if (task, metric) in docs else (value, value)
            out.append(Score(task, metric, float(value), low, high, n, shots, template))
    return out


def paired_change(before: dict[int, float], after: dict[int, float]) -> tuple[float, float, float, float]:
    """(before mean, after mean, low, high): the 95% bootstrap interval of the mean paired difference."""
    docs = sorted(set(before) & set(after))
    if not docs:
        return 0.0, 0.0, 0.0, 0.0
    b = np.array([before[d] for d in docs])
    a = np.array([after[d] for d in docs])
    return (float(b.mean()), float(a.mean()), *bootstrap(a - b))


def compare(run: Run, tasks: list[str], tasks_dir: str | Path | None = None, limit: int | None = None,
            url: str | None = None, api_key: str | None = None) -> Report:
    """The tasks scored on the run's base (adapter off) and the run, through the endpoint: the studio's own,
    started here for the two, or `url` serving the base under its name and the run under its id."""
    return compare_many([run], tasks, tasks_dir, limit, url, api_key)[0]


def compare_many(runs: list[Run], tasks: list[str], tasks_dir: str | Path | None = None, limit: int | None = None,
                 url: str | None = None, api_key: str | None = None) -> list[Report]:
    """`compare` for several runs of one base on one endpoint, the base scored once (`studio decide`)."""
    for run in runs:
        if run.weights is None:
            raise BenchmarkError(f"{run.no_weights()}; train it to the end first.")
    include = task_folder(tasks_dir)
    base = runs[0].base_model
    if url is None:
        models = load_models([r.id for r in runs], root=runs[0].dir.parent)
        port = free_port()
        server = start(models, port=port)
        url = f"http://127.0.0.1:{port}/v1"
        base = next(m for m in models if m not in {r.id for r in runs})
    else:
        server = None
    try:
        before = through_endpoint(url, base, str(runs[0].weights), tasks, include, limit, api_key)
        afters = [through_endpoint(url, r.id, str(r.weights), tasks, include, limit, api_key) for r in runs]
    finally:
        if server is not None:
            server.should_exit = True
    reports = []
    docs_before, scored_before = per_document(before), scores(before)
    for run, after in zip(runs, afters):
        report = Report(run.id, base, tasks, {"base": scored_before, "fine-tuned": scores(after)})
        docs_after = per_document(after)
        for s in report.scores["base"]:
            if (s.task, s.metric) in docs_before:
                b, a, low, high = paired_change(docs_before[(s.task, s.metric)],
                                                docs_after.get((s.task, s.metric), {}))
                report.changes.append(Change(s.task, s.metric, b, a, low, high))
        report.forgetting = [c for c in report.changes if c.task in FORGETTING and c.metric == "acc"]
        reports.append(report)
    return reports
