"""Exports as users load them: `icm-lite export --check` (Hugging Face `datasets`) and the docs' TRL snippets.

The check tests need `datasets` and skip without it. The snippet tests always run, on the code blocks of
README.md's "Fine-tuning on the labels" and docs/export.md's "TRL" sections, read from the files (so they
are the snippets verbatim): `icm-lite export` lines go through the CLI, `hf download ... --local-dir D`
makes D locally, Python blocks are executed in a scratch directory that holds runs/demo. Where TRL,
transformers, torch and datasets are installed, D is a tiny random model with a tokenizer trained here
and every trainer runs for one step; elsewhere stub `trl` (and `datasets`) modules check what each
trainer is given. Nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import math
import re
import shlex
import sys
import types
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from icm_lite.errors import DataError
from icm_lite.export import FORMATS, check_export, export_run, load_run

from test_export import CLAIMS, make_run, read_jsonl

ROOT = Path(__file__).resolve().parents[1]
REAL = all(importlib.util.find_spec(m) for m in ("trl", "transformers", "torch", "datasets", "tokenizers"))
HAVE_DATASETS = importlib.util.find_spec("datasets") is not None
needs_datasets = pytest.mark.skipif(not HAVE_DATASETS, reason="needs Hugging Face datasets (pip install datasets)")

# --- the docs' code blocks ----------------------------------------------------------------------------


def section_blocks(md: Path, heading: str) -> list[tuple[str, str, int]]:
    """(language, code, line of the opening fence) of each fenced block from `heading` to the next "## "."""
    text = md.read_text(encoding="utf-8")
    start = text.index(heading + "\n")
    end = text.find("\n## ", start + len(heading))
    body = text[start:end if end != -1 else None]
    first = text[:start].count("\n") + 1
    return [(m["lang"], m["code"], first + body[:m.start()].count("\n"))
            for m in re.finditer(r"^```(?P<lang>\w*)\n(?P<code>.*?)^```$", body, flags=re.S | re.M)]


def run_shell(code: str, where: str) -> list[str]:
    """The block's commands: icm-lite through the CLI, hf download as a local model; names what was not run."""
    from icm_lite.cli import main

    skipped = []
    for line in code.splitlines():
        args = shlex.split(line, comments=True)
        if not args:
            continue
        if args[0] == "icm-lite":
            res = CliRunner().invoke(main, args[1:])
            assert res.exit_code == 0, f"{where}: {line}\n{res.output}"
        elif args[:2] == ["hf", "download"]:
            make_local_model(Path(args[args.index("--local-dir") + 1]))
        elif args[0] == "mlx_lm.lora":  # Apple silicon only
            skipped.append(line)
        else:
            pytest.fail(f"{where}: no way to run {line!r} here; teach run_shell or change the docs")
    return skipped


def run_python(code: str, where: str) -> None:
    exec(compile(code, where, "exec"), {"__name__": "__main__"})


def run_section(md: Path, heading: str) -> None:
    blocks = [(lang, code, n) for lang, code, n in section_blocks(md, heading) if lang in ("sh", "python")]
    assert any(lang == "python" for lang, _, _ in blocks), f"{md.name}: no python snippet under {heading!r}"
    for lang, code, n in blocks:
        where = f"{md.name}:{n}"
        run_shell(code, where) if lang == "sh" else run_python(code, where)


# --- a local model (real) or a directory (stubs) ----------------------------------------------------------


def make_local_model(path: Path) -> None:
    """What `hf download` would leave: here a tiny random llama and a byte-level BPE tokenizer trained on the spot."""
    path.mkdir(parents=True, exist_ok=True)
    if not REAL:
        return
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    corpus = [f"Question: What is {c[0]}?\nClaim: It is {c[0]}.\nI think this claim is True False" for c in CLAIMS]
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<pad>", "<eos>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>")
    config = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
                         pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None)
    LlamaForCausalLM(config).save_pretrained(path)
    tok.save_pretrained(path)


# --- stubs: what each TRL trainer needs from its dataset ---------------------------------------------------

TRAINER_COLUMNS = {"SFTTrainer": [{"text"}, {"prompt", "completion"}, {"messages"}],
                   "KTOTrainer": [{"prompt", "completion", "label"}],
                   "DPOTrainer": [{"prompt", "chosen", "rejected"}], "RewardTrainer": [{"prompt", "chosen", "rejected"}]}


class StubDataset(list):
    @property
    def column_names(self):
        return list(self[0])

    @property
    def num_rows(self):
        return len(self)

    @property
    def features(self):
        def feature(v):
            if isinstance(v, dict):
                return {k: feature(x) for k, x in v.items()}
            if isinstance(v, list):
                return types.SimpleNamespace(feature=feature(v[0]))
            return types.SimpleNamespace(dtype={str: "string", bool: "bool"}[type(v)])

        return {k: feature(v) for k, v in self[0].items()}


def stub_datasets() -> types.ModuleType:
    def load_dataset(kind, data_files, cache_dir=None):
        assert kind == "json"
        return {split: StubDataset(read_jsonl(Path(f))) for split, f in data_files.items()}

    return types.SimpleNamespace(load_dataset=load_dataset, disable_progress_bars=lambda: None)


def stub_trl(calls: list) -> types.ModuleType:
    trl = types.ModuleType("trl")
    for name in TRAINER_COLUMNS:
        config_name = name.replace("Trainer", "Config")

        class Config:
            def __init__(self, output_dir, use_cpu=False, **kwargs):
                self.output_dir, self.use_cpu, self.kwargs = output_dir, use_cpu, kwargs

        class Trainer:
            def __init__(self, model, args, train_dataset, eval_dataset=None, _name=name, _config=config_name, **kwargs):
                assert type(args).__name__ == _config, f"{_name} given {type(args).__name__}"
                assert args.use_cpu, "a snippet must run on a CPU-only machine (use_cpu=True)"
                assert Path(model).is_dir(), f"{model} is not the local model directory"
                for ds in (d for d in (train_dataset, eval_dataset) if d is not None):
                    assert set(ds.column_names) in TRAINER_COLUMNS[_name], (_name, ds.column_names)
                    assert "label" not in ds.column_names or all(type(r["label"]) is bool for r in ds)
                self.name = _name

            def train(self):
                calls.append((self.name, 1, 0.0))

        Config.__name__, Trainer.__name__ = config_name, name
        setattr(trl, config_name, Config)
        setattr(trl, name, Trainer)
    return trl


# --- the scratch directory and the trainers -----------------------------------------------------------


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A directory holding runs/demo (a claim task run), as the docs assume, and the trainer calls made there."""
    from icm_lite.tasks import Task

    (tmp_path / "runs").mkdir()
    rows = [({"id": i, "question": f"What is {i}?", "choice": f"It is {i}.", **({"consistency_id": g} if g else {})}, y)
            for i, g, _, y in CLAIMS]
    make_run(tmp_path, rows, Task.builtin("claim"), "runs/demo")
    monkeypatch.chdir(tmp_path)
    calls: list = []
    if HAVE_DATASETS:  # the snippets' load_dataset() caches here, not in the user's cache
        import datasets

        monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    if REAL:
        _one_step_each(monkeypatch, calls)
    else:
        monkeypatch.setitem(sys.modules, "trl", stub_trl(calls))
        if not HAVE_DATASETS:
            monkeypatch.setitem(sys.modules, "datasets", stub_datasets())
    return calls


def _one_step_each(monkeypatch, calls: list) -> None:
    """Every TRL trainer built by a snippet trains one step, saves nothing, and reports (name, steps, loss)."""
    import transformers

    post_init, train = transformers.TrainingArguments.__post_init__, transformers.Trainer.train

    def one_step(self):
        self.max_steps, self.save_strategy, self.report_to = 1, "no", "none"
        post_init(self)

    def recorded(self, *args, **kwargs):
        out = train(self, *args, **kwargs)
        calls.append((type(self).__name__, self.state.global_step, out.training_loss))
        return out

    monkeypatch.setattr(transformers.TrainingArguments, "__post_init__", one_step)
    monkeypatch.setattr(transformers.Trainer, "train", recorded)


def test_readme_snippets_run_as_written(workdir):
    run_section(ROOT / "README.md", "## Fine-tuning on the labels")
    assert [c[:2] for c in workdir] == [("SFTTrainer", 1)]
    assert all(math.isfinite(c[2]) for c in workdir)


def test_docs_trl_snippets_run_as_written(workdir):
    run_section(ROOT / "docs" / "export.md", "## TRL (Hugging Face)")
    assert [c[:2] for c in workdir] == [("SFTTrainer", 1), ("KTOTrainer", 1), ("DPOTrainer", 1), ("RewardTrainer", 1)]
    assert all(math.isfinite(c[2]) for c in workdir)


def test_the_stub_refuses_what_trl_would_refuse(workdir, monkeypatch):
    if REAL:
        pytest.skip("TRL itself runs here")
    trl = sys.modules["trl"]
    make_local_model(Path("m"))
    export_run(load_run("runs/demo"), "ft", "kto")
    ds = StubDataset(read_jsonl(Path("ft/train.jsonl")))
    with pytest.raises(AssertionError, match="use_cpu"):
        trl.KTOTrainer(model="m", args=trl.KTOConfig(output_dir="o"), train_dataset=ds)
    with pytest.raises(AssertionError, match="SFTTrainer"):
        trl.SFTTrainer(model="m", args=trl.SFTConfig(output_dir="o", use_cpu=True), train_dataset=ds)


def test_section_blocks_reads_fenced_code(tmp_path):
    md = tmp_path / "a.md"
    md.write_text("# t\n## A\ntext\n```sh\necho 1\n```\n\n```python\nx = 1\n```\n## B\n```sh\nno\n```\n")
    assert section_blocks(md, "## A") == [("sh", "echo 1\n", 4), ("python", "x = 1\n", 8)]


# --- --check: what `datasets` and TRL make of each format -------------------------------------------------

CHECKED = {
    "text": ({"text": "string"}, "language modeling"),
    "prompt-completion": ({"prompt": "string", "completion": "string"}, "prompt-completion"),
    "messages": ({"messages": "list<{role: string, content: string}>"}, "conversational language modeling"),
    "kto": ({"prompt": "string", "completion": "string", "label": "bool"}, "unpaired preference"),
    "preference": ({"prompt": "string", "chosen": "string", "rejected": "string"}, "preference"),
}


@needs_datasets
@pytest.mark.parametrize("fmt", FORMATS)
def test_check_reports_the_columns_trl_sees(workdir, fmt):
    export_run(load_run("runs/demo"), "ft", fmt, valid_fraction=0.2)
    got = check_export("ft")
    columns, kind = CHECKED[fmt]
    assert [(f["split"], f["file"]) for f in got] == [("train", "ft/train.jsonl"), ("validation", "ft/valid.jsonl")]
    for f in got:
        assert f["columns"] == columns and f["trl"] == kind
        first = read_jsonl(Path(f["file"]))
        assert f["rows"] == len(first) and f["first"] == first[0]


@needs_datasets
def test_check_refuses_columns_of_no_format(tmp_path):
    (tmp_path / "train.jsonl").write_bytes(orjson.dumps({"question": "q", "answer": "a"}) + b"\n")
    with pytest.raises(DataError, match="columns question, answer, which is no export format"):
        check_export(tmp_path)


@needs_datasets
def test_cli_check_prints_columns_and_first_row(workdir):
    from icm_lite.cli import main

    res = CliRunner().invoke(main, ["export", "runs/demo", "--format", "kto", "--out", "ft", "--check"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    records = read_jsonl(Path("ft/train.jsonl"))
    assert lines[1] == (f"check: ft/train.jsonl -> split 'train', {len(records)} rows; columns prompt: string, "
                        "completion: string, label: bool; TRL type: unpaired preference (KTOTrainer)")
    assert lines[2].endswith(f"completion={records[0]['completion']!r}, label={records[0]['label']!r}")
