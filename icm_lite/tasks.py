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
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from .errors import DataError

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

    @staticmethod
    def builtin(name: str) -> "Task":
        try:
            return BUILTIN[name]
        except KeyError:
            raise DataError(f"unknown task {name!r}; built-in tasks: {', '.join(BUILTIN)} (or a task .json file)") from None

    @staticmethod
    def from_file(path: str | Path) -> "Task":
        p = Path(path)
        try:
            spec = orjson.loads(p.read_bytes())
        except FileNotFoundError:
            raise DataError(f"task file {p} does not exist") from None
        except orjson.JSONDecodeError as e:
            raise DataError(f"task file {p} is not valid JSON: {e}") from None
        if not isinstance(spec, dict) or not isinstance(spec.get("template"), str):
            raise DataError(f"task file {p} must be a JSON object with a string 'template'")
        known = {"name", "template", "relation", "key", "id_field", "group_field", "label_field", "label_words"}
        unknown = sorted(set(spec) - known)
        if unknown:
            raise DataError(f"task file {p}: unknown keys {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        words = spec.get("label_words", ["True", "False"])
        if not (isinstance(words, list) and len(words) == 2 and all(isinstance(w, str) and w.strip() for w in words)):
            raise DataError(f"task file {p}: label_words must be two non-empty strings")
        spec["label_words"] = tuple(w.strip() for w in words)
        spec.setdefault("name", p.stem)
        return Task(**spec)

    @staticmethod
    def resolve(name_or_path: str) -> "Task":
        if name_or_path in BUILTIN:
            return BUILTIN[name_or_path]
        if name_or_path.endswith(".json"):
            return Task.from_file(name_or_path)
        return Task.builtin(name_or_path)

    def render(self, record: dict, where: str = "record") -> str:
        values = {}
        for f in self.fields:
            if f not in record:
                raise DataError(f"{where} has no field {f!r} (task {self.name!r} needs: {', '.join(self.fields)})")
            v = record[f]
            if isinstance(v, (dict, list)) or v is None:
                raise DataError(f"{where}: field {f!r} must be a string or number, not {type(v).__name__}")
            values[f] = str(v)
        return self.template.format(**values)

    def to_dict(self) -> dict:
        return {
            "name": self.name, "template": self.template, "relation": self.relation, "key": self.key,
            "id_field": self.id_field, "group_field": self.group_field, "label_field": self.label_field,
            "label_words": list(self.label_words),
        }


def _template_fields(template: str, task: str) -> list[str]:
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as e:
        raise DataError(f"task {task!r}: bad template ({e}); write literal braces as {{{{ and }}}}") from None
    names = []
    for _, name, spec, conv in parsed:
        if name is None:
            continue
        if not name.isidentifier():
            raise DataError(f"task {task!r}: template field {{{name}}} must be a plain field name")
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
        relation="asymmetry", key="pair"),
}
