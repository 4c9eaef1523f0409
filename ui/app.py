"""The studio's web page: Data -> Method -> Train -> Compare. Layout and wiring only.

Every handler here is a few lines that call `engine` or `rag`; training runs in a separate
process (engine/train/runs.py) and this page only reads its events file, so a reload or a
restart of the page loses nothing.

    studio                 # or: python -m ui.app ; then open http://127.0.0.1:7860
Environment: STUDIO_MODEL sets the model the form starts with; STUDIO_RUNS the runs
folder; GRADIO_SERVER_PORT / GRADIO_SERVER_NAME where it listens.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file (Hugging Face Spaces runs `python ui/app.py`)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import gradio as gr
# Imported once here, before handlers run in threads: transformers' lazy first import is not
# thread-safe ("cannot import name 'AutoTokenizer'" when two handlers import it at once).
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer  # noqa: F401

from engine.errors import StudioError
from engine import accounts, demo as public_demo
from engine.infer.chat import serve_forever
from engine.models import DEFAULT_MODEL, hub_reachable
from engine.data.uploads import max_upload_mb
from ui import i18n, owners
from ui.files import launch_paths
from ui.form import widget
from ui.chat_tab import NO_RETRIEVAL, build_chat_tab, refresh_chat_models
from ui.compare_tab import build_compare_tab, collections
from ui.data_tab import build_data_tab
from ui.method_tab import advice_markdown, build_method_tab, matrix_html, ranking_markdown
from ui.runs_tab import build_runs_tab, finished_runs
from ui.train_tab import build_train_tab, current_run
from ui.notify import refuse


def refresh_runs(trained, picked, request: gr.Request):
    """Offer this person's finished runs; pick the one just trained on this page, else keep the choice."""
    done = finished_runs(request)
    value = trained if trained in done else picked if picked in done else (done[0] if done else None)
    return gr.update(choices=done, value=value)


def open_in_compare(run_id, request: gr.Request):
    """The Runs tab's "Open in Compare": that run in the Compare tab's picker, and the tab shown."""
    owners.run_of(request, run_id)
    done = finished_runs(request)
    if run_id not in done:
        refuse(f"Run {run_id} has no adapter or model to answer with yet." if run_id else "Pick a run first.")
        return gr.update(), gr.update()
    return gr.update(choices=done, value=run_id), gr.Tabs(selected="compare")


# ---- Page -----------------------------------------------------------------------------

def build() -> gr.Blocks:
    default_model = os.environ.get("STUDIO_MODEL", DEFAULT_MODEL)
    with gr.Blocks(title="Fine-tuning studio") as demo:
        with gr.Row():
            gr.Markdown("# Fine-tuning studio\nUpload chat data, fine-tune with LoRA, and compare the "
                        "fine-tuned model with retrieval (RAG) on your own questions.")
            language = gr.Dropdown(i18n.LANGUAGES, value="en", label="Language", scale=0, min_width=160,
                                   elem_id="language")
            if owners.oauth_on():
                gr.LoginButton(scale=0, min_width=160)
        who_line = gr.Markdown(elem_id="who")
        visitor = owners.visitor_key()
        if public_demo.on():
            gr.Markdown(public_demo.NOTICE, elem_id="demo-notice")
        run_id = gr.State(None)
        # Defined here, shown on the Train tab: the Data tab's token counts use them too.
        model = widget("model", value=default_model, scale=3, render=False)
        max_len = widget("max_length", render=False)
        method = widget("method", scale=1, render=False)

        with gr.Tabs() as tabs:
            with gr.Tab("1 · Data", id="data"):
                dataset, (use_sample, data_outputs, data_after, data_view) = build_data_tab(model, max_len)

            with gr.Tab("2 · Method", id="method-tab"):
                questions, advice, scenarios, ranking, best, matrix, probed = build_method_tab(model, dataset, method, tabs)

            with gr.Tab("3 · Train", id="train") as train_tab:
                build_train_tab(train_tab, model, method, max_len, dataset, run_id)

            with gr.Tab("4 · Compare", id="compare") as compare_tab:
                run_pick, refresh_btn, compare_collection = build_compare_tab(run_id, model)

            with gr.Tab("5 · Chat", id="chat") as chat_tab:
                chat_pick, chat_collection = build_chat_tab(model)

            with gr.Tab("6 · Runs and export", id="runs") as runs_tab:
                (open_btn, export_pick), (show_history, history_outputs) = build_runs_tab()

        runs_tab.select(show_history, None, history_outputs)
        open_btn.click(open_in_compare, export_pick, [run_pick, tabs])
        for event in (refresh_btn.click, compare_tab.select):
            event(refresh_runs, [run_id, run_pick], run_pick)
        chat_tab.select(refresh_chat_models, chat_pick, chat_pick)

        def on_load(request: gr.Request):
            """What this person sees first: their run, their finished runs, their collections."""
            done = finished_runs(request)
            mine = collections(request)
            return (current_run(request), gr.update(choices=done, value=done[0] if done else None),
                    refresh_chat_models(None, request), gr.update(choices=[NO_RETRIEVAL] + mine),
                    gr.update(choices=mine), owners.banner(request))

        # Every label the translation table covers follows the switch, for this browser session only.
        labels = i18n.translatable(demo.blocks.values())
        language.change(lambda lang: i18n.relabel(labels, lang), language, i18n.components(labels),
                        js=i18n.DIRECTION_JS, show_progress="hidden", queue=False)
        demo.load(None, None, language, js=i18n.BROWSER_LANGUAGE_JS)
        # who is asking comes first (a browser's own key on a shared page), then everything of theirs
        demo.load(owners.open_page, visitor, visitor, show_progress="hidden").then(
            on_load, None, [run_id, run_pick, chat_pick, chat_collection, compare_collection, who_line],
            show_progress="hidden")
        demo.load(advice_markdown, questions, advice).then(ranking_markdown, scenarios, [ranking, best]).then(
            matrix_html, [scenarios, model, probed], matrix)
        demo.load(use_sample, None, data_outputs).then(**data_after).then(**data_view)
    return demo


def main(auth: bool = False, admins: tuple[str, ...] = (), runs_per_person: int | None = None,
         over_limit: str | None = None, models_dirs: tuple[str, ...] = ()) -> int:
    """Start the page. `auth`: sign-in with the accounts of `studio users add` (engine/accounts.py); `admins`:
    account names that see and may stop every run; `runs_per_person` / `over_limit`: the fair use of the
    training slot (ui/owners.py `fair_use`; None: STUDIO_RUNS_PER_PERSON / STUDIO_OVER_LIMIT); `models_dirs`:
    folders of models every person of a shared page may load (ui/owners.py `model_of`)."""
    if not hub_reachable():
        os.environ["HF_HUB_OFFLINE"] = "1"  # fail fast instead of waiting on a hub that is not there
    owners.SETTINGS.update(auth=auth, admins=set(admins), runs_per_person=runs_per_person, over_limit=over_limit,
                           models_dirs=list(models_dirs))
    try:
        owners.fair_use()  # a wrong STUDIO_OVER_LIMIT is said at start, not at the first Start
    except StudioError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if auth and not accounts.users():
        print(f"error: studio --auth needs an account first: studio users add NAME (accounts file "
              f"{accounts.accounts_file()})", file=sys.stderr)
        return 2
    demo = build()
    demo.queue(default_concurrency_limit=2).launch(
        auth=accounts.check if auth else None,
        auth_message="Sign in with your studio account." if auth else None,
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        theme=gr.themes.Soft(), ssr_mode=False,
        max_file_size=f"{max_upload_mb():g}mb",  # gradio refuses bigger uploads before they land
        **launch_paths(),  # runs, collections, caches and the checkout are never served or read as inputs
        prevent_thread_lock=True,
    )
    try:
        serve_forever()  # this main thread runs every generate: torch's parallel ops start fastest here
    except KeyboardInterrupt:
        demo.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
