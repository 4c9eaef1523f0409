"""The page's one way to say what a person can fix, so every tab reads the same.

    refuse(err)   a warning on the page, and the sentence as "**Refused:** ..." for the tab's status line
    fail(err)     for an API-only endpoint: the sentence as an error its client receives

A StudioError's sentence goes through as it is. A bug is not a person's to fix: it is not caught
here, so Gradio shows its error and the app's log keeps the traceback.

    Part of the studio page; no layout here.
"""

from __future__ import annotations

import gradio as gr


def refuse(what: BaseException | str) -> str:
    text = what.message if isinstance(what, gr.Error) else str(what)  # a gr.Error's str is its message quoted
    gr.Warning(text)
    return f"**Refused:** {text}"


def fail(what: BaseException | str):
    raise gr.Error(str(what))
