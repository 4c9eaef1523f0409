"""Stage 4 and 5, compare and use: a base model and finished runs answering questions.

    chat.py         ChatModel: the base and its adapters on one copy of the weights, batched generation
    batching.py     the one generation executor: requests from every caller joined into batches
    kernels.py      packed and row-masked LoRA linears for mixed batches on a CPU
    playground.py   the Chat tab's turns, its Stop and "save this exchange as a training example"
    preference.py   preference accuracy of a run on held-out pairs, before and after
    reward_scores.py  a GRPO run's reward on held-out prompts, before and after, with intervals
    served.py       the contract between the server and an engine that answers (a Protocol)
    serve.py        the OpenAI-compatible endpoint (`studio serve`) on the studio's own engine
    serve_vllm.py   the same endpoint answered by vLLM on a GPU
    decoding.py     a decoding step's per-row work: penalties, JSON grammar, seeds, log-probabilities
    constrain.py    JSON mode: the answer held to a JSON schema while it is decoded
    benchmarks.py   evaluation-harness tasks before and after, through the endpoint; the forgetting line
    rollouts.py     GRPO's completions sampled by the executor, following the trained LoRA weights

May import: engine.errors, engine.models, engine.demo, engine.capability, engine.owners, engine.accounts, engine.data, engine.train
"""
