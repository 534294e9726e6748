"""Modals as Discord documents them: the bot's form (interaction callback type 9), checked as strictly as Discord
checks it, and the member's submission (interaction type 5), shaped as Discord sends it.

A form answers only a slash command, a message command or a component click (types 2 and 3), as the interaction's
first and only response; it holds 1–5 top-level components: a Label (type 18) wrapping a text input (4), a string
select (3) or a file upload (19), a text display (10), or the legacy action row (1) holding one text input that
carries its own label. Uploaded files come in the submit as attachment ids, resolved in `resolved.attachments`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.fakes.discord.rest import ApiError

LABEL, ACTION_ROW, TEXT_INPUT, STRING_SELECT, TEXT_DISPLAY, FILE_UPLOAD = 18, 1, 4, 3, 10, 19
MAX_TEXT = 4000


def invalid(where: str, why: str) -> ApiError:
    return ApiError(400, 50035, f"Invalid Form Body: {where}: {why}")


def _text(value: Any, where: str, low: int, high: int, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or not low <= len(value) <= high:
        raise invalid(where, f"must be a string of {low}-{high} characters")


def _int(value: Any, where: str, low: int, high: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise invalid(where, f"must be an integer from {low} to {high}")


def _text_input(control: dict[str, Any], where: str, *, labelled: bool) -> None:
    _text(control.get("custom_id"), f"{where}.custom_id", 1, 100)
    if control.get("style") not in (1, 2):
        raise invalid(f"{where}.style", "must be 1 (short) or 2 (paragraph)")
    if not labelled:  # inside a Label the label's text is shown (discord.py sends "label": null there)
        _text(control.get("label"), f"{where}.label", 1, 45)
    _int(control.get("min_length"), f"{where}.min_length", 0, MAX_TEXT)
    _int(control.get("max_length"), f"{where}.max_length", 1, MAX_TEXT)
    _text(control.get("value"), f"{where}.value", 0, int(control.get("max_length") or MAX_TEXT), optional=True)
    _text(control.get("placeholder"), f"{where}.placeholder", 0, 100, optional=True)


def _select(control: dict[str, Any], where: str) -> None:
    _text(control.get("custom_id"), f"{where}.custom_id", 1, 100)
    options = control.get("options")
    if not isinstance(options, list) or not 1 <= len(options) <= 25:
        raise invalid(f"{where}.options", "must hold 1-25 options")
    for i, option in enumerate(options):
        _text(option.get("label"), f"{where}.options[{i}].label", 1, 100)
        _text(option.get("value"), f"{where}.options[{i}].value", 1, 100)
    _int(control.get("min_values"), f"{where}.min_values", 0, 25)
    _int(control.get("max_values"), f"{where}.max_values", 1, 25)


def _count(control: dict[str, Any], key: str) -> int:
    """min_values / max_values: 1 when absent or null (discord.py sends null for what it leaves unset)."""
    value = control.get(key)
    return 1 if value is None else int(value)


def validate_form(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The form's controls (text inputs and selects), or the 50035 Discord answers for a malformed form."""
    _text(data.get("custom_id"), "data.custom_id", 1, 100)
    _text(data.get("title"), "data.title", 1, 45)
    components = data.get("components")
    if not isinstance(components, list) or not 1 <= len(components) <= 5:
        raise invalid("data.components", "a modal holds 1-5 components")
    controls = []
    for i, component in enumerate(components):
        where = f"data.components[{i}]"
        kind = component.get("type")
        if kind == LABEL:
            _text(component.get("label"), f"{where}.label", 1, 45)
            _text(component.get("description"), f"{where}.description", 0, 100, optional=True)
            control = component.get("component")
            if not isinstance(control, dict):
                raise invalid(f"{where}.component", "a label wraps one control")
            if control.get("type") == TEXT_INPUT:
                _text_input(control, f"{where}.component", labelled=True)
            elif control.get("type") == STRING_SELECT:
                _select(control, f"{where}.component")
            elif control.get("type") == FILE_UPLOAD:
                _text(control.get("custom_id"), f"{where}.component.custom_id", 1, 100)
                _int(control.get("min_values"), f"{where}.component.min_values", 0, 10)
                _int(control.get("max_values"), f"{where}.component.max_values", 1, 10)
            else:
                raise invalid(f"{where}.component.type", "not a control this fake Discord knows in a modal")
            controls.append(control)
        elif kind == ACTION_ROW:
            children = component.get("components")
            if not isinstance(children, list) or len(children) != 1 or children[0].get("type") != TEXT_INPUT:
                raise invalid(f"{where}.components", "a modal's action row holds exactly one text input")
            _text_input(children[0], f"{where}.components[0]", labelled=False)
            controls.append(children[0])
        elif kind == TEXT_DISPLAY:
            _text(component.get("content"), f"{where}.content", 1, MAX_TEXT)
        else:
            raise invalid(f"{where}.type", "not allowed in a modal")
    ids = [c["custom_id"] for c in controls]
    if len(set(ids)) != len(ids):
        raise invalid("data.components", "custom_ids must be unique")
    return controls


def submission(form: dict[str, Any], values: dict[str, Any],
               upload: Callable[[str, bytes], dict[str, Any]] | None = None) -> dict[str, Any]:
    """The `data` of the modal-submit interaction for a member who filled `form` with `values` (by custom_id;
    text for inputs, a list of option values for selects, a list of (filename, bytes) for a file upload, which
    `upload` stores and answers as an attachment object). A control left out keeps the value the form showed.
    What a member's client would not let them send raises instead."""
    controls = {c["custom_id"]: c for c in validate_form(form)}
    unknown = set(values) - set(controls)
    if unknown:
        raise LookupError(f"the form has no field(s) {sorted(unknown)}; it has {sorted(controls)}")
    out = []
    attachments: dict[str, Any] = {}
    for component in form["components"]:
        if component["type"] == TEXT_DISPLAY:
            continue
        control = component.get("component") or component["components"][0]
        if control["type"] == FILE_UPLOAD:
            answered = _files(control, values.get(control["custom_id"]) or [], upload, attachments)
        else:
            answered = _answer(control, values.get(control["custom_id"]))
        if component["type"] == LABEL:
            out.append({"type": LABEL, "component": answered})
        else:
            out.append({"type": ACTION_ROW, "components": [answered]})
    data: dict[str, Any] = {"custom_id": form["custom_id"], "components": out}
    if attachments:
        data["resolved"] = {"attachments": attachments}
    return data


def _files(control: dict[str, Any], files: list[tuple[str, bytes]],
           upload: Callable[[str, bytes], dict[str, Any]] | None, resolved: dict[str, Any]) -> dict[str, Any]:
    custom_id = control["custom_id"]
    low, high = _count(control, "min_values"), _count(control, "max_values")
    if control.get("required", True) and not files:
        raise ValueError(f"{custom_id} is required: the client does not let the form be sent without a file")
    if files and not low <= len(files) <= high:
        raise ValueError(f"{custom_id}: upload {low}-{high} files")
    ids = []
    for filename, data in files:
        if upload is None:
            raise TypeError("files need somewhere to be uploaded")
        attachment = upload(filename, data)
        resolved[attachment["id"]] = attachment
        ids.append(attachment["id"])
    return {"type": FILE_UPLOAD, "custom_id": custom_id, "values": ids}


def _answer(control: dict[str, Any], value: Any) -> dict[str, Any]:
    custom_id = control["custom_id"]
    if control["type"] == TEXT_INPUT:
        text = control.get("value") or "" if value is None else value
        if not isinstance(text, str):
            raise TypeError(f"{custom_id} takes text")
        if control.get("required", True) and not text:
            raise ValueError(f"{custom_id} is required: the client does not let the form be sent empty")
        low, high = control.get("min_length") or 0, control.get("max_length") or MAX_TEXT
        if text and not low <= len(text) <= high:
            raise ValueError(f"{custom_id}: {len(text)} characters, the form allows {low}-{high}")
        return {"type": TEXT_INPUT, "custom_id": custom_id, "value": text}
    chosen = [o["value"] for o in control["options"] if o.get("default")] if value is None else list(value)
    allowed = {o["value"] for o in control["options"]}
    if any(v not in allowed for v in chosen):
        raise ValueError(f"{custom_id}: {chosen} are not all among {sorted(allowed)}")
    low, high = _count(control, "min_values"), _count(control, "max_values")
    if not low <= len(chosen) <= high:
        raise ValueError(f"{custom_id}: choose {low}-{high}")
    return {"type": STRING_SELECT, "custom_id": custom_id, "values": chosen}
