"""A griffe extension for the API reference: the docstrings' reST habits, read as Markdown.

The package's docstrings are Google style, with two reST habits that Markdown does not know:

* doctests under ``Example:`` (singular), where griffe's Google parser knows only
  ``Examples:``: the doctest would be rendered as plain text (its ``[True, False]``
  outputs then look like Markdown links);
* Sphinx roles such as ``:class:`~ignitia_sync.router.Router``` and ``:meth:`stats```,
  shown as inline code here (``Router``, ``stats``).

mkdocs.yml loads this file; the docstrings themselves are left as they are.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_EXAMPLE = re.compile(r"^(?P<indent>[ \t]*)Example:[ \t]*$", re.MULTILINE)
_ROLE = re.compile(r":(?:class|meth|func|mod|attr|data|exc|obj):`(?P<short>~)?(?P<target>[^`]+)`")


def _code(match: re.Match[str]) -> str:
    target = match.group("target")
    return f"`{target.rsplit('.', 1)[-1] if match.group('short') else target}`"


class ReadAsMarkdown(griffe.Extension):
    """Rewrite each docstring before it is parsed: ``Examples:`` sections, roles as inline code."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        docstring = obj.docstring
        if docstring is not None:
            value = _EXAMPLE.sub(r"\g<indent>Examples:", docstring.value)
            docstring.value = _ROLE.sub(_code, value)
