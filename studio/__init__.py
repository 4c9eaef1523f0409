"""The composition layer: the `studio` command, the benchmarks and the app-start helper.

This package and `ui/` are the only places that join `engine` (training, runs, models) and `rag`
(retrieval); `engine` and `rag` import neither `ui` nor `studio` nor each other (tests/test_imports.py
reads the imports and fails on a wrong arrow).
"""
