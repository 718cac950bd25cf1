"""Property: whatever bytes or JSON shapes the loaders are fed, only IcmError subclasses come out.

Four loaders, 500 examples each: data.read_records + build_dataset (for every built-in task),
Task.from_file (plus rendering and building with the task it returns), and gguf.inspect_gguf (random
bytes, a GGUF magic followed by noise, and damaged copies of a valid synthetic model file).
"""

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from icm_lite.data import build_dataset, read_records
from icm_lite.errors import IcmError
from icm_lite.gguf import inspect_gguf
from icm_lite.tasks import BUILTIN, Task
from test_errors_models import gguf_bytes

FUZZ = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])

FIELDS = ["id", "question", "choice", "choice_2", "cot", "answer", "label", "consistency_id", "review"]
scalars = (st.none() | st.booleans() | st.integers(-2, 3) | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
           | st.text(max_size=12) | st.sampled_from(["A", "B", "1", "{", "}", "{question}", "True"]))
json_values = st.recursive(scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4),
                           max_leaves=12)
records = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=6), json_values, max_size=9)
# records that pass the field checks more often, so the later checks (ids, labels, pairs) get exercised
plausible = st.fixed_dictionaries(
    {"question": st.sampled_from(["q1", "q2"]), "choice": st.sampled_from(["A", "B"]),
     "choice_2": st.sampled_from(["A", "B"]), "cot": st.just("c"), "answer": st.sampled_from(["1", "2", " 1 "])},
    optional={"id": scalars, "label": scalars, "consistency_id": st.sampled_from([None, 1, 2, "1", [1]])})


@st.composite
def comparison_pairs(draw):
    """Well-formed comparison twins, then maybe a field changed: exercises the pair checks."""
    rows = []
    for g in range(draw(st.integers(1, 3))):
        a, b = draw(st.sampled_from(["A", "B", "C"])), draw(st.sampled_from(["A", "B", "C"]))
        rows += [{"id": f"{g}a", "question": "q", "choice": a, "choice_2": b, "consistency_id": g},
                 {"id": f"{g}b", "question": "q", "choice": b, "choice_2": a, "consistency_id": g}]
    if draw(st.booleans()):
        r = draw(st.sampled_from(rows))
        r[draw(st.sampled_from(["id", "choice", "choice_2", "consistency_id", "label"]))] = draw(scalars)
    return draw(st.permutations(rows))


def _jsonl(rows):
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8", "surrogatepass")


def _array(rows):
    return json.dumps(rows, ensure_ascii=False, indent=1).encode("utf-8", "surrogatepass")


@st.composite
def damaged(draw, base: bytes):
    """`base` with a few bytes overwritten, some inserted or removed, or cut short."""
    b = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        if not b:
            break
        i = draw(st.integers(0, len(b) - 1))
        op = draw(st.sampled_from(["set", "insert", "delete", "cut"]))
        if op == "set":
            b[i] = draw(st.integers(0, 255))
        elif op == "insert":
            b[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del b[i:i + draw(st.integers(1, 8))]
        else:
            del b[i:]
    return bytes(b)


data_files = st.one_of(
    st.binary(max_size=200),
    st.lists(records | json_values, max_size=6).map(_jsonl),
    st.lists(records, max_size=6).map(_array),
    st.lists(plausible, min_size=1, max_size=6).map(_jsonl),
    st.lists(plausible, min_size=1, max_size=4).map(_jsonl).flatmap(damaged),
    comparison_pairs().map(_jsonl),
    json_values.map(lambda v: json.dumps(v).encode()),
)

templates = st.lists(st.sampled_from(["Q: ", "{question}", "{choice}", "{x}", "{", "}", "{{", "}}", "{0}", "{}",
                                      "{a.b}", "{question!r}", "{choice:>3}", " is", "\n", " "]),
                     max_size=6).map("".join)
task_specs = st.dictionaries(
    st.sampled_from(["name", "template", "relation", "key", "id_field", "group_field", "label_field",
                     "label_words", "colour"]),
    json_values | templates | st.sampled_from(["none", "contradiction", "asymmetry", "pair", "field:answer",
                                               "field:", "consistency_id"])
    | st.lists(st.sampled_from(["True", "False", "", " ", "true", "a b"]), max_size=3),
    max_size=8)
plausible_tasks = st.fixed_dictionaries(
    {"template": st.sampled_from(["Q: {question}\nClaim: {choice}\nTrue?", "{choice} vs {choice_2} is",
                                  "{cot} so", "{review}:", "no fields at all:"])},
    optional={"relation": st.sampled_from(["none", "contradiction", "asymmetry"]),
              "key": st.sampled_from([None, "pair", "field:answer", "field:id"]),
              "id_field": st.sampled_from(["id", "question", "nope"]),
              "group_field": st.sampled_from([None, "consistency_id", "answer"]),
              "label_field": st.sampled_from(["label", "id", "choice"]),
              "label_words": st.sampled_from([["Yes", "No"], ["good", "bad"], ["True", "False"]])})
task_files = st.one_of(
    plausible_tasks.map(lambda d: json.dumps(d).encode()),
    st.binary(max_size=120),
    task_specs.map(lambda d: json.dumps(d).encode()),
    st.builds(lambda t, extra: json.dumps({"template": t, **extra}).encode(), templates, task_specs),
    json_values.map(lambda v: json.dumps(v).encode()),
)

valid_gguf = gguf_bytes()
gguf_files = st.one_of(
    st.binary(max_size=300),
    st.binary(max_size=300).map(lambda b: b"GGUF" + b),
    st.binary(max_size=64).map(lambda b: b"GGUF\x03\x00\x00\x00" + b),
    damaged(valid_gguf),
)


@pytest.fixture(scope="module")
def scratch():
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


@FUZZ
@given(content=data_files)
def test_dataset_loaders_raise_only_icm_errors(scratch, content):
    p = scratch / "data.jsonl"
    p.write_bytes(content)
    try:
        recs = read_records(p)
    except IcmError:
        event("records rejected")
        return
    for task in BUILTIN.values():
        try:
            ds = build_dataset(recs, task, str(p))
        except IcmError:
            continue
        event(f"dataset built ({task.name})")
        assert len(ds) == len(recs)


@FUZZ
@given(content=task_files, rows=st.lists(records | plausible, min_size=1, max_size=4))
def test_task_files_raise_only_icm_errors(scratch, content, rows):
    p = scratch / "custom.task.json"
    p.write_bytes(content)
    try:
        task = Task.from_file(p)
    except IcmError:
        event("task rejected")
        return
    try:
        build_dataset([(f"r{i}", r) for i, r in enumerate(rows)], task)
        event("task loaded, dataset built")
    except IcmError:
        event("task loaded, dataset rejected")


@FUZZ
@given(content=gguf_files)
def test_gguf_inspection_raises_only_icm_errors(scratch, content):
    p = scratch / "model.gguf"
    p.write_bytes(content)
    try:
        info = inspect_gguf(p)
    except IcmError as e:
        event(str(e).replace(str(p), "FILE")[:30])
        return
    event("valid")
    assert info.file_size == len(content) >= info.needed_size
