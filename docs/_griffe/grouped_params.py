"""Griffe extension: grouped parameter entries in Google-style docstrings.

jaxinfo's docstrings document parameters that share a description on one line::

    Args:
      lr, t, continuous, weight_decay: as in :func:`kernel_dynamics`.
      theta, r0, n, lr, continuous, weight_decay, theta_ref, method, tol, max_iter,
        chunk_size, memory_budget, dtype: as in :func:`loo_vectors`.

Griffe's Google parser reads one name per entry, so it would report ``lr, t, continuous,
weight_decay`` as a parameter that does not exist (and render grouped ``Attributes`` of result
tuples as one odd row). Before a docstring is parsed, this extension
rewrites every grouped entry as one entry per name (each with the shared description; a
parenthesised symbol after a name, ``weight_decay (λ)``, moves into the description), so every
name is still checked against the signature by ``mkdocs build --strict``.
"""
from __future__ import annotations

import re
from typing import Any

import griffe

_SECTION = re.compile(r"^(\s*)(Args|Arguments|Parameters|Params|Keyword Args|"
                      r"Keyword Arguments|Other Parameters|Other Args|Attributes):\s*$")
_NAME = re.compile(r"^\s*(\*{0,2}[A-Za-z_][A-Za-z_0-9]*)\s*(\((.*)\))?\s*$")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _split_names(names: str) -> list[str]:
    """Splits ``"a, b (x, y), c"`` at the commas outside parentheses."""
    parts, depth, cur = [], 0, ""
    for ch in names:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return [p.strip() for p in parts + [cur] if p.strip()]


def _expand_item(head: str, body: list[str], pad: str) -> list[str]:
    """One entry per name of ``head`` (``"a, b (β): description"``)."""
    names, _, rest = head.partition(":")
    parts = _split_names(names)
    if len(parts) < 2:
        return [pad + head, *body]
    matches = [_NAME.match(p) for p in parts]
    if not all(matches):  # not a list of names (e.g. a type annotation with commas)
        return [pad + head, *body]
    out = []
    for m in matches:
        symbol = f"({m.group(3)}) " if m.group(2) else ""
        out.append(f"{pad}{m.group(1)}: {symbol}{rest.strip()}".rstrip())
        out.extend(body)
    return out


def expand_grouped_parameters(text: str) -> str:
    """Returns ``text`` with grouped parameter entries split into one entry per name."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        out.append(line)
        i += 1
        section = _SECTION.match(line)
        if not section:
            continue
        base = len(section.group(1))
        item = None  # indentation of the entries
        while i < len(lines):
            line = lines[i]
            if not line.strip():
                out.append(line)
                i += 1
                continue
            ind = _indent(line)
            if ind <= base:
                break  # end of the section
            if item is None:
                item = ind
            if ind != item:  # stray continuation: keep as is
                out.append(line)
                i += 1
                continue
            head = line.strip()
            i += 1
            # a name list wrapped over several lines: join until the colon
            while ":" not in head and head.endswith(",") and i < len(lines) \
                    and _indent(lines[i]) > item:
                head += " " + lines[i].strip()
                i += 1
            body = []
            while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > item):
                body.append(lines[i])
                i += 1
            while body and not body[-1].strip():  # blank lines belong after the entry
                i -= 1
                body.pop()
            out.extend(_expand_item(head, body, " " * item))
    return "\n".join(out)


class GroupedParameters(griffe.Extension):
    """Splits grouped Google-style parameter entries before parsing (see the module docstring)."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:  # noqa: ARG002
        if obj.docstring is not None and (obj.is_function or obj.is_class):
            obj.docstring.value = expand_grouped_parameters(obj.docstring.value)
