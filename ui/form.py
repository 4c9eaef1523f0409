"""Widgets made from RunConfig's fields: label, help, choices and starting value come from engine/train/config.py.

    widget("learning_rate")            -> gr.Number labelled "Learning rate", its help as info, the preset's value
    to_values(components, got)         -> {"learning_rate": 0.001, ...} from a handler's {component: value}

The Train form opens on the named preset `FORM_PRESET` (its values shown in the YAML preview); a
handler takes its inputs as a set of components, so nothing depends on their order.

    Part of the studio page (ui/app.py, ui/train_tab.py); no layout of its own.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, get_origin, get_type_hints

import gradio as gr

from engine.train.config import FORM_PRESET, LABELS, RANGES, RunConfig, choices
from engine.train.methods import METHODS

FIELDS = {f.name: f for f in fields(RunConfig)}
HINTS = get_type_hints(RunConfig)
PRESET = RunConfig.preset(FORM_PRESET)
ELEM_IDS = {"trust_remote_code": "remote-code", "zero_stage": "zero"}  # ids the page and its tests know
# How a choice reads in a dropdown, where its name alone says too little.
SHOWN = {"method": lambda k: f"{k}: {METHODS[k]}"}


def widget(name: str, **kw: Any) -> gr.components.Component:
    """The form widget of RunConfig field `name`; `kw` adds layout (scale, render, ...) or changes the info."""
    f, hint = FIELDS[name], HINTS[name]
    value = kw.pop("value", getattr(PRESET, name))
    common = dict(label=LABELS[name], info=f.metadata["help"], elem_id=ELEM_IDS.get(name, name.replace("_", "-")))
    common.update(kw)
    if name in choices():
        options = [(SHOWN[name](c), c) if name in SHOWN else c for c in choices()[name]]
        return gr.Dropdown(options, value=value, **common)
    if hint is bool:
        return gr.Checkbox(value, **common)
    if hint is int:
        low = _low(name)
        return gr.Number(value, precision=0, **({"minimum": low} if low is not None and low > 0 else {}), **common)
    if hint is float:
        return gr.Number(value, **common)
    if get_origin(hint) is list:
        return gr.Textbox(", ".join(value), **common)
    return gr.Textbox(value, **common)


def _low(name: str):
    return RANGES[name][0] if name in RANGES else None


def to_values(components: dict[str, gr.components.Component], got: dict) -> dict[str, Any]:
    """A handler's {component: value} as {field: value} for the fields in `components`."""
    out = {}
    for name, comp in components.items():
        if comp in got:
            value = got[comp]
            if HINTS[name] is int and isinstance(value, float) and value == int(value):
                value = int(value)
            out[name] = value
    return out


