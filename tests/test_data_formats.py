"""Data as users have it: CSV/TSV, Parquet and Hugging Face datasets, with --field mapping columns to the task.

The same reviews written as JSONL, as CSV with other column names and yes/no labels, and as Parquet give the same
examples (prompts, groups, keys, gold) and the same run on the fake backend (labels and tokens). Malformed input of
every format is one error line naming the file and the line or row; a fuzz feeds random CSV text and random bytes.
"""

import csv
import importlib.util
import io
import json

import orjson
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from icm_lite.cli import main
from icm_lite.data import build_dataset, load_dataset, read_records
from icm_lite.errors import DataError, IcmError
from icm_lite.tasks import Task

from conftest import one_error

REVIEWS = [orjson.loads(line) for line in open("examples/reviews.jsonl", "rb")]
TASK = Task.resolve("examples/reviews.task.json")
RENAMED = {"id": "key", "review": "text", "slot": "side", "consistency_id": "pair", "label": "liked"}
FIELD_ARGS = [a for name, column in RENAMED.items() for a in ("--field", f"{name}={column}")]
needs_arrow = pytest.mark.skipif(importlib.util.find_spec("pyarrow") is None, reason="needs pyarrow (parquet extra)")
needs_datasets = pytest.mark.skipif(importlib.util.find_spec("datasets") is None, reason="needs datasets (hf extra)")


def renamed_rows():
    return [{RENAMED.get(k, k): ("yes" if v else "no") if k == "label" else v for k, v in r.items()} for r in REVIEWS]


def write_csv(path, rows, delimiter=","):
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=list(rows[0]), delimiter=delimiter)
    w.writeheader()
    w.writerows(rows)
    path.write_text(out.getvalue(), encoding="utf-8")
    return path


def write_parquet(path, rows):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def same_examples(a, b):
    assert [(e.prompt, e.group, e.key) for e in a.examples] == [(e.prompt, e.group, e.key) for e in b.examples]
    assert [e.id for e in a.examples] == [e.id for e in b.examples] and a.gold == b.gold


def test_csv_and_tsv_with_other_column_names_read_as_the_jsonl(tmp_path):
    base = load_dataset("examples/reviews.jsonl", TASK)
    mapped = TASK.mapped({k: v for k, v in RENAMED.items()})
    for name, delimiter in (("r.csv", ","), ("r.tsv", "\t")):
        same_examples(base, load_dataset(write_csv(tmp_path / name, renamed_rows(), delimiter), mapped))


@needs_arrow
def test_parquet_reads_as_the_jsonl(tmp_path):
    base = load_dataset("examples/reviews.jsonl", TASK)
    same_examples(base, load_dataset(write_parquet(tmp_path / "r.parquet", REVIEWS), TASK))


@needs_datasets
def test_a_saved_hugging_face_dataset_reads_as_the_jsonl(tmp_path):
    import datasets

    datasets.Dataset.from_list(REVIEWS).save_to_disk(str(tmp_path / "saved"))
    same_examples(load_dataset("examples/reviews.jsonl", TASK), load_dataset(tmp_path / "saved", TASK))


def test_a_hugging_face_dataset_without_the_extra_is_one_line(tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_datasets(name, *a, **kw):
        if name == "datasets":
            raise ImportError(name)
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_datasets)
    (tmp_path / "saved").mkdir()
    (tmp_path / "saved" / "dataset_info.json").write_text("{}")
    for spec in (tmp_path / "saved", "hf:someone/reviews"):
        with pytest.raises(DataError, match=r"needs the datasets package: pip install 'icm-lite\[hf\]'"):
            read_records(spec)


def _run(tmp_path, data, *extra):
    out = tmp_path / f"run-{data.name}"
    res = CliRunner().invoke(main, ["label", str(data), "--task", "examples/reviews.task.json", "--out", str(out),
                                    "--model", "fake", "--plain", "--json", *extra])
    assert res.exit_code == 0, res.output
    rows = [orjson.loads(line) for line in (out / "labels.jsonl").read_bytes().splitlines()]
    return [(r["id"], r["label"], r["source"]) for r in rows], json.loads(res.stdout)["tokens_evaluated"]


def test_the_same_run_from_jsonl_csv_and_parquet(tmp_path):
    """What the run sees is the same, so the labels and the tokens are (fake backend, hashed prompts)."""
    jsonl = tmp_path / "reviews.jsonl"
    jsonl.write_bytes(open("examples/reviews.jsonl", "rb").read())
    reference = _run(tmp_path, jsonl)
    assert _run(tmp_path, write_csv(tmp_path / "reviews.csv", renamed_rows()), *FIELD_ARGS) == reference
    if importlib.util.find_spec("pyarrow"):
        parquet = write_parquet(tmp_path / "reviews.parquet", REVIEWS)
        assert _run(tmp_path, parquet) == reference


def test_field_mapping_errors_are_one_line(tmp_path):
    data = write_csv(tmp_path / "r.csv", renamed_rows())
    for args, says in ((["--field", "revue=text"], "--field revue=text: task 'reviews' reads no field 'revue' (it reads: review, id"),
                       (["--field", "review"], "--field 'review': write NAME=COLUMN"),
                       ([], f"{data}:2 has no field 'slot' (task 'reviews' takes its consistency key from it)")):
        res = CliRunner().invoke(main, ["label", str(data), "--task", "examples/reviews.task.json",
                                        "--out", str(tmp_path / "run"), "--model", "fake", *args])
        assert says in one_error(res, 2)


def test_mapping_the_gold_column_into_the_prompt_is_refused():
    with pytest.raises(DataError, match="gold label field 'liked' cannot be the template field"):
        TASK.mapped({"review": "liked", "label": "liked"})


@pytest.mark.parametrize("text,says", [
    ("id,review\n", "the dataset is empty (a header and no rows)"),
    ("id,review,id\n1,a,2\n", "header row is not usable: column 'id' appears twice"),
    ("id,review\n1,a\n2,b,c\n", ":3: 3 cells, but the header has 2 columns"),
    ('id,review\n1,"open\n', "malformed CSV"),
    ("id,review\n1,a\x00b\n", ":2: a NUL byte"),
    ("id,review,consistency_id,slot,label\n1,a,1,a,maybe\n", ":2: label field 'label' must be true/false, yes/no or 1/0"),
    ("id,review,consistency_id,slot\n1,,1,a\n", ":2: field 'review' must be a string or number, not None"),
    ("id,review,consistency_id,slot\n1,a,1,a\n1,b,1,b\n", ":3: duplicate id '1' (first at"),
])
def test_malformed_csv_names_the_line(tmp_path, text, says):
    p = tmp_path / "d.csv"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(DataError) as e:
        load_dataset(p, TASK)
    assert says in str(e.value) and str(p) in str(e.value)


@needs_arrow
def test_damaged_parquet_is_one_line(tmp_path):
    p = write_parquet(tmp_path / "r.parquet", REVIEWS)
    p.write_bytes(p.read_bytes()[:200])
    with pytest.raises(DataError, match=r"r.parquet: not a readable Parquet file"):
        read_records(p)
    rows = [dict(r) for r in REVIEWS]
    for r in rows:
        r["label"] = int(r["label"])
    rows[3]["label"] = 2  # 0/1 are labels, 2 is not, as in JSON
    with pytest.raises(DataError, match=r"r2.parquet: row 4: label field 'label'"):
        load_dataset(write_parquet(tmp_path / "r2.parquet", rows), TASK)


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                          HealthCheck.function_scoped_fixture])
cells = st.text(alphabet=st.sampled_from(list('ab,"\n\r\t 01yesno\x00é')), max_size=8)


@FUZZ
@given(rows=st.lists(st.lists(cells, max_size=6), max_size=6), header=st.lists(
    st.sampled_from(["id", "review", "slot", "consistency_id", "label", "x", ""]), min_size=1, max_size=6))
def test_fuzzed_csv_is_data_or_one_error(tmp_path_factory, rows, header):
    p = tmp_path_factory.mktemp("fuzz") / "d.csv"
    p.write_text("\n".join(",".join(r) for r in [header] + rows), encoding="utf-8", errors="surrogatepass")
    try:
        build_dataset(read_records(p), TASK, str(p), text=True)
    except IcmError:
        pass


@needs_arrow
@FUZZ
@given(data=st.binary(max_size=300))
def test_fuzzed_parquet_bytes_are_one_error(tmp_path_factory, data):
    p = tmp_path_factory.mktemp("fuzz") / "d.parquet"
    p.write_bytes(b"PAR1" + data + b"PAR1")
    try:
        read_records(p)
    except IcmError:
        pass


@needs_datasets
def test_a_hub_dataset_not_in_the_cache_is_one_line_and_nothing_is_downloaded(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # were anything fetched, it would fail differently
    with pytest.raises(DataError, match=r"hf:nobody/nothing@train: not in the local Hugging Face cache"):
        read_records("hf:nobody/nothing@train")
    assert not any((tmp_path / "empty-hf-home").rglob("*.arrow"))
