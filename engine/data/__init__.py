"""Stage 1, data: what a person brings, read, checked and measured before anything trains.

    formats.py   the shapes (chat, ShareGPT, Alpaca, prompt/completion, text, preference pairs) read by line
    dataset.py   the validation report, token statistics, loss masks, the split, the export to chat JSONL
    pairs.py     preference data: which shapes an objective takes, pairs in trl's form, their statistics
    prompts.py   prompt data for GRPO: trl's prompt rows with reference answers, their statistics
    uploads.py   uploaded files checked before they are read (size, type, text that is text)
    bench.py     validator speed (`studio data bench`)

May import: engine.errors, engine.models, engine.demo, engine.capability, engine.owners, engine.accounts
"""
