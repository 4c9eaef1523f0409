"""The method advisor: the published scenario matrix, the project's reading of it, a ranking, and
whether prompting, RAG, fine-tuning or RAG + fine-tuning answers the person's need.

    python -m engine.advise.advisor                      # the matrix with the project's readings
    python -m engine.advise.advisor memory cost          # methods ranked for those scenarios

The published matrix is kept exactly as published (Yes/No per method). Where a cell is
arguable, `READINGS` holds the project's own reading and its evidence (a formula the
estimator computes, a probe measurement, or a reference). Ranking uses the readings
where there are any, else the published cell, and breaks ties by how little memory the
method needs when memory or cost is a scenario, else by how simple it is to run well; a column maps to a concrete studio method so the advice can be trained.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

from engine.advise.estimate import GB, OBJECTIVE_COST, estimate_memory, gpus_needed
from engine.models import shape_of

COLUMNS = ("LoRA", "QLoRA", "PEFT", "DeepSpeed", "ZeRO", "DoRA")
# Studio method (and ZeRO stage) each column stands for when the advice is turned into a run.
COLUMN_RUN = {"LoRA": {"method": "lora"}, "QLoRA": {"method": "qlora"}, "PEFT": {"method": "ia3"},
              "DeepSpeed": {"method": "full", "zero_stage": 2}, "ZeRO": {"method": "full", "zero_stage": 3},
              "DoRA": {"method": "dora"}}
Y, N = True, False
SCENARIOS = {
    "domain": ("Adapting pre-trained LLMs to specific tasks or domains", (Y, Y, Y, Y, Y, Y)),
    "nlp": ("Fine-tuning for NLP tasks such as text classification, named entity recognition and machine "
            "translation", (Y, Y, Y, Y, Y, Y)),
    "qa": ("Fine-tuning for question answering", (Y, Y, Y, Y, Y, Y)),
    "chatbot": ("Fine-tuning to generate human-like responses in chatbots", (Y, Y, Y, Y, Y, Y)),
    "creative": ("Fine-tuning to generate music, art or other creative work", (Y, Y, Y, Y, Y, Y)),
    "cost": ("Reducing computational and financial costs", (Y, Y, N, Y, Y, N)),
    "memory": ("Reducing memory usage", (N, Y, N, Y, Y, Y)),
    "fewer_params": ("Using fewer parameters for efficient fine-tuning", (N, Y, Y, N, N, Y)),
    "data_parallel": ("Memory-efficient data parallelism giving access to the combined GPU memory of all "
                      "devices", (N, N, N, Y, Y, Y)),
}


@dataclass
class Reading:
    value: bool | None  # the project's Yes / No; None = "depends", said in the text
    text: str
    evidence: str  # formula, probe, or reference


READINGS: dict[tuple[str, str], Reading] = {
    ("cost", "PEFT"): Reading(True, "PEFT methods train a small share of the weights, so gradients and "
                              "optimizer states shrink with it.",
                              "formula: trained parameters (estimator); e.g. IA3 on SmolLM2-135M trains "
                              "{ia3_share} of the weights"),
    ("cost", "DoRA"): Reading(True, "DoRA trains about as many parameters as LoRA, but each step "
                              "costs more (the weight norm is recomputed).",
                              "probe: DoRA tokens/s against LoRA's on your model"),
    ("memory", "LoRA"): Reading(True, "against full fine-tuning: gradients and Adam states exist only for "
                                "the adapters.",
                                "formula: {lora_mem} GiB with LoRA vs {full_mem} GiB full fine-tuning for "
                                "{model} (estimator)"),
    ("memory", "PEFT"): Reading(True, "for the same reason as LoRA.",
                                "formula: {ia3_mem} GiB with IA3 vs {full_mem} GiB full (estimator)"),
    ("fewer_params", "LoRA"): Reading(True, "r x (in + out) numbers per adapted matrix.",
                                      "formula: LoRA r=16 on all linear layers trains {lora_share} of {model}"),
    ("fewer_params", "DeepSpeed"): Reading(False, "as published: ZeRO splits the states, it trains "
                                           "every parameter it is given.", "DeepSpeed ZeRO paper (Rajbhandari "
                                           "et al., 2020)"),
    ("cost", "DeepSpeed"): Reading(None, "ZeRO lets a model fit on fewer or smaller GPUs, but adds "
                                   "communication and does no less compute per token.",
                                   "formula: GPUs needed for {model} full fine-tuning: {gpus_zero} with ZeRO-3 "
                                   "vs {gpus_plain} without (80 GB GPUs)"),
    ("data_parallel", "DoRA"): Reading(None, "only when run under ZeRO: DoRA is an adapter, not a way to run "
                                       "over many GPUs; the studio runs any method with zero_stage above 0.",
                                       "DeepSpeed and ZeRO are launchers: `zero_stage` applies to every method"),
    ("memory", "DoRA"): Reading(True, "like LoRA, with slightly more activations than LoRA.",
                                "formula: {dora_mem} GiB with DoRA vs {lora_mem} GiB LoRA (estimator)"),
}
READINGS[("cost", "ZeRO")] = READINGS[("cost", "DeepSpeed")]
READINGS[("fewer_params", "ZeRO")] = READINGS[("fewer_params", "DeepSpeed")]
# Claims checked against the estimator (see `claims`).
CLAIMS = (
    "QLoRA stores the base weights in 4 bits and trains about 30% slower than LoRA",
    "a 70B model that needs 36 GPUs for full fine-tuning can be tuned on 2 with QLoRA",
)
# Tie-breaks: when memory or cost is asked for, the smallest peak memory first (the estimator's usual
# ordering); otherwise the simplest method to run well first.
MEMORY_ORDER = ("QLoRA", "PEFT", "LoRA", "DoRA", "ZeRO", "DeepSpeed")
SIMPLE_ORDER = ("LoRA", "DoRA", "QLoRA", "PEFT", "DeepSpeed", "ZeRO")


# ---- preference objectives: the studio's own rows (the published matrix has none) ------------------

PREFERENCE_SCENARIOS = {
    "align": ("Aligning tone, safety or style with human choices", "dpo"),
    "pairs": ("I have better / worse answer pairs", "dpo"),
    "thumbs": ("I only have thumbs up / down on single answers", "kto"),
    "skill": ("Teach a skill a program can check: a format, an exact answer, valid JSON, arithmetic", "grpo"),
}
TAKES = {"pairs": "pairs", "thumbs": "unpaired labels", "prompts": "prompts (with answers a reward checks)"}
# objective: (the data it takes, the trade-off, the evidence)
OBJECTIVE_TRADEOFFS = {
    "dpo": ("pairs", "Needs a reference pass: a frozen model scores both answers at every step (with an adapter "
                     "it is the base with the adapter off, so no second copy of the weights). The most studied "
                     "objective; best after an SFT stage (start from that run: init_from).",
            "estimator: {dpo_mem} GiB vs {lora_mem} GiB for SFT, about 3x SFT's compute per example ({model}, "
            "LoRA); Rafailov et al. 2023 (DPO); measured on the default model in the README's preference table"),
    "orpo": ("pairs", "No reference pass and no separate SFT stage: the SFT loss on the chosen answer plus an "
                      "odds-ratio penalty on the rejected one.",
             "estimator: {orpo_mem} GiB, about 2x SFT's compute; Hong et al. 2024 (ORPO)"),
    "simpo": ("pairs", "No reference pass and no separate SFT stage: a length-normalised reward margin with a "
                       "target gap (simpo_gamma); it wants a larger beta (about 2).",
              "estimator: {orpo_mem} GiB, about 2x SFT's compute; Meng et al. 2024 (SimPO)"),
    "kto": ("thumbs", "Takes unpaired good / bad labels, so thumbs up / down from use are enough (it needs both "
                      "kinds); a reference pass as for DPO.",
            "estimator: {kto_mem} GiB, about 2.5x SFT's compute; Ethayarajh et al. 2024 (KTO)"),
    "grpo": ("prompts", "No answers to imitate and no pairs: the model writes several answers to each prompt and "
                        "reward functions score them (a format, a match with the reference, a number, valid JSON, "
                        "a judge). It can only reinforce what the model sometimes does already: a skill the base "
                        "never shows gets no signal (teach it with SFT first). Generation is most of a step on a "
                        "CPU.",
             "estimator: {grpo_mem} GiB, about {grpo_cost}x SFT's time per token (sampling the answers plus "
             "training on them); Shao et al. 2024 (DeepSeekMath, GRPO); measured on the default model in the "
             "README's GRPO section"),
}


def preference_rows(chosen: list[str] | None = None, model: str = "HuggingFaceTB/SmolLM2-135M-Instruct") -> list[dict]:
    """One row per objective: what data it takes, whether it fits the chosen scenarios, the trade-off and
    its evidence (numbers from the estimator for `model`)."""
    chosen = [c for c in (chosen or []) if c in PREFERENCE_SCENARIOS]
    f = facts(model)
    rows = []
    for objective, (takes, text, evidence) in OBJECTIVE_TRADEOFFS.items():
        wanted = {"thumbs" if c == "thumbs" else "prompts" if c == "skill" else "pairs" for c in chosen}
        fits = not chosen or takes in wanted
        rows.append({"objective": objective, "takes": TAKES[takes],
                     "fits": fits, "reading": text, "evidence": evidence.format(**f)})
    return rows


def recommend_objective(chosen: list[str]) -> str | None:
    """The objective for the chosen scenarios: grpo for a checkable skill alone, kto for thumbs up/down only,
    else dpo."""
    picked = [c for c in chosen if c in PREFERENCE_SCENARIOS]
    if not picked:
        return None
    if picked == ["skill"]:
        return "grpo"
    picked = [c for c in picked if c != "skill"]
    return "kto" if picked == ["thumbs"] or ("thumbs" in picked and "pairs" not in picked) else "dpo"


def facts(model: str = "HuggingFaceTB/SmolLM2-135M-Instruct") -> dict[str, str]:
    """Numbers the readings quote, computed by the estimator for `model` (GPU, bf16, batch 4 x 512)."""
    shape = shape_of(model)

    def mem(method, objective="sft"):
        return f"{estimate_memory(shape, method, objective=objective).total / GB:.2f}"

    def share(method):
        return f"{estimate_memory(shape, method).trainable / shape.params:.2%}"

    return {"model": shape.name.split("/")[-1], "lora_mem": mem("lora"), "full_mem": mem("full"),
            "ia3_mem": mem("ia3"), "dora_mem": mem("dora"), "dpo_mem": mem("lora", "dpo"),
            "orpo_mem": mem("lora", "orpo"), "kto_mem": mem("lora", "kto"), "grpo_mem": mem("lora", "grpo"),
            "grpo_cost": f"{OBJECTIVE_COST['grpo'][1]:g}", "lora_share": share("lora"), "ia3_share": share("ia3"),
            "gpus_zero": str(gpus_needed(shape, 80, "full", zero_stage=3)),
            "gpus_plain": "1" if estimate_memory(shape, "full").total <= 80 * GB else "not possible on one"}


def matrix_rows(chosen: list[str] | None = None, model: str = "HuggingFaceTB/SmolLM2-135M-Instruct") -> list[dict]:
    """One row per scenario: the published cells, and the project's reading beside each arguable one."""
    chosen = chosen or []
    f = facts(model)
    rows = []
    for key, (text, cells) in SCENARIOS.items():
        row = {"key": key, "scenario": text, "chosen": key in chosen}
        for col, cell in zip(COLUMNS, cells):
            reading = READINGS.get((key, col))
            row[col] = "Yes" if cell else "No"
            if reading:
                ours = {True: "Yes", False: "No", None: "Depends"}[reading.value]
                row[col + " (ours)"] = f"{ours}: {reading.text} Evidence: {reading.evidence.format(**f)}"
        rows.append(row)
    return rows


def rank(chosen: list[str]) -> list[tuple[str, float, dict]]:
    """Columns ranked for the chosen scenarios: (column, scenarios served, the studio run it stands for)."""
    unknown = [c for c in chosen if c not in SCENARIOS]
    if unknown:
        raise ValueError(f"scenario {unknown[0]!r} is not one of {', '.join(SCENARIOS)}.")
    scores = {}
    for i, col in enumerate(COLUMNS):
        score = 0
        for key in chosen:
            reading = READINGS.get((key, col))
            published = SCENARIOS[key][1][i]
            if reading and reading.value is None:
                score += 0.5  # "depends": half a scenario
            else:
                score += bool(reading.value if reading else published)
        scores[col] = score
    ties = MEMORY_ORDER if {"memory", "cost"} & set(chosen) else SIMPLE_ORDER
    order = sorted(COLUMNS, key=lambda c: (-scores[c], ties.index(c)))
    return [(c, scores[c], COLUMN_RUN[c]) for c in order]


def claims(model: str = "meta-llama/Llama-3.1-70B-Instruct") -> list[dict]:
    """The two published claims, with what the estimator says."""
    shape = shape_of(model)
    q = estimate_memory(shape, "qlora", batch_size=1, seq_len=512, gradient_checkpointing=True)
    bits = (q.weights - q.trainable * 4) * 8 / shape.params
    full40 = gpus_needed(shape, 40, "full", batch_size=1, seq_len=512, gradient_checkpointing=True)
    full80 = gpus_needed(shape, 80, "full", batch_size=1, seq_len=512, gradient_checkpointing=True)
    qlora48 = gpus_needed(shape, 48, "qlora", zero_stage=0, batch_size=1, seq_len=512, gradient_checkpointing=True)
    # Layers split over GPUs (device_map="auto"): each holds its share, plus its own runtime overhead.
    qlora24 = math.ceil((q.total - q.overhead) / (24 * GB - q.overhead))
    return [
        {"claim": CLAIMS[0], "reading": f"Weights: {bits:.2f} bits per parameter on average for {shape.name} "
         "(nf4 with double quantisation on the linear layers; embeddings stay 16-bit). Speed: measured by the "
         "probe on your machine (bitsandbytes dequantises every weight each step, so it is slower than LoRA)."},
        {"claim": CLAIMS[1], "reading": f"Full fine-tuning of {shape.name} (bf16, AdamW, batch 1 x 512, "
         f"gradient checkpointing, ZeRO-3): {full40} x 40 GB or {full80} x 80 GB GPUs. QLoRA: "
         f"{q.total / GB:.0f} GiB, so {qlora48 or 'more than 512'} x 48 GB GPU, or {qlora24} x 24 GB with the "
         "layers split across them. Consistent with the claim (36 GPUs is the 40 GB count within the estimate's "
         "error; 2 GPUs for QLoRA)."},
    ]


# ---- RAG, fine-tuning, or both ----------------------------------------------------------

QUESTIONS = {
    "changing": "Does the answer need facts that change often, or that must be cited with a source?",
    "style": "Is the need a stable domain vocabulary, format, tone or behaviour?",
    "examples": "How many good example answers (question and answer pairs) do you have?",
    "traceable": "Must every answer be traceable to a document?",
    "prompting": "Did you try prompt engineering or few-shot examples, and how good was it?",
}
EXAMPLE_CHOICES = ("none", "under 100", "100-1,000", "over 1,000")
PROMPTING_CHOICES = ("not tried", "good enough", "close but inconsistent", "poor")


@dataclass
class Advice:
    route: str  # prompting, RAG, fine-tuning, RAG + fine-tuning
    reasons: list[str]
    next_step: str
    hosted: str
    self_managed: str


def recommend(changing: bool, style: bool, examples: str, traceable: bool, prompting: str) -> Advice:
    """Prompting, RAG, fine-tuning, or RAG + fine-tuning, with the reasons."""
    if examples not in EXAMPLE_CHOICES:
        raise ValueError(f"examples: {examples!r} is not one of {', '.join(EXAMPLE_CHOICES)}.")
    if prompting not in PROMPTING_CHOICES:
        raise ValueError(f"prompting: {prompting!r} is not one of {', '.join(PROMPTING_CHOICES)}.")
    reasons = []
    needs_rag = changing or traceable
    if changing:
        reasons.append("Facts that change must live outside the weights: a fine-tuned model repeats what it "
                       "learned, while RAG reads today's documents.")
    if traceable:
        reasons.append("Traceability needs the passage an answer came from; RAG returns its sources, a "
                       "fine-tuned model cannot.")
    enough = examples in ("100-1,000", "over 1,000")
    wants_ft = style and enough or prompting in ("close but inconsistent", "poor") and enough
    if style and not enough:
        reasons.append(f"A stable style or vocabulary is what fine-tuning teaches, but {examples} examples is "
                       "thin: collect at least 100 good ones (the Data tab counts them).")
    if style and enough:
        reasons.append("A stable vocabulary, format or tone is what fine-tuning teaches best, and you have "
                       "enough examples for it.")
    if prompting == "good enough" and not needs_rag:
        route = "prompting"
        reasons.append("Prompting already works: keep it, and fine-tune only when cost or latency of long "
                       "prompts starts to matter.")
    elif prompting == "not tried" and not needs_rag and not (style and enough):
        route = "prompting"
        reasons.append("Try a good system prompt with a few examples first: it costs minutes, and tells you "
                       "how far the base model already gets.")
    elif needs_rag and wants_ft:
        route = "RAG + fine-tuning"
        reasons.append("Fine-tune for the style and format, and retrieve for the facts: the fine-tuned model "
                       "learns to use the passages the way your examples do.")
    elif needs_rag:
        route = "RAG"
    elif wants_ft:
        route = "fine-tuning"
        if prompting in ("close but inconsistent", "poor"):
            reasons.append(f"Prompting was {prompting}: fine-tuning makes the behaviour consistent without a "
                           "long prompt on every call.")
    else:
        route = "prompting"
        reasons.append("Nothing here calls for new weights or retrieval yet: improve the prompt, and gather "
                       "examples while you do.")
    next_step = ("Check it on your own questions in the Compare tab: it shows the base model, base + RAG, "
                 "fine-tuned and fine-tuned + RAG side by side, with sources, latency and scores.")
    hosted = ("Hosted fine-tuning: export the cleaned data (`studio data export ... -o train.chat.jsonl`, the "
              "chat format hosted services take) and upload it; you pay per training token (typically a few "
              "dollars per million tokens for a small model) and per call afterwards, with no GPU to manage, "
              "but the weights stay with the service.")
    self_managed = ("Self-managed: train here (LoRA on the default model takes minutes on a CPU) or on a rented "
                    "GPU at its hourly price (the estimate above gives the hours); you keep the adapter and "
                    "can run it anywhere.")
    return Advice(route, reasons, next_step, hosted, self_managed)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv:
        for col, score, run in rank(argv):
            print(f"{col:<10}{score:g}/{len(argv)} scenarios   studio: {run}")
        return 0
    for row in matrix_rows():
        print(row["scenario"])
        print("   " + "  ".join(f"{c}: {row[c]}" for c in COLUMNS))
        for c in COLUMNS:
            if c + " (ours)" in row:
                print(f"   {c} (ours): {row[c + ' (ours)']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
