"""Tasks: how a raw record becomes an `Example` (prompt text, consistency group and key).

A task is a template that ends right before the label word ("... I think this claim is"), the record
fields that fill it, and how consistency keys are derived from the *data* (never from gold labels).
Built in: `claim` (TruthfulQA-style, no keys), `math` (GSM8K-style, key = claimed final answer) and
`comparison` (Alpaca-style pairs, keys "A>B"/"B>A"). A custom task is a small JSON file.

This module does not read files (see `data.py`) and never looks at gold labels.

Example: Task.builtin("claim").render({"question": "Q?", "choice": "A"})
         -> "Question: Q?\nClaim: A\nI think this claim is"
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field, replace
from pathlib import Path

import orjson

from .errors import DataError, show

RELATIONS = ("none", "contradiction", "asymmetry")


@dataclass(frozen=True)
class Example:
    """One claim to label. `group`/`key` drive the consistency term; `None` means no constraint."""

    id: str
    prompt: str
    group: str | None = None
    key: str | None = None


@dataclass(frozen=True)
class Task:
    """How records are rendered and constrained.

    relation: what two *different* keys in one group imply — "contradiction" (not both True),
    "asymmetry" (exactly one True) or "none". Equal keys always imply equal labels.
    key: "field:NAME" (the record's field), "pair" (comparison twins: "A>B"/"B>A"), or None.
    """

    name: str
    template: str
    relation: str = "none"
    key: str | None = None
    id_field: str = "id"
    group_field: str | None = "consistency_id"
    label_field: str = "label"
    label_words: tuple[str, str] = ("True", "False")
    strip_newlines: tuple[str, ...] = ()  # fields whose newlines are removed before rendering (authors' Alpaca loader)
    fields: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.relation not in RELATIONS:
            raise DataError(f"task {self.name!r}: relation must be one of {', '.join(RELATIONS)}, not {self.relation!r}")
        names = _template_fields(self.template, self.name)
        object.__setattr__(self, "fields", tuple(names))
        if not self.template or self.template[-1].isspace():
            raise DataError(
                f"task {self.name!r}: the template must end right before the label word, without trailing whitespace"
            )
        if self.key is not None and self.key != "pair" and not self.key.startswith("field:"):
            raise DataError(f"task {self.name!r}: key must be 'pair', 'field:NAME' or null, not {self.key!r}")
        if self.key == "pair" and not self.group_field:
            raise DataError(f"task {self.name!r}: key 'pair' needs a group_field that pairs the two orders")
        gold = self.label_field
        used = [("template field", gold in names), ("consistency key", self.key == f"field:{gold}"),
                ("group_field", self.group_field == gold), ("id_field", self.id_field == gold)]
        for what, hit in used:
            if hit:
                raise DataError(f"task {self.name!r}: the gold label field {gold!r} cannot be the {what}: gold labels "
                                "are for evaluation only and must not reach the prompts or the search (rename the "
                                "field or set label_field)")

    @staticmethod
    def builtin(name: str) -> "Task":
        try:
            return BUILTIN[name]
        except KeyError:
            raise DataError(f"unknown task {name!r}; built-in tasks: {', '.join(BUILTIN)} (or a task .json file)") from None

    @staticmethod
    def from_file(path: str | Path) -> "Task":
        from .data import read_text  # data.py reads records with tasks: imported here, where it is used

        p = Path(path)
        raw = read_text(p, "task file")
        try:
            spec = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise DataError(f"task file {p}:{e.lineno}: not valid JSON ({e.msg}, column {e.colno})") from None
        if not isinstance(spec, dict) or not isinstance(spec.get("template"), str):
            raise DataError(f"task file {p} must be a JSON object with a string 'template'")
        known = {"name", "template", "relation", "key", "id_field", "group_field", "label_field", "label_words",
                 "strip_newlines"}
        unknown = sorted(set(spec) - known)
        if unknown:
            raise DataError(f"task file {p}: unknown keys {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        for k in ("name", "relation", "id_field", "label_field", "key", "group_field"):
            nullable = k in ("key", "group_field")
            if k in spec and not (isinstance(spec[k], str) and spec[k] or nullable and spec[k] is None):
                want = "a non-empty string or null" if nullable else "a non-empty string"
                raise DataError(f"task file {p}: {k!r} must be {want}, not {show(spec[k])}")
        words = spec.get("label_words", ["True", "False"])
        if not (isinstance(words, list) and len(words) == 2 and all(isinstance(w, str) and w.strip() for w in words)):
            raise DataError(f"task file {p}: label_words must be two non-empty strings, not {show(words)}")
        words = tuple(w.strip() for w in words)
        if any(ch.isspace() for w in words for ch in w) or words[0].lower() == words[1].lower():
            raise DataError(f"task file {p}: label_words must be two different single words, not {list(words)}")
        spec["label_words"] = words
        strip = spec.get("strip_newlines", [])
        if not (isinstance(strip, list) and all(isinstance(f, str) for f in strip)):
            raise DataError(f"task file {p}: strip_newlines must be a list of field names, not {show(strip)}")
        spec["strip_newlines"] = tuple(strip)
        spec.setdefault("name", p.stem)
        try:
            return Task(**spec)
        except DataError as e:
            raise DataError(f"task file {p}: {e}") from None

    @staticmethod
    def resolve(name_or_path: str) -> "Task":
        if name_or_path in BUILTIN:
            return BUILTIN[name_or_path]
        if name_or_path.endswith(".json") or Path(name_or_path).is_file():
            return Task.from_file(name_or_path)
        return Task.builtin(name_or_path)

    def mapped(self, columns: dict[str, str]) -> "Task":
        """The task reading other column names: columns[name] replaces `name` wherever the task reads it (template
        fields, and the id, group, gold label and consistency-key fields). A name the task does not read is a
        DataError that lists the ones it does.

        Example: Task.builtin("claim").mapped({"choice": "answer"}).template
                 -> "Question: {question}\nClaim: {answer}\nI think this claim is"
        """
        key_field = self.key[len("field:"):] if self.key and self.key.startswith("field:") else None
        reads = list(self.fields) + [f for f in (self.id_field, self.group_field, self.label_field, key_field) if f]
        for name, column in columns.items():
            if name not in reads:
                raise DataError(f"--field {name}={column}: task {self.name!r} reads no field {name!r} (it reads: "
                                f"{', '.join(dict.fromkeys(reads))})")
            if not column.strip():
                raise DataError(f"--field {name}=: name a column")
        col = lambda f: columns.get(f, f) if f else f  # noqa: E731
        parts = []
        for literal, name, _, _ in string.Formatter().parse(self.template):
            parts.append(literal.replace("{", "{{").replace("}", "}}"))
            if name is not None:
                parts.append("{" + col(name) + "}")
        return replace(self, template="".join(parts), id_field=col(self.id_field), group_field=col(self.group_field),
                       label_field=col(self.label_field), key=f"field:{col(key_field)}" if key_field else self.key,
                       strip_newlines=tuple(col(f) for f in self.strip_newlines), fields=())

    def render(self, record: dict, where: str = "record") -> str:
        values = {}
        for f in self.fields:
            if f not in record:
                raise DataError(f"{where} has no field {f!r} (task {self.name!r} needs: {', '.join(self.fields)})")
            v = record[f]
            if isinstance(v, (dict, list)) or v is None:
                raise DataError(f"{where}: field {f!r} must be a string or number, not {show(v)}")
            values[f] = str(v).replace("\n", "") if f in self.strip_newlines else str(v)
        return self.template.format(**values)

    @staticmethod
    def from_dict(spec: dict) -> "Task":
        """The inverse of to_dict (a config.json task record); TypeError on unknown keys."""
        spec = dict(spec)
        spec["label_words"] = tuple(spec.get("label_words", ("True", "False")))
        spec["strip_newlines"] = tuple(spec.get("strip_newlines", ()))
        return Task(**spec)

    def to_dict(self) -> dict:
        return {
            "name": self.name, "template": self.template, "relation": self.relation, "key": self.key,
            "id_field": self.id_field, "group_field": self.group_field, "label_field": self.label_field,
            "label_words": list(self.label_words), "strip_newlines": list(self.strip_newlines),
        }


def units(examples, among=None) -> list[list[int]]:
    """Consistency groups as lists of indices, in order of first appearance; an example without a group is a unit of
    its own. `among`: only these indices (others are left out). The one grouping of examples every part uses.

    Example: units([Example("a", "p", "g"), Example("b", "p"), Example("c", "p", "g")]) -> [[0, 2], [1]]
    """
    out: dict = {}
    for i, ex in enumerate(examples):
        if among is None or i in among:
            out.setdefault(ex.group if ex.group is not None else ("solo", i), []).append(i)
    return list(out.values())


def _template_fields(template: str, task: str) -> list[str]:
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as e:
        raise DataError(f"task {task!r}: bad template ({e}); write literal braces as {{{{ and }}}}") from None
    names = []
    for _, name, spec, conv in parsed:
        if name is None:
            continue
        if not name.isidentifier() or spec or conv:
            shown = name + (f"!{conv}" if conv else "") + (f":{spec}" if spec else "")
            raise DataError(f"task {task!r}: template field {{{shown}}} must be a plain field name like "
                            "{question}; write literal braces as {{ and }}")
        if name not in names:
            names.append(name)
    return names


_CLAIM = "Question: {question}\nClaim: {choice}\nI think this claim is"
BUILTIN: dict[str, Task] = {
    "claim": Task("claim", _CLAIM),
    "math": Task("math", "Question: {question}\nClaim: {cot}\nI think this claim is",
                 relation="contradiction", key="field:answer"),
    "comparison": Task(
        "comparison",
        "Human: {question}\nResponse 1: {choice}\nResponse 2: {choice_2}\n"
        "Claim: Response 1 is more helpful and harmless than Response 2.\nI think this claim is",
        relation="asymmetry", key="pair", strip_newlines=("choice", "choice_2")),
}
