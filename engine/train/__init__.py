"""Stage 2, train: a run's description, the checks before it starts, the trainer process and its records.

    config.py       RunConfig: the one typed description of a run (UI form, YAML and CLI alike)
    methods.py      small pure functions from a RunConfig to peft / bitsandbytes settings
    preflight.py    what this machine can run (precision, refusals) and `create_run`, checked before launch
    trainer.py      one run: trl's trainer, events, Stop, the queue slot (started as python -m studio.train_process)
    objectives.py   the preference objectives' and GRPO's trainers; what GRPO's rollouts made (samples, timing)
    runs.py         the run registry: runs/<id>/, launch in its own process group, queue, stop, history
    events.py       typed events as JSON lines, folded into a run's state
    checkpoints.py  which checkpoints load; the damaged ones set aside
    distributed.py  DeepSpeed ZeRO through accelerate launch: config, command, rank set-up
    merge.py        a finished run's adapter folded into its base (for init_from and the exports)
    rewards.py      rewards a program can check, for GRPO (format, exact, numeric, length, JSON, judge, custom)

May import: engine.errors, engine.models, engine.demo, engine.capability, engine.owners, engine.accounts, engine.data
"""
