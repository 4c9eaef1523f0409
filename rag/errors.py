"""RagError: what a person can cause in retrieval (a questions file, a collection built with another
embedder), said in one sentence. A StudioError, the one base class of the project (engine/errors.py,
the only module of engine/ that rag/ imports), so the CLI and the UI treat it as they treat the rest."""

from engine.errors import StudioError


class RagError(StudioError, ValueError):
    """A retrieval input or collection that cannot be used, in one sentence."""
