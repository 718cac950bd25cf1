"""Bad datasets and task files: each is one line on stderr naming the file, line, field or id, and exit 2.

The CLI reads the task and the data before it looks for a model, so these run without one; the two
cases that need a tokenizer (an example longer than n_ctx) use the small smollm2 model.
"""

import json

import pytest
from click.testing import CliRunner

from icm_lite.cli import main
from icm_lite.data import build_dataset, load_dataset, read_records
from icm_lite.errors import DataError
from icm_lite.tasks import Task

CLAIM = {"question": "Is the sky blue?", "choice": "Yes, on a clear day."}


def label(*args, env=None):
    """Run `icm-lite label ...` in-process; the model is never reached in these tests."""
    return CliRunner().invoke(main, ["label", *map(str, args)], env=env)


def one_error(res, code: int) -> str:
    """The single `error: ...` line, after checking the exit code and that no traceback leaked."""
    assert res.exit_code == code, (res.exit_code, res.output, res.exception)
    assert "Traceback" not in res.output
    lines = res.stderr.splitlines()  # progress lines ("loading ...") may come first
    assert lines and lines[-1].startswith("error: "), res.stderr
    assert sum(line.startswith("error") for line in lines) == 1, res.stderr
    return lines[-1]


def jsonl(tmp_path, rows, name="data.jsonl") -> str:
    p = tmp_path / name
    p.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(p)


def claims(n, **extra):
    return [{"id": f"c{i}", **CLAIM, **extra} for i in range(n)]


# --- the file itself -------------------------------------------------------------------------------


def test_malformed_jsonl_names_file_and_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text(json.dumps(claims(1)[0]) + "\n\n" + '{"id": "c2", "question": "q", \n')
    msg = one_error(label(p, "--out", tmp_path / "run"), 2)
    assert f"{p}:3: malformed JSON line" in msg


def test_malformed_json_array_names_line(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('[\n  {"id": "a", "question": "q", "choice": "c"},\n  {"id": "b",, }\n]\n')
    msg = one_error(label(p, "--out", tmp_path / "run"), 2)
    assert f"{p}:3: malformed JSON" in msg and "column" in msg


def test_pretty_printed_object_in_jsonl_gets_a_hint(tmp_path):
    p = tmp_path / "pretty.jsonl"
    p.write_text(json.dumps(claims(1)[0], indent=2))
    msg = one_error(label(p, "--out", tmp_path / "run"), 2)
    assert f"{p}:1:" in msg and "one JSON object per line" in msg


@pytest.mark.parametrize("content", ["", "\n  \n", "[]", " [ ]\n"])
def test_empty_dataset(tmp_path, content):
    p = tmp_path / "empty.jsonl"
    p.write_text(content)
    msg = one_error(label(p, "--out", tmp_path / "run"), 2)
    assert str(p) in msg and "empty" in msg


def test_missing_data_file_and_directory(tmp_path):
    msg = one_error(label(tmp_path / "nope.jsonl", "--out", tmp_path / "run"), 2)
    assert "nope.jsonl does not exist" in msg
    with pytest.raises(DataError, match="is a directory"):
        read_records(tmp_path)


def test_non_utf8_names_line_and_byte(tmp_path):
    p = tmp_path / "latin1.jsonl"
    p.write_bytes(json.dumps(claims(1)[0]).encode() + b"\n" + '{"id": "c9", "question": "caf\xe9", "choice": "x"}\n'.encode("latin-1"))
    msg = one_error(label(p, "--out", tmp_path / "run"), 2)
    assert f"{p}:2: not UTF-8" in msg and "0xe9" in msg


def test_bom_and_unicode_line_separators_are_fine(tmp_path):
    p = tmp_path / "ok.jsonl"
    rows = [{"id": "a", "question": "one\u2028two", "choice": "x"}, {"id": "b", **CLAIM}]
    p.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode())
    assert [w for w, _ in read_records(p)] == [f"{p}:1", f"{p}:2"]


def test_record_that_is_not_an_object(tmp_path):
    p = tmp_path / "list.jsonl"
    p.write_text(json.dumps(claims(1)[0]) + "\n[1, 2]\n")
    msg = one_error(label(p, "--out", tmp_path / "run"), 2)
    assert f"{p}:2: expected a JSON object, got an array" in msg


# --- records against the task ----------------------------------------------------------------------


def test_missing_field_names_field_and_line(tmp_path):
    rows = claims(2)
    del rows[1]["choice"]
    p = jsonl(tmp_path, rows)
    msg = one_error(label(p, "--out", tmp_path / "run"), 2)
    assert f"{p}:2 has no field 'choice'" in msg and "claim" in msg


def test_math_record_without_its_key_field(tmp_path):
    rows = [{"id": "m1", "question": "2+2?", "cot": "2+2=4. The answer is 4.", "answer": "4"},
            {"id": "m2", "question": "2+2?", "cot": "2+2=5. The answer is 5."}]
    p = jsonl(tmp_path, rows)
    msg = one_error(label(p, "--task", "math", "--out", tmp_path / "run"), 2)
    assert f"{p}:2 has no field 'answer'" in msg


def test_duplicate_ids_name_both_places(tmp_path):
    rows = claims(3)
    rows[2]["id"] = "c0"
    p = jsonl(tmp_path, rows)
    msg = one_error(label(p, "--out", tmp_path / "run"), 2)
    assert f"{p}:3: duplicate id 'c0' (first at {p}:1)" in msg


@pytest.mark.parametrize("bad", ["yes", 2, 0.5, [True], {"v": 1}])
def test_label_of_wrong_type(tmp_path, bad):
    rows = claims(2)
    rows[1]["label"] = bad
    p = jsonl(tmp_path, rows)
    msg = one_error(label(p, "--out", tmp_path / "run"), 2)
    assert f"{p}:2: label field 'label'" in msg and repr(bad)[:20] in msg


@pytest.mark.parametrize("field,bad", [("id", {"a": 1}), ("id", True), ("choice", None), ("question", [1]),
                                       ("consistency_id", [1, 2])])
def test_fields_of_wrong_type(tmp_path, field, bad):
    rows = claims(2)
    rows[1][field] = bad
    p = jsonl(tmp_path, rows)
    msg = one_error(label(p, "--out", tmp_path / "run"), 2)
    assert f"{p}:2" in msg and f"field {field!r} must be a string or number" in msg


def test_valid_labels_are_accepted(tmp_path):
    rows = claims(4)
    for r, y in zip(rows, [True, False, 1, None]):
        r["label"] = y
    ds = load_dataset(jsonl(tmp_path, rows), Task.builtin("claim"))
    assert ds.gold == (True, False, True, None)


# --- comparison pairs ------------------------------------------------------------------------------


def pair(g, a="A", b="B", start=0):
    return [{"id": f"p{start}", "question": "q", "choice": a, "choice_2": b, "consistency_id": g},
            {"id": f"p{start + 1}", "question": "q", "choice": b, "choice_2": a, "consistency_id": g}]


def test_comparison_group_of_three(tmp_path):
    rows = pair(7) + pair(8, start=2)
    rows.append({**rows[0], "id": "extra"})
    p = jsonl(tmp_path, rows)
    msg = one_error(label(p, "--task", "comparison", "--out", tmp_path / "run"), 2)
    assert "comparison group '7' has 3 record(s)" in msg and "'extra'" in msg and f"{p}:1" in msg


def test_comparison_group_of_one(tmp_path):
    p = jsonl(tmp_path, pair(1) + pair(2, start=2)[:1])
    msg = one_error(label(p, "--task", "comparison", "--out", tmp_path / "run"), 2)
    assert "comparison group '2' has 1 record(s)" in msg and "'p2'" in msg


def test_comparison_pair_that_does_not_swap(tmp_path):
    rows = pair(1)
    rows[1]["choice_2"] = "C"
    p = jsonl(tmp_path, rows)
    msg = one_error(label(p, "--task", "comparison", "--out", tmp_path / "run"), 2)
    assert f"{p}:2: comparison group '1'" in msg and "swap" in msg


def test_comparison_without_group(tmp_path):
    rows = pair(1)
    del rows[1]["consistency_id"]
    p = jsonl(tmp_path, rows)
    msg = one_error(label(p, "--task", "comparison", "--out", tmp_path / "run"), 2)
    assert f"{p}:2" in msg and "'consistency_id'" in msg


# --- task files ------------------------------------------------------------------------------------


def task_file(tmp_path, spec, name="custom.task.json") -> str:
    p = tmp_path / name
    p.write_text(spec if isinstance(spec, str) else json.dumps(spec))
    return str(p)


def test_template_field_the_records_lack(tmp_path):
    t = task_file(tmp_path, {"template": "Review: {review}\nStars: {stars}\nThis review is positive:"})
    p = jsonl(tmp_path, [{"id": "r1", "review": "Great.", "stars": 5}, {"id": "r2", "review": "Bad."}])
    msg = one_error(label(p, "--task", t, "--out", tmp_path / "run"), 2)
    assert f"{p}:2 has no field 'stars'" in msg and "review, stars" in msg


@pytest.mark.parametrize("template,shown", [
    ("Claim: {choice\nTrue or false:", "bad template"),
    ("Claim: choice}\nTrue or false:", "bad template"),
    ("Claim: {}\nTrue or false:", "{}"),
    ("Claim: {0}\nTrue or false:", "{0}"),
    ("Claim: {choice.upper}\nTrue or false:", "{choice.upper}"),
    ("Claim: {choice[0]}\nTrue or false:", "{choice[0]}"),
    ("Claim: {choice:>{width}}\nTrue or false:", "{choice:>{width}}"),
    ("Claim: {choice!r}\nTrue or false:", "{choice!r}"),
])
def test_template_syntax_errors(tmp_path, template, shown):
    t = task_file(tmp_path, {"template": template})
    p = jsonl(tmp_path, claims(2))
    msg = one_error(label(p, "--task", t, "--out", tmp_path / "run"), 2)
    assert t in msg and shown in msg


@pytest.mark.parametrize("spec,says", [
    ("{not json", "not valid JSON"),
    ('{"template": "x"', "not valid JSON"),
    ("[1, 2]", "JSON object with a string 'template'"),
    ({"templ": "Claim: {choice} is"}, "JSON object with a string 'template'"),
    ({"template": "Claim: {choice} is", "colour": "red"}, "unknown keys colour"),
    ({"template": "Claim: {choice} is "}, "without trailing whitespace"),
    ({"template": ""}, "template must end right before the label word"),
    ({"template": "Claim: {choice} is", "relation": "sometimes"}, "relation must be one of"),
    ({"template": "Claim: {choice} is", "key": "answer"}, "key must be 'pair'"),
    ({"template": "Claim: {choice} is", "key": 3}, "'key' must be a non-empty string or null"),
    ({"template": "Claim: {choice} is", "id_field": ["id"]}, "'id_field' must be a non-empty string"),
    ({"template": "Claim: {choice} is", "label_words": ["Yes"]}, "label_words must be two non-empty strings"),
    ({"template": "Claim: {choice} is", "label_words": ["Yes", "Yes"]}, "two different single words"),
    ({"template": "Claim: {choice} is", "label_words": ["very true", "false"]}, "two different single words"),
    ({"template": "Claim: {choice} is", "key": "pair", "group_field": None}, "needs a group_field"),
    ({"template": "Claim: {choice} is {label}"}, "gold label field 'label' cannot be the template field"),
    ({"template": "Claim: {choice} is", "key": "field:verdict", "label_field": "verdict",
      "relation": "contradiction"}, "gold label field 'verdict' cannot be the consistency key"),
    ({"template": "Claim: {choice} is", "group_field": "label"}, "gold label field 'label' cannot be the group_field"),
])
def test_bad_task_files(tmp_path, spec, says):
    t = task_file(tmp_path, spec)
    p = jsonl(tmp_path, claims(2))
    msg = one_error(label(p, "--task", t, "--out", tmp_path / "run"), 2)
    assert t in msg and says in msg


def test_task_file_not_utf8_missing_or_directory(tmp_path):
    p = jsonl(tmp_path, claims(2))
    t = tmp_path / "latin.task.json"
    t.write_bytes('{"template": "Caf\xe9: {choice} is"}'.encode("latin-1"))
    assert "not UTF-8" in one_error(label(p, "--task", t, "--out", tmp_path / "run"), 2)
    assert "does not exist" in one_error(label(p, "--task", tmp_path / "no.json", "--out", tmp_path / "run"), 2)
    (tmp_path / "dir.json").mkdir()
    assert "is a directory" in one_error(label(p, "--task", tmp_path / "dir.json", "--out", tmp_path / "run"), 2)


def test_unknown_task_name_lists_the_builtins(tmp_path):
    msg = one_error(label(jsonl(tmp_path, claims(2)), "--task", "sentiment", "--out", tmp_path / "run"), 2)
    assert "unknown task 'sentiment'" in msg and "claim, math, comparison" in msg


def test_build_dataset_of_no_records():
    with pytest.raises(DataError, match="empty"):
        build_dataset([], Task.builtin("claim"), "mem")


# --- an example that does not fit the context (needs a tokenizer) -----------------------------------
# (a whole set longer than n_ctx is not an error: the run splits it into batches)


@pytest.mark.model
def test_example_longer_than_n_ctx_names_id_and_tokens(tmp_path, smollm2_path):
    rows = claims(3)
    rows[1] = {"id": "long-one", "question": "Why? " * 40, "choice": "Because. " * 40}
    p = jsonl(tmp_path, rows)
    msg = one_error(label(p, "--model", smollm2_path, "--n-ctx", 64, "--out", tmp_path / "run"), 2)
    assert "example 'long-one' alone takes" in msg and "n_ctx=64" in msg and "--n-ctx" in msg
    tokens = int(msg.split("alone takes ")[1].split()[0])
    assert tokens > 64
    assert not (tmp_path / "run").exists()  # nothing was created for a run that cannot start

