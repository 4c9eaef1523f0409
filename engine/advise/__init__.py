"""Stage 2, method: advice before a run (prompting, RAG, fine-tuning or both; which method) and what it costs.

    advisor.py    the questionnaire, the published scenario matrix with the project's readings, the ranking
    estimate.py   formulas: memory per device, trained parameters, FLOPs, time and cost
    plan.py       a run's plan on a device: the formulas with this machine's measured capability and runs
    probe.py      a few steps of each candidate method on the person's model and data, measured

May import: engine.errors, engine.models, engine.demo, engine.capability, engine.owners, engine.accounts, engine.data, engine.train
"""
