"""The one base class for what a person can cause: a bad file, a setting, a model that is not there.

    StudioError      one sentence for the person; the CLI prints it alone and the UI shows it as a warning
    anything else    a bug in the studio: the CLI prints the traceback and asks for a report

Each part keeps its own subclass (ConfigError, DataError, ModelError, UploadError, ExportError,
EstimateError, RunError here; rag's RagError), so a caller can catch one kind. rag/ may import this
module alone from engine/: it is the shared vocabulary, not an internal.
"""


class StudioError(Exception):
    """Something a person can cause, said in one sentence that names the file, line or field."""


class RunError(StudioError, RuntimeError):
    """A run that cannot do what was asked now (already running, finished, not found)."""
