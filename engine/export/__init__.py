"""Stage 5, use: a finished run's outputs for other tools.

    archive.py     merged model with its card, zip archive, ONNX (checked under ONNX Runtime), Hub push
    gguf.py        GGUF for llama.cpp and Ollama, with a Modelfile, through llama.cpp's own converter
    modelcard.py   the README model card every export carries

May import: engine.errors, engine.models, engine.demo, engine.capability, engine.owners, engine.accounts, engine.data, engine.train
"""
