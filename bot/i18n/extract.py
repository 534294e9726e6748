"""Babel's extraction method for Atelier's Python (babel.cfg names it): what `pybabel extract` puts in the catalog.

Besides the usual calls (`translate(locale, "…")`, `N_("…")`, a form's `_("…")`), it finds the texts of the command
tree, which discord.py hands to the translator (bot.i18n.translator) without any marker in the code: the
`description=` of `app_commands.command` and `Group`, a GroupCog's `group_description=`, every value of
`app_commands.describe(...)` and the `name=` of `app_commands.Choice` — whenever they are literal strings.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from typing import IO, Any

# The helper's name: the position of its msgid. `_` is a form's own shorthand for translate in the member's locale.
MARKERS = {"N_": 0, "_": 0, "translate": 1}
DESCRIBED = {"command": "description", "Group": "description", "Choice": "name", "context_menu": "name"}

# Babel reads no keyword spec for a call named None: each text found is one plain message.
Found = tuple[int, None, str, list[str]]


def extract(fileobj: IO[bytes], keywords: Any, comment_tags: Any, options: dict[str, Any]) -> Iterator[Found]:
    """Babel's extraction interface: (line, function name, message, translator comments) per text."""
    tree = ast.parse(fileobj.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield from _texts(node)
        elif isinstance(node, ast.ClassDef):  # a GroupCog's group_description=
            for keyword in node.keywords:
                text = _literal(keyword.value)
                if keyword.arg == "group_description" and text:
                    yield node.lineno, None, text, []


def _name(func: ast.expr) -> str:
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


def _literal(node: ast.expr | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _texts(call: ast.Call) -> Iterator[Found]:
    name = _name(call.func)
    if name in MARKERS:
        position = MARKERS[name]
        text = _literal(call.args[position]) if len(call.args) > position else None
        if text:
            yield call.lineno, None, text, []
    elif name == "describe":
        for keyword in call.keywords:
            text = _literal(keyword.value)
            if text:
                yield call.lineno, None, text, [f"The /command option “{keyword.arg}”."]
    elif name in DESCRIBED:
        for keyword in call.keywords:
            text = _literal(keyword.value)
            if keyword.arg == DESCRIBED[name] and text:
                yield call.lineno, None, text, []
