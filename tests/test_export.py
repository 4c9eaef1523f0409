"""Outputs of a finished run: merged model, archive, ONNX under ONNX Runtime, a push whose token stays secret."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from conftest import SAMPLE, train, SAME_ORDER, relative_error
from engine.export import archive as export
from engine.train.config import RunConfig

ROOT = Path(__file__).resolve().parent.parent


def _train(tiny_model, root, **kw):
    cfg = RunConfig(model=tiny_model, data=str(SAMPLE / "train.jsonl"), max_steps=15, learning_rate=1e-2,
                    batch_size=8, max_length=96, save_steps=100, **kw)
    run = train(cfg, root)
    assert run.status() == "finished", (run.dir / "train.log").read_text()[-3000:]
    return run


@pytest.fixture(scope="module")
def lora_run(tiny_model, tmp_path_factory):
    return _train(tiny_model, tmp_path_factory.mktemp("runs"))


def _logits(model, text="How heavy is the Tilly T2?"):
    ids = torch.tensor([[5, 17, 42, 99, 250, 7, 3]])
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_merged_model_answers_exactly_like_base_plus_adapter(lora_run, tiny_model):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    merged_dir = export.merge(lora_run)
    assert merged_dir == lora_run.dir / "merged" and not (lora_run.dir / "merged.tmp").exists()
    assert "library_name: transformers" in (merged_dir / "README.md").read_text()
    merged = AutoModelForCausalLM.from_pretrained(merged_dir).eval()
    assert not any("lora" in k for k in merged.state_dict())
    with_adapter = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model),
                                             str(lora_run.adapter)).eval()
    base = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    assert relative_error(_logits(merged), _logits(with_adapter)) < SAME_ORDER
    assert relative_error(_logits(merged), _logits(base)) > 100 * SAME_ORDER  # the adapter changed them


def test_qlora_adapter_merges_into_its_dequantised_base(tiny_model, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from engine.train.methods import quantization_config

    run = _train(tiny_model, tmp_path / "runs", method="qlora")
    merged = AutoModelForCausalLM.from_pretrained(export.merge(run)).eval()
    assert all(p.dtype == torch.float32 for p in merged.parameters())

    def quantised():
        return AutoModelForCausalLM.from_pretrained(tiny_model, quantization_config=quantization_config(run.config))

    # Exact: the same adapter on the dequantised 4-bit base, unmerged.
    unmerged = PeftModel.from_pretrained(quantised().dequantize().to(torch.float32), str(run.adapter)).eval()
    assert relative_error(_logits(merged), _logits(unmerged)) < SAME_ORDER
    # Close to the model as trained (4-bit base whose CPU kernels compute in bfloat16).
    trained = _logits(PeftModel.from_pretrained(quantised(), str(run.adapter)).eval())
    assert (_logits(merged) - trained).abs().max() < 0.1 * trained.abs().max()


def test_prompt_tuning_cannot_be_merged_and_says_so(tiny_model, tmp_path):
    run = _train(tiny_model, tmp_path / "runs", method="prompt-tuning")
    with pytest.raises(export.ExportError, match="method prompt-tuning: .* cannot be merged; export the adapter"):
        export.merge(run)
    assert export.archive(run).exists()


def test_archive_holds_the_adapter_and_it_reloads(lora_run, tiny_model, tmp_path):
    from engine.infer.chat import ChatModel

    path = export.archive(lora_run)
    assert path.name == f"{lora_run.id}-adapter.zip" and not path.with_name(path.name + ".tmp").exists()
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        zf.extractall(tmp_path)
    assert f"{lora_run.id}-adapter/adapter_model.safetensors" in names
    assert not any(n.endswith("training_args.bin") for n in names)  # no pickles in what people download
    card = (tmp_path / f"{lora_run.id}-adapter" / "README.md").read_text()
    assert card.startswith("---\nbase_model: ") and "method **lora**, objective **sft**" in card
    assert f"studio serve {lora_run.id}" in card
    chat = ChatModel(tiny_model, str(tmp_path / f"{lora_run.id}-adapter"))
    assert chat.generate([{"role": "user", "content": "Hi"}], max_new_tokens=3).answer_tokens > 0


def test_onnx_export_runs_under_onnx_runtime_with_the_same_logits(lora_run):
    import onnxruntime as ort
    from transformers import AutoModelForCausalLM

    path, diff = export.export_onnx(lora_run)
    assert path == lora_run.dir / "onnx" / "model.onnx" and diff < 1e-3
    assert "base_model: " in (path.parent / "README.md").read_text()
    session = ort.InferenceSession(str(path))
    ids = torch.tensor([[5, 17, 42, 99, 250, 7, 3, 8, 9]])  # another length than the checks
    got = session.run(None, {"input_ids": ids.numpy(), "attention_mask": torch.ones_like(ids).numpy()})[0]
    merged = AutoModelForCausalLM.from_pretrained(lora_run.dir / "merged").eval()
    with torch.no_grad():
        want = merged(input_ids=ids).logits.numpy()
    assert got.shape == want.shape and abs(got - want).max() < 1e-3
    assert (got[0, -1].argmax() == want[0, -1].argmax())


def test_push_uploads_the_adapter_and_the_token_never_appears_in_output_or_files(lora_run):
    from fake_hub import FakeHub

    secret = "hf_studioTestSecret0123456789"
    hub = FakeHub()
    try:
        env = {**os.environ, "STUDIO_RUNS": str(lora_run.dir.parent), "HF_TOKEN": secret, "HF_HUB_OFFLINE": "0"}
        proc = subprocess.run([sys.executable, "-m", "studio.cli", "export", lora_run.id, "--push", "me/tilly",
                               "--endpoint", hub.url], env=env, capture_output=True, text=True, cwd=ROOT,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        sent = hub.files["me/tilly"]
        assert sent["adapter_model.safetensors"] == (lora_run.adapter / "adapter_model.safetensors").read_bytes()
        assert "training_args.bin" not in sent
        card = sent["README.md"].decode()  # the Hub shows the model card
        assert f"base_model: {lora_run.config.model}" in card and "library_name: peft" in card
        assert "| learning_rate | 0.01 |" in card and "Final training loss" in card and "Examples: 68" in card
        assert "AutoPeftModelForCausalLM" in card and secret not in card
        auth = [{k.lower(): v for k, v in h.items()}.get("authorization") for _, _, h in hub.requests]
        assert auth and all(a == f"Bearer {secret}" for a in auth), auth
        assert secret not in proc.stdout + proc.stderr
        for path in lora_run.dir.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path
        # A refused upload (a bad or read-only token) names the problem without the token.
        hub.reject = True
        proc = subprocess.run([sys.executable, "-m", "studio.cli", "export", lora_run.id, "--push", "me/tilly",
                               "--endpoint", hub.url], env=env, capture_output=True, text=True, cwd=ROOT,
                              timeout=300)
        assert proc.returncode == 2 and "The upload to me/tilly failed" in proc.stderr
        assert secret not in proc.stdout + proc.stderr and "Traceback" not in proc.stderr
    finally:
        hub.close()


def test_push_without_a_token_says_where_to_put_one(lora_run, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(export.ExportError, match="No Hugging Face token: set HF_TOKEN"):
        export.push_to_hub(lora_run, "me/tilly")
    with pytest.raises(export.ExportError, match="not a repository id"):
        export.push_to_hub(lora_run, "tilly", token="x")


def test_model_card_carries_the_evaluation_table_when_one_was_run(lora_run):
    import json

    from engine.export.modelcard import card

    result = {"questions": 20, "summary": {"base": {"f1": 0.1, "em": 0.0, "rouge_l": 0.2, "semantic": 0.3,
                                                    "seconds": 1.5},
                                           "fine-tuned": {"f1": 0.6, "em": 0.4, "rouge_l": 0.7, "semantic": 0.8,
                                                          "seconds": 1.6}},
              "preference": {"pairs": 12, "before": 0.5, "after": 0.75, "file": "preference-eval.jsonl"}}
    (lora_run.dir / "eval.json").write_text(json.dumps(result))
    try:
        text = card(lora_run)
    finally:
        (lora_run.dir / "eval.json").unlink()
    assert "Evaluation on 20 questions" in text and "| fine-tuned | 0.600 | 0.40 | 0.700 | 0.800 | 1.60 |" in text
    assert "Preference accuracy on 12 held-out pairs (preference-eval.jsonl): 50% before (adapter off), 75% after." \
        in text
    assert "## Data" in text and "## Hyper-parameters" in text and "Final training loss" in text
