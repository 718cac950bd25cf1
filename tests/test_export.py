"""Fine-tune exports: every format against its schema (ours and TRL's documented one), splits by group, unlabeled
and predicted labels left out, KTO order, run checks. No `datasets`/TRL here: tests/test_export_trl.py has those."""

import dataclasses
import hashlib

import orjson
import pytest
from click.testing import CliRunner

from icm_lite.errors import DataError, RunError, UserError
from icm_lite.export import FORMATS, METADATA, export_run, load_run, split_units, used_labels
from icm_lite.tasks import Task

from conftest import one_error

# --- schemas: exact keys and types of every shape a trainer reads -----------------------------------


def _msg(m, role):
    return isinstance(m, dict) and set(m) == {"role", "content"} and m["role"] == role and isinstance(m["content"], str) and m["content"] != ""


def _strings(r, keys):
    return set(r) == set(keys) and all(isinstance(r[k], str) and r[k] != "" for k in keys)


SHAPES = {
    # OpenAI SFT / TRL conversational / MLX-LM chat / axolotl chat_template: user then assistant
    "messages": lambda r: set(r) == {"messages"} and isinstance(r["messages"], list) and len(r["messages"]) == 2
    and _msg(r["messages"][0], "user") and _msg(r["messages"][1], "assistant"),
    # TRL prompt-completion / MLX-LM completions
    "prompt-completion": lambda r: _strings(r, ("prompt", "completion")),
    # TRL KTO/BCO unpaired preference, axolotl kto
    "kto": lambda r: set(r) == {"prompt", "completion", "label"} and _strings({k: r[k] for k in ("prompt", "completion")}, ("prompt", "completion"))
    and type(r["label"]) is bool,
    # TRL DPO / RewardTrainer standard preference, axolotl user_defined dpo
    "preference": lambda r: _strings(r, ("prompt", "chosen", "rejected")),
    # OpenAI / Together / Fireworks DPO
    "openai-dpo": lambda r: set(r) == {"input", "preferred_output", "non_preferred_output"}
    and isinstance(r["input"], dict) and set(r["input"]) == {"messages"} and isinstance(r["input"]["messages"], list)
    and len(r["input"]["messages"]) == 1 and _msg(r["input"]["messages"][0], "user")
    and all(isinstance(r[k], list) and len(r[k]) == 1 and _msg(r[k][0], "assistant") for k in ("preferred_output", "non_preferred_output")),
    "text": lambda r: _strings(r, ("text",)),
}

# together-python utils/files.py: a line whose keys hold the required columns of two formats is rejected
TOGETHER_REQUIRED = {"general": {"text"}, "conversation": {"messages"}, "instruction": {"prompt", "completion"},
                     "preference_openai": {"input", "preferred_output", "non_preferred_output"}}


def mlx_detects(first: dict) -> str:
    """mlx_lm.tuner.datasets.create_dataset: the first record alone picks the dataset class."""
    if "prompt" in first and "completion" in first:
        return "completions"
    if "messages" in first:
        return "chat"
    if "text" in first:
        return "text"
    return "unsupported"


def read_jsonl(path):
    raw = path.read_bytes()
    assert raw.endswith(b"\n") and b"\n\n" not in raw, "one record per line, no blank lines"
    return [orjson.loads(line) for line in raw.splitlines()]


def check_file(path, shape):
    records = read_jsonl(path)
    assert records
    for r in records:
        matches = [name for name, ok in SHAPES.items() if ok(r)]
        assert matches == [shape], (r, matches)
        together = [name for name, cols in TOGETHER_REQUIRED.items() if cols <= set(r)]
        assert len(together) <= 1, (r, together)
    return records


# --- a run directory built by hand --------------------------------------------------------------------

CLAIMS = [  # (id, group, gold, ICM label)
    ("c1", "g1", True, True), ("c2", "g1", False, False), ("c3", "g1", False, None),
    ("c4", "g2", True, True), ("c5", "g2", False, True),
    ("c6", "g3", False, None), ("c7", "g3", True, None),  # a fully unlabeled group
    ("c8", None, True, False), ("c9", None, False, False), ("c10", None, True, True),
    ("c11", "g4", True, True), ("c12", "g4", False, False), ("c13", "g4", False, False),
]


def make_run(tmp_path, rows, task, name="run"):
    data = tmp_path / f"{name}.jsonl"
    data.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r, _ in rows))
    run = tmp_path / name
    run.mkdir()
    sha = hashlib.sha256(data.read_bytes()).hexdigest()
    from icm_lite.config import RunConfig
    from icm_lite.options import ModelOptions

    config = RunConfig(data=str(data), task=task, model="smollm2", model_options=ModelOptions(n_ctx=2048),
                       data_sha256=sha, model_name="smollm2", model_path="/nowhere/model.gguf").to_json()
    (run / "config.json").write_bytes(orjson.dumps(config))
    labels = [{"id": r["id"], "label": y, "score": None if y is None else (1.5 if y else -1.5)} for r, y in rows]
    (run / "labels.jsonl").write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in labels))
    (run / "summary.json").write_bytes(orjson.dumps({"labeled": sum(y is not None for _, y in rows)}))
    return run


@pytest.fixture
def claim_run(tmp_path):
    rows = [({"id": i, "question": f"What is {i}?", "choice": f"It is {i}.", "label": g, **({"consistency_id": grp} if grp else {})}, y)
            for i, grp, g, y in CLAIMS]
    return make_run(tmp_path, rows, Task.builtin("claim"))


PAIRS = [  # (group, label of the A>B record, label of the B>A record)
    ("p1", True, False),  # A preferred
    ("p2", False, True),  # B preferred
    ("p3", True, True),  # both orders claimed: no preference
    ("p4", None, True),  # one order labeled: B preferred
    ("p5", None, None),  # unlabeled
    ("p6", False, None),  # one order labeled: B preferred
]


@pytest.fixture
def pair_run(tmp_path):
    rows = []
    for g, ya, yb in PAIRS:
        a, b = f"{g} answer A", f"{g} answer B"
        rows.append(({"id": f"{g}a", "question": f"ask {g}", "choice": a, "choice_2": b, "consistency_id": g}, ya))
        rows.append(({"id": f"{g}b", "question": f"ask {g}", "choice": b, "choice_2": a, "consistency_id": g}, yb))
    return make_run(tmp_path, rows, Task.builtin("comparison"), "pairs")


def exported(out, shape="messages"):
    meta = orjson.loads((out / "icm_metadata.json").read_bytes())
    files = {p.stem: check_file(p, shape) for p in sorted(out.glob("*.jsonl"))}
    return files, meta


# --- claim tasks ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
def test_claim_export_matches_its_schema_exactly(claim_run, tmp_path, fmt):
    run = load_run(claim_run)
    out = tmp_path / "ft"
    got = export_run(run, out, fmt, valid_fraction=0.25)
    files, meta = exported(out, fmt)
    assert set(files) == {"train", "valid"} and got["records"] == {s: len(r) for s, r in files.items()}
    labeled = [c for c in CLAIMS if c[3] is not None]
    assert sum(map(len, files.values())) == len(labeled) * (2 if fmt == "kto" else 1)
    prompts = {f"Question: What is {i}?\nClaim: It is {i}.\nI think this claim is": y for i, _, _, y in labeled}
    for records in files.values():
        for r in records:
            if fmt == "text":
                prompt, word = r["text"].rsplit(" ", 1)
                assert word == ("True" if prompts[prompt] else "False")
            elif fmt == "messages":
                user, assistant = r["messages"]
                assert assistant["content"] == ("True" if prompts[user["content"]] else "False")
            elif fmt == "prompt-completion":
                assert r["completion"] == (" True" if prompts[r["prompt"]] else " False")
            elif fmt == "kto":
                assert r["completion"] in (" True", " False")
                assert r["label"] == ((r["completion"] == " True") == prompts[r["prompt"]])
            else:
                y = prompts[r["prompt"]]
                assert (r["chosen"], r["rejected"]) == ((" True", " False") if y else (" False", " True"))
    assert meta["left_out"] == {"unlabeled": 3, "predicted": 0} and meta["include_predicted"] is False
    assert meta["config"]["data_sha256"] and meta["summary"] == {"labeled": 10}


# TRL's documented example of each dataset type ("Dataset formats and types" in the TRL docs), verbatim
TRL_DOCS = {
    "text": {"text": "The sky is blue."},  # language modeling
    "prompt-completion": {"prompt": "The sky is", "completion": " blue."},  # prompt-completion
    "messages": {"messages": [{"role": "user", "content": "What color is the sky?"},
                              {"role": "assistant", "content": "It is blue."}]},  # conversational language modeling
    "kto": {"prompt": "The sky is", "completion": " blue.", "label": True},  # unpaired preference
    "preference": {"prompt": "The sky is", "chosen": " blue.", "rejected": " green."},  # preference
}


def structure(x):
    """Field names and JSON types, recursively: what a trainer's column check sees."""
    if isinstance(x, dict):
        return {k: structure(v) for k, v in x.items()}
    if isinstance(x, list):
        return [structure(v) for v in x]
    return type(x).__name__


@pytest.mark.parametrize("fmt", FORMATS)
def test_claim_records_have_the_schema_trl_documents(claim_run, tmp_path, fmt):
    export_run(load_run(claim_run), tmp_path / "ft", fmt, valid_fraction=0)
    records = read_jsonl(tmp_path / "ft" / "train.jsonl")
    assert {orjson.dumps(structure(r)) for r in records} == {orjson.dumps(structure(TRL_DOCS[fmt]))}
    # the label word as the model scored it: the template ends on "is", the space belongs to the word
    words = {"text": lambda r: r["text"][r["text"].rindex(" is") + 3:], "prompt-completion": lambda r: r["completion"],
             "messages": lambda r: r["messages"][1]["content"], "kto": lambda r: r["completion"],
             "preference": lambda r: r["chosen"]}
    assert {words[fmt](r) for r in records} == ({"True", "False"} if fmt == "messages" else {" True", " False"})


def test_text_is_for_claim_tasks(pair_run, tmp_path):
    with pytest.raises(UserError, match="claim tasks"):
        export_run(load_run(pair_run), tmp_path / "ft", "text")
    assert not (tmp_path / "ft").exists()


def test_kto_has_both_completions_of_each_prompt_one_desirable(claim_run, tmp_path):
    export_run(load_run(claim_run), tmp_path / "ft", "kto", valid_fraction=0)
    records = read_jsonl(tmp_path / "ft" / "train.jsonl")
    by_prompt = {}
    for r in records:
        by_prompt.setdefault(r["prompt"], []).append(r)
    assert all(sorted(x["label"] for x in rs) == [False, True] for rs in by_prompt.values())


def test_kto_records_are_shuffled_by_seed_with_their_metadata(claim_run, tmp_path):
    run = load_run(claim_run)
    export_run(run, tmp_path / "a", "kto", valid_fraction=0)
    export_run(run, tmp_path / "b", "kto", valid_fraction=0)
    export_run(run, tmp_path / "c", "kto", valid_fraction=0, seed=1)
    records = read_jsonl(tmp_path / "a" / "train.jsonl")
    assert (tmp_path / "a" / "train.jsonl").read_bytes() == (tmp_path / "b" / "train.jsonl").read_bytes()
    assert (tmp_path / "a" / "train.jsonl").read_bytes() != (tmp_path / "c" / "train.jsonl").read_bytes()
    neighbours = sum(records[k]["prompt"] == records[k + 1]["prompt"] for k in range(0, len(records), 2))
    assert neighbours < len(records) // 4, "records of one example still sit next to each other"
    meta = orjson.loads((tmp_path / "a" / METADATA).read_bytes())
    assert meta["split"]["order"] == "shuffled by seed"
    prompt_of = {ex.id: ex.prompt for ex in run.dataset.examples}
    for r, info in zip(records, meta["lines"]["train"], strict=True):
        assert info["label"] == r["label"] and [prompt_of[e["id"]] for e in info["examples"]] == [r["prompt"]]
        assert r["completion"] == (" True" if info["examples"][0]["label"] == r["label"] else " False")


def test_other_formats_keep_the_data_file_order(claim_run, tmp_path):
    run = load_run(claim_run)
    export_run(run, tmp_path / "ft", "prompt-completion", valid_fraction=0)
    order = [ex.prompt for ex, y in zip(run.dataset.examples, run.labels) if y is not None]
    assert [r["prompt"] for r in read_jsonl(tmp_path / "ft" / "train.jsonl")] == order


def test_openai_dpo_on_claims(claim_run, tmp_path):
    export_run(load_run(claim_run), tmp_path / "ft", "preference", openai_dpo=True, valid_fraction=0)
    files, meta = exported(tmp_path / "ft", "openai-dpo")
    assert meta["format"] == "openai-dpo"
    for r in files["train"]:
        assert {r["preferred_output"][0]["content"], r["non_preferred_output"][0]["content"]} == {"True", "False"}


def test_openai_dpo_needs_preference(claim_run, tmp_path):
    with pytest.raises(UserError, match="--format preference"):
        export_run(load_run(claim_run), tmp_path / "ft", "messages", openai_dpo=True)


def test_mlx_and_together_detect_the_intended_format(claim_run, tmp_path):
    expect = {"text": ("text", "general"), "messages": ("chat", "conversation"), "prompt-completion": ("completions", "instruction"),
              # KTO records also carry prompt+completion: MLX-LM would train on the undesirable ones (docs warn)
              "kto": ("completions", "instruction"), "preference": ("unsupported", None)}
    for fmt, (mlx, together) in expect.items():
        out = tmp_path / fmt
        export_run(load_run(claim_run), out, fmt)
        for f in out.glob("*.jsonl"):
            records = read_jsonl(f)
            assert mlx_detects(records[0]) == mlx
            assert {t for r in records for t, cols in TOGETHER_REQUIRED.items() if cols <= set(r)} == ({together} if together else set())
    export_run(load_run(claim_run), tmp_path / "dpo", "preference", openai_dpo=True)
    r = read_jsonl(tmp_path / "dpo" / "train.jsonl")[0]
    assert [t for t, cols in TOGETHER_REQUIRED.items() if cols <= set(r)] == ["preference_openai"]


def test_groups_stay_in_one_split_and_unlabeled_are_left_out(claim_run, tmp_path):
    group = {i: g for i, g, _, _ in CLAIMS}
    for seed in range(6):
        out = tmp_path / f"s{seed}"
        export_run(load_run(claim_run), out, "kto", valid_fraction=0.3, test_fraction=0.2, seed=seed)
        files, meta = exported(out, "kto")
        assert set(files) == {"train", "valid", "test"}
        where = {}
        for split, lines in meta["lines"].items():
            assert len(lines) == len(files[split])
            for info in lines:
                for ex in info["examples"]:
                    assert ex["label"] is not None and ex["id"] not in ("c3", "c6", "c7")
                    assert info["group"] == group[ex["id"]]
                    key = group[ex["id"]] or ex["id"]
                    assert where.setdefault(key, split) == split, f"group {key} split across {where[key]} and {split}"


def test_split_is_deterministic_by_seed(claim_run, tmp_path):
    for d in ("a", "b"):
        export_run(load_run(claim_run), tmp_path / d, "messages", valid_fraction=0.3, seed=7)
    for name in ("train.jsonl", "valid.jsonl", "icm_metadata.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    splits = set()
    for seed in range(8):
        export_run(load_run(claim_run), tmp_path / "c", "messages", valid_fraction=0.3, seed=seed, force=True)
        splits.add((tmp_path / "c" / "valid.jsonl").read_bytes())
    assert len(splits) > 1


def test_split_units_fills_fractions_by_records():
    got = split_units([1] * 20, 0.1, 0.2, 3)
    assert got.count("test") == 4 and got.count("valid") == 2 and got.count("train") == 14
    assert split_units([1] * 20, 0.0, 0.0, 0) == ["train"] * 20
    with pytest.raises(DataError, match="too few"):
        split_units([5], 0.1, 0.0, 0)
    with pytest.raises(UserError):
        split_units([1, 1], 0.6, 0.5, 0)


def test_gold_labels_do_not_change_the_export(claim_run, tmp_path):
    run = load_run(claim_run)
    assert run.dataset.gold is not None
    blind = dataclasses.replace(run, dataset=dataclasses.replace(run.dataset, gold=None))
    export_run(run, tmp_path / "a", "kto", valid_fraction=0.2)
    export_run(blind, tmp_path / "b", "kto", valid_fraction=0.2)
    for name in ("train.jsonl", "valid.jsonl", "icm_metadata.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


# --- labels the model predicted after the search ("source": "prediction") --------------------------------

def mark_predicted(run_dir, ids, explicit_search=()):
    """Rewrite labels.jsonl: `ids` predicted, `explicit_search` with "source": "search", the rest as before."""
    rows = [orjson.loads(line) for line in (run_dir / "labels.jsonl").read_bytes().splitlines()]
    for r in rows:
        if r["id"] in ids:
            r["source"] = "prediction"
        elif r["id"] in explicit_search:
            r["source"] = "search"
    (run_dir / "labels.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))


def test_sources_are_read_and_old_rows_count_as_search(claim_run):
    assert set(load_run(claim_run).sources) == {"search"}  # an old run directory: no "source" anywhere
    mark_predicted(claim_run, {"c4", "c10"}, explicit_search={"c1"})
    run = load_run(claim_run)
    by_id = {ex.id: (y, src) for ex, y, src in zip(run.dataset.examples, run.labels, run.sources, strict=True)}
    assert by_id["c4"] == (True, "prediction") and by_id["c10"] == (True, "prediction")
    assert by_id["c1"] == (True, "search") and by_id["c2"] == (False, "search")
    assert [ex.id for ex, y in zip(run.dataset.examples, used_labels(run, False)) if y is not None] == \
        ["c1", "c2", "c5", "c8", "c9", "c11", "c12", "c13"]
    assert used_labels(run, True) == run.labels


def test_predicted_labels_are_left_out_unless_asked_for(claim_run, tmp_path):
    mark_predicted(claim_run, {"c4", "c10"})
    export_run(load_run(claim_run), tmp_path / "a", "prompt-completion", valid_fraction=0)
    files, meta = exported(tmp_path / "a", "prompt-completion")
    assert meta["left_out"] == {"unlabeled": 3, "predicted": 2} and meta["include_predicted"] is False
    ids = [e["id"] for info in meta["lines"]["train"] for e in info["examples"]]
    assert len(files["train"]) == 8 and "c4" not in ids and "c10" not in ids
    export_run(load_run(claim_run), tmp_path / "b", "prompt-completion", valid_fraction=0, include_predicted=True)
    files, meta = exported(tmp_path / "b", "prompt-completion")
    assert meta["left_out"] == {"unlabeled": 3, "predicted": 0} and meta["include_predicted"] is True
    sources = {e["id"]: e["source"] for info in meta["lines"]["train"] for e in info["examples"]}
    assert len(files["train"]) == 10 and sources["c4"] == sources["c10"] == "prediction" and sources["c1"] == "search"


def test_a_run_with_only_predicted_labels_says_how_to_export_them(claim_run, tmp_path):
    mark_predicted(claim_run, {c[0] for c in CLAIMS})
    with pytest.raises(DataError, match="10 predicted labels are left out without --include-predicted"):
        export_run(load_run(claim_run), tmp_path / "ft", "kto")


def test_an_unknown_source_is_refused(claim_run):
    lines = (claim_run / "labels.jsonl").read_bytes().splitlines()
    lines[1] = lines[1][:-1] + b', "source": "guess"}'
    (claim_run / "labels.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(RunError, match=r"labels.jsonl:2: unknown source 'guess'"):
        load_run(claim_run)


def test_a_predicted_half_of_a_pair_counts_as_unlabeled(pair_run, tmp_path):
    # p2: both orders say B; without the predicted p2a, p2b alone still does. p6: its one labeled order is predicted
    mark_predicted(pair_run, {"p2a", "p6a"})
    export_run(load_run(pair_run), tmp_path / "ft", "preference", valid_fraction=0)
    files, meta = exported(tmp_path / "ft", "preference")
    assert {r["prompt"] for r in files["train"]} == {"ask p1", "ask p2", "ask p4"}
    assert meta["left_out"] == {"unlabeled": 4, "predicted": 2, "pairs_without_preference": 1}
    assert [[e["id"] for e in info["examples"]] for info in meta["lines"]["train"]] == [["p1a", "p1b"], ["p2b"], ["p4b"]]


# --- comparison tasks -----------------------------------------------------------------------------------

def test_pairs_give_one_preference_each_from_the_icm_labels(pair_run, tmp_path):
    export_run(load_run(pair_run), tmp_path / "ft", "preference", valid_fraction=0)
    files, meta = exported(tmp_path / "ft", "preference")
    got = {r["prompt"]: (r["chosen"], r["rejected"]) for r in files["train"]}
    assert got == {"ask p1": ("p1 answer A", "p1 answer B"), "ask p2": ("p2 answer B", "p2 answer A"),
                   "ask p4": ("p4 answer B", "p4 answer A"), "ask p6": ("p6 answer B", "p6 answer A")}
    assert meta["left_out"] == {"unlabeled": 4, "predicted": 0, "pairs_without_preference": 1}
    assert [[e["id"] for e in info["examples"]] for info in meta["lines"]["train"]] == [["p1a", "p1b"], ["p2a", "p2b"], ["p4b"], ["p6a"]]


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f != "text"])
def test_pair_formats_match_their_schema(pair_run, tmp_path, fmt):
    export_run(load_run(pair_run), tmp_path / "ft", fmt, valid_fraction=0.25)
    files, _ = exported(tmp_path / "ft", fmt)
    flat = [r for rs in files.values() for r in rs]
    assert len(flat) == 4 * (2 if fmt == "kto" else 1)
    if fmt == "messages":
        assert {(r["messages"][0]["content"], r["messages"][1]["content"]) for r in flat} >= {("ask p1", "p1 answer A")}
    if fmt == "prompt-completion":
        assert {"prompt": "ask p2", "completion": "p2 answer B"} in flat
    if fmt == "kto":
        assert {"prompt": "ask p2", "completion": "p2 answer A", "label": False} in flat


def test_pair_openai_dpo(pair_run, tmp_path):
    export_run(load_run(pair_run), tmp_path / "ft", "preference", openai_dpo=True, valid_fraction=0)
    files, _ = exported(tmp_path / "ft", "openai-dpo")
    r = files["train"][0]
    assert r["input"]["messages"][0]["content"] == "ask p1"
    assert r["preferred_output"][0]["content"] == "p1 answer A" and r["non_preferred_output"][0]["content"] == "p1 answer B"


# --- the run directory ------------------------------------------------------------------------------------

def test_changed_or_missing_data_is_refused_and_moved_data_is_accepted(claim_run, tmp_path):
    cfg = orjson.loads((claim_run / "config.json").read_bytes())
    data = tmp_path / "run.jsonl"
    moved = tmp_path / "moved.jsonl"
    data.rename(moved)
    with pytest.raises(DataError, match="missing.*--data"):
        load_run(claim_run)
    assert len(load_run(claim_run, data=moved).labels) == len(CLAIMS)
    moved.write_bytes(moved.read_bytes() + b'{"id": "extra", "question": "q", "choice": "c"}\n')
    with pytest.raises(DataError, match="sha256"):
        load_run(claim_run, data=moved)
    assert cfg["data"] == str(data)


def test_labels_that_do_not_match_the_data_are_refused(claim_run):
    lines = (claim_run / "labels.jsonl").read_bytes().splitlines()
    (claim_run / "labels.jsonl").write_bytes(b"\n".join(lines[:-1]) + b"\n")
    with pytest.raises(RunError, match="does not match"):
        load_run(claim_run)
    (claim_run / "labels.jsonl").unlink()
    with pytest.raises(RunError, match="missing"):
        load_run(claim_run)


def test_not_a_run_dir(tmp_path):
    with pytest.raises(RunError, match="not a run directory"):
        load_run(tmp_path)


def test_existing_export_needs_force_and_leaves_no_stale_split(claim_run, tmp_path):
    out = tmp_path / "ft"
    export_run(load_run(claim_run), out, "messages", valid_fraction=0.2, test_fraction=0.2)
    assert (out / "test.jsonl").exists()
    with pytest.raises(UserError, match="--force"):
        export_run(load_run(claim_run), out, "messages")
    export_run(load_run(claim_run), out, "messages", valid_fraction=0.2, force=True)
    assert not (out / "test.jsonl").exists()


def test_cli_export(claim_run, tmp_path):
    from icm_lite.cli import main

    out = tmp_path / "ft"
    res = CliRunner().invoke(main, ["export", str(claim_run), "--format", "prompt-completion", "--out", str(out),
                                    "--valid-fraction", "0.2", "--seed", "1"])
    assert res.exit_code == 0, res.output
    assert "train.jsonl" in res.output
    check_file(out / "train.jsonl", "prompt-completion")
    res = CliRunner().invoke(main, ["export", str(claim_run), "--format", "messages", "--out", str(out)])
    assert res.exit_code == 2 and "--force" in res.output
    res = CliRunner().invoke(main, ["export", str(claim_run), "--format", "kto", "--out", str(out), "--openai-dpo"])
    assert res.exit_code == 2 and "error:" in res.output


def test_cli_include_predicted(claim_run, tmp_path):
    from icm_lite.cli import main

    mark_predicted(claim_run, {"c4", "c10"})
    res = CliRunner().invoke(main, ["export", str(claim_run), "--format", "text", "--out", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    assert "left out: unlabeled 3, predicted 2;" in res.output and "train.jsonl 7, valid.jsonl 1" in res.output
    res = CliRunner().invoke(main, ["export", str(claim_run), "--format", "text", "--out", str(tmp_path / "b"),
                                    "--include-predicted", "--valid-fraction", "0"])
    assert res.exit_code == 0, res.output
    assert "left out: unlabeled 3, predicted 0;" in res.output and "train.jsonl 10 (" in res.output
    assert orjson.loads((tmp_path / "b" / METADATA).read_bytes())["include_predicted"] is True


def test_cli_check_without_datasets_fails_before_writing(claim_run, tmp_path, monkeypatch):
    import sys

    from icm_lite.cli import main

    monkeypatch.setitem(sys.modules, "datasets", None)  # as where `datasets` is not installed
    res = CliRunner().invoke(main, ["export", str(claim_run), "--format", "kto", "--out", str(tmp_path / "ft"), "--check"])
    assert one_error(res, 2) == "error: --check needs Hugging Face `datasets`: pip install 'icm-lite[check]'"
    assert not (tmp_path / "ft").exists()


def test_a_run_stopped_at_any_event_exports_and_evaluates(tmp_path):
    """Stopped after its k-th event, for every k (fake backend, a real config.json): the export leaves the
    unlabeled examples out, eval counts only the labeled ones, and neither refuses the run."""
    from icm_lite.fake import PromptFake

    from icm_lite import run
    from icm_lite.config import RunConfig
    from icm_lite.evaluate import eval_examples, evaluate
    from icm_lite.search import SearchConfig

    rows = [{"id": f"r{k}{s}", "review": f"review {k} {s}", "slot": s, "consistency_id": k, "label": (s == "a") == (k % 3 == 0)}
            for k in range(8) for s in "ab"]
    data = tmp_path / "d.jsonl"
    data.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    task = Task(name="t", template="Review: {review}\nAnswer:", relation="asymmetry", key="field:slot",
                label_words=("Yes", "No"))
    for init in ("bootstrap", "seeds"):
        cfg = RunConfig(data=str(data), task=task, model="fake", search=SearchConfig(seed=0, init=init,
                                                                                              iterations=20))
        whole = run.start(cfg, tmp_path / f"whole-{init}", backend=PromptFake())
        seen = []
        whole.run(on_event=seen.append)
        for k in range(1, len(seen)):
            out = tmp_path / f"{init}-{k}"
            got = []
            job = run.start(cfg, out, backend=PromptFake())
            summary = job.run(on_event=got.append, should_stop=lambda: len(got) >= k)
            labeled = sum(y is not None for y in job.labels)
            saved = load_run(out)
            assert sum(y is not None for y in saved.labels) == labeled + len(job.predicted)
            if labeled >= 4:
                got = export_run(saved, tmp_path / f"ft-{init}-{k}", "prompt-completion", valid_fraction=0)
                assert got["left_out"]["unlabeled"] == len(rows) - labeled - len(job.predicted)
                fb = PromptFake()
                fb.prepare(eval_examples(saved, None), task.label_words)
                assert evaluate(saved, fb)["labeled"] == labeled
            assert summary["finished"] is (k >= len(seen) - 1)  # the last step ends the search: done follows
