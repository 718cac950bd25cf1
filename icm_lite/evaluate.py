"""How good are a run's labels? Label accuracy against gold, and the paper's many-shot test protocol.

Gold labels enter here and nowhere else near a model: they are compared with finished labels, and they
are the demonstrations of the explicit "gold labels" baseline. Conditions (each an accuracy vs gold):

  icm        all ICM-labeled training examples as demonstrations, with their ICM labels
  gold       the same examples with their gold labels (the ceiling the paper compares against)
  random     the same examples with balanced random labels (seeded)
  zero-shot  no demonstrations

A prediction is True iff the label word's log-odds > 0. With a test file every test example is a query
after all demonstrations (one shared prefix). Without one, each of the run's own examples is predicted
from the demonstrations outside its consistency group (`Scorer.held_out`: its own group's other members
are never shown, as the paper's test questions never have their other answers among the demonstrations;
shown, the mate gives the answer away to a model that copies or answers against the last label). This is
in-sample all the same, and for `icm` close to what the search maximised, so it is optimistic. This module
does not load models (see `open_eval_backend`).

Example: evaluate(load_run("runs/demo"), backend, test=load_dataset("test.jsonl", task))["conditions"]
"""

from __future__ import annotations

import random
import time
from dataclasses import replace
from typing import Sequence

from .data import Dataset
from .errors import DataError, RunError
from .export import LabeledRun, used_labels
from .plan import Node
from .run import agreement, batch_scorer
from .scoring import Scorer
from .tasks import Example, units

CONDITIONS = {
    "icm": "many-shot, ICM labels",
    "gold": "many-shot, gold labels",
    "random": "many-shot, random labels (balanced)",
    "zero-shot": "no demonstrations",
}


def balanced_random(n: int, seed: int) -> list[bool]:
    """Example: balanced_random(4, 0) -> two True and two False in a seeded order"""
    ys = [True] * (n // 2) + [False] * (n - n // 2)
    random.Random(seed).shuffle(ys)
    return ys


def demo_labels(labels: Sequence[bool | None], gold: Sequence[bool | None] | None, seed: int) -> dict[str, list]:
    """Demonstration labels of each many-shot condition, on the ICM-labeled examples only."""
    chosen = [i for i, y in enumerate(labels) if y is not None]
    out: dict[str, list] = {"icm": list(labels)}
    if gold is not None:
        out["gold"] = [gold[i] if y is not None else None for i, y in enumerate(labels)]
    rand: list = [None] * len(labels)
    for i, y in zip(chosen, balanced_random(len(chosen), seed)):
        rand[i] = y
    out["random"] = rand
    return out


def queries_plan(demos, queries: Sequence[int]) -> Node:
    """Every query after the same demonstrations: the demos are decoded once, as a shared prefix."""
    return Node(tuple(demos), [Node(((q, None),), [], (q,)) for q in queries])


def accuracy(scores: dict[int, float], gold: Sequence[bool | None]) -> dict:
    """Example: accuracy({0: 1.2, 1: -0.3}, [True, True]) -> {"accuracy": 0.5, "n": 2, "predicted_true": 0.5}"""
    pairs = [(s > 0, gold[i]) for i, s in scores.items() if gold[i] is not None]
    if not pairs:
        return {"accuracy": None, "n": 0, "predicted_true": None}
    return {"accuracy": sum(p == g for p, g in pairs) / len(pairs), "n": len(pairs),
            "predicted_true": sum(p for p, _ in pairs) / len(pairs)}


def check_context(backend, demos: Sequence[int], queries: Sequence[int]) -> int:
    """Tokens of the largest many-shot context; a DataError if it exceeds the backend's n_ctx."""
    need = backend.prefix_length + sum(max(backend.length((i, True)), backend.length((i, False))) for i in demos)
    need += max((backend.length((q, None)) for q in queries), default=0)
    if need > backend.n_ctx:
        raise DataError(f"many-shot contexts need up to {need} tokens ({len(demos)} demonstrations + the longest query), "
                        f"more than n_ctx={backend.n_ctx}; raise --n-ctx or show fewer with --demos")
    return need


def eval_examples(run: LabeledRun, test: Dataset | None) -> list[Example]:
    """The run's examples, then the test examples as queries (no group: they are never demonstrations)."""
    extra = [Example(f"test:{ex.id}", ex.prompt) for ex in test.examples] if test is not None else []
    return list(run.dataset.examples) + extra


def choose_demos(run: LabeledRun, k: int | None, seed: int) -> list[int]:
    """Up to k ICM-labeled examples, whole consistency groups in a seeded order (all of them if k is None).

    Example: choose_demos(run, 64, 0) -> indices of at most 64 labeled examples
    """
    labeled = [i for i, y in enumerate(run.labels) if y is not None]
    if k is None or k >= len(labeled):
        return labeled
    order = units(run.dataset.examples, set(labeled))
    random.Random(seed).shuffle(order)
    chosen: list[int] = []
    for members in order:
        if len(chosen) + len(members) <= k:
            chosen += members
    return sorted(chosen)


def evaluate(run: LabeledRun, backend, test: Dataset | None = None, seed: int = 0, demos: int | None = None) -> dict:
    """Label accuracy, the four conditions and the U gap. `backend` must be prepared for `eval_examples(run, test)`.

    The ICM labels are the searched ones (labels the model predicted after the search are reported apart).
    demos: use at most this many labeled examples (whole groups, seeded) as demonstrations, the same ones
    in every many-shot row, when all of them do not fit one context.
    """
    full = run
    run = replace(run, labels=used_labels(run, False))
    t0, tokens0 = time.perf_counter(), backend.tokens_evaluated
    n = len(run.dataset)
    labeled = [i for i, y in enumerate(run.labels) if y is not None]
    shown = choose_demos(run, demos, seed)
    gold, queries = _queries(run, test)
    need = check_context(backend, shown, queries)
    conditions = _conditions(run, backend, test, seed, set(shown), gold, queries)
    ys = [run.labels[i] for i in labeled]
    target = [gold[q] for q in queries]
    majority = max(sum(target), len(target) - sum(target)) / len(target) if target else None
    out = {
        "run": str(run.path), "protocol": "test" if test is not None else "held-out groups",
        "test": test.source if test is not None else None, "examples": n, "labeled": len(labeled),
        "label_balance": {"true": sum(ys), "false": len(ys) - sum(ys)},
        "label_accuracy": None, "label_accuracy_n": 0,
        "queries": len(queries), "majority_baseline": majority, "conditions": conditions,
        "demos_shown": len(shown), "largest_context": need,
    }
    out.update(_label_accuracy(full, run))
    if run.dataset.gold is not None and labeled:
        out["u_gap"] = u_gap(full, backend)
    if test is not None:
        train_prompts = {ex.prompt for ex in run.dataset.examples}
        out["overlap"] = sum(ex.prompt in train_prompts for ex in test.examples)
    out["tokens_evaluated"] = backend.tokens_evaluated - tokens0
    out["seconds"] = round(time.perf_counter() - t0, 2)
    out["notes"] = notes(out)
    return out


def _queries(run: LabeledRun, test: Dataset | None) -> tuple[list, list[int]]:
    """Gold of every example of the evaluation (the run's, then the test file's) and the queries that have one."""
    n = len(run.dataset)
    if test is not None:
        if test.gold is None:
            raise DataError(f"test file {test.source} has no gold labels (field {test.task.label_field!r}); eval needs them")
        return [None] * n + list(test.gold), [n + j for j, g in enumerate(test.gold) if g is not None]
    if run.dataset.gold is None:
        raise DataError(f"{run.dataset.source} has no gold labels (field {run.dataset.task.label_field!r}): "
                        "nothing to evaluate against; pass --test with a labeled file")
    return list(run.dataset.gold), [i for i, g in enumerate(run.dataset.gold) if g is not None]


def _conditions(run: LabeledRun, backend, test: Dataset | None, seed: int, in_context: set[int], gold: list,
                queries: list[int]) -> list[dict]:
    """Accuracy of each condition: ICM, gold and random labels as demonstrations, and zero-shot."""
    n, train_gold = len(run.dataset), run.dataset.gold
    examples = eval_examples(run, test)
    scorer = Scorer(backend, examples)
    conditions = []
    demo_set = [y if i in in_context else None for i, y in enumerate(run.labels)]
    for name, labs in demo_labels(demo_set, train_gold, seed).items():
        labs = labs + [None] * (len(examples) - n)
        if test is not None:
            scores = backend.run(queries_plan(scorer.demos(labs), queries))
        else:
            scores = scorer.held_out(labs, queries)
        conditions.append({"name": name, "description": CONDITIONS[name],
                           "demos": sum(y is not None for y in labs), **accuracy(scores, gold)})
    if train_gold is None:
        conditions.insert(1, {"name": "gold", "description": CONDITIONS["gold"], "demos": 0, "accuracy": None, "n": 0,
                              "predicted_true": None, "skipped": "the run's data file has no gold labels"})
    zero = backend.run(queries_plan((), queries))
    conditions.append({"name": "zero-shot", "description": CONDITIONS["zero-shot"], "demos": 0, **accuracy(zero, gold)})
    return conditions


def _label_accuracy(full: LabeledRun, run: LabeledRun) -> dict:
    """Agreement with gold of the searched labels (pinned ones left out: a person gave them) and of the predicted."""
    out: dict = {}
    train_gold = run.dataset.gold
    pinned = {i for i, src in enumerate(full.sources) if src == "pinned"}
    agr = agreement(run.labels, train_gold, pinned)
    if agr is not None:
        out["label_accuracy"], out["label_accuracy_n"] = agr
    if pinned:
        out["pinned"] = len(pinned)
    predicted = [y if s == "prediction" else None for y, s in zip(full.labels, full.sources)]
    out["predicted"] = sum(y is not None for y in predicted)
    agr = agreement(predicted, train_gold)
    if agr is not None:
        out["predicted_accuracy"], out["predicted_accuracy_n"] = agr
    return out


def u_gap(run: LabeledRun, backend) -> dict:
    """U = alpha*P - I (the run's objective, layout and constraints, batch by batch as the search saw it, with the
    batches' carried demonstrations) of the ICM labels and of the gold labels: on the examples the search labeled,
    and on all examples (ICM: searched + predicted). Evaluation only.

    gap: "search stopped short" when gold scores higher on the same examples (the objective prefers the truth: a
    longer or hotter search would help), "model prefers other labels" when ICM scores higher (the objective
    itself is off: a better model or constraints would help), "equal" within 0.1 of U.
    """
    from .consistency import Consistency
    from .scoring import predictability, utility

    cfg = run.config.search
    gold = run.dataset.gold
    batches, carried = run.batches, run.carried
    searched = used_labels(run, False)
    kinds = {"icm": [], "gold_same": [], "icm_all": [], "gold_all": []}
    for b, idx in enumerate(batches):
        try:
            check_context(backend, [i for i, _ in carried] * (b > 0) + list(idx), idx)
        except DataError:
            return {"skipped": f"batch {b + 1} does not fit n_ctx={backend.n_ctx} (--n-ctx)"}
        local, scorer = batch_scorer(run.dataset, backend, cfg, idx, b, carried if b > 0 else ())  # as its search had it
        cons = Consistency(local, run.dataset.task.relation)
        icm = [searched[i] for i in idx]
        labelings = {"icm": icm, "gold_same": [gold[i] if y is not None else None for i, y in zip(idx, icm)],
                     "icm_all": [run.labels[i] for i in idx], "gold_all": [gold[i] for i in idx]}
        names = [k for k, lab in labelings.items() if any(y is not None for y in lab)]
        for name, scores in zip(names, scorer.scores([labelings[k] for k in names])):
            lab = labelings[name]
            kinds[name].append(utility(predictability(scores, lab, cfg.objective), cons.count(lab), cfg.alpha))
    out = {k: (sum(v) / len(v) if v else None) for k, v in kinds.items()}
    out["alpha"], out["objective"], out["order"] = cfg.alpha, cfg.objective, cfg.order
    diff = out["gold_same"] - out["icm"] if out["gold_same"] is not None and out["icm"] is not None else 0.0
    out["gap"] = ("search stopped short" if diff > 0.1 else "model prefers other labels" if diff < -0.1 else "equal")
    return out


def notes(result: dict) -> list[str]:
    out = []
    if result["protocol"] == "held-out groups":
        out.append("no --test file: the run's own examples, each predicted from the examples of the other consistency "
                   "groups; in-sample, and the ICM row is close to what the search maximised, so it is optimistic")
    if result["demos_shown"] < result["labeled"]:
        out.append(f"demonstrations: {result['demos_shown']} of the {result['labeled']} labeled examples (--demos), "
                   "the same ones in every many-shot row")
    if result.get("overlap"):
        out.append(f"{result['overlap']} test prompt(s) also appear in the run's data: the test set is not held out")
    gap = result.get("u_gap")
    if gap and gap.get("skipped"):
        out.append(f"U of ICM vs gold labels not computed: {gap['skipped']}")
    elif gap:
        say = {"search stopped short": "gold labels score higher by the run's own objective: the search stopped short "
                                       "(more iterations, a hotter start or --patience would help)",
               "model prefers other labels": "the ICM labels score higher than gold by the run's own objective: the "
                                             "model prefers other labels (a larger model or constraints would help)",
               "equal": "ICM and gold labels score the same by the run's own objective"}[gap["gap"]]
        out.append(f"U on the searched examples: ICM {gap['icm']:.3f} vs gold {gap['gold_same']:.3f}; on all examples: "
                   f"ICM {gap['icm_all']:.3f} vs gold {gap['gold_all']:.3f} (alpha {gap['alpha']:g}): {say}")
    out.append("gold labels are used for evaluation only (and as the demonstrations of the gold row)")
    return out


# --- wiring a real model (the CLI calls these) -------------------------------------------------------
def open_eval_backend(run: LabeledRun, test: Dataset | None, model: str | None = None, **overrides):
    """Load the run's model (or `model`) with the run's options, overridden by non-None `overrides`."""
    from .models import registry, resolve_model
    from .run import open_backend

    cfg = run.config
    if model is None:
        if cfg.model_name is None and cfg.model_path is None:
            raise RunError(f"{run.path / 'config.json'} names no model; pass --model")
        model = cfg.model_name if cfg.model_name in registry()["models"] else cfg.model_path
    ref = resolve_model(model)
    opts = replace(cfg.model_options, **{k: v for k, v in overrides.items() if v is not None})
    backend = open_backend(ref.path, opts)
    backend.prepare(eval_examples(run, test), run.dataset.task.label_words)
    return ref, backend


def table(result: dict):
    """A Rich renderable of the result (the CLI prints it; this module never prints)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    def pct(x):
        return "—" if x is None else f"{x:.1%}"

    where = (f"test file {result['test']}" if result["test"]
             else "the run's own examples, each from the other consistency groups")
    b = result["label_balance"]
    head = [f"run {result['run']}" + (f", model {result['model']}" if result.get("model") else ""),
            f"label accuracy vs gold: {pct(result['label_accuracy'])} of {result['label_accuracy_n']} labeled "
            f"({result['labeled']}/{result['examples']} labeled: {b['true']} True, {b['false']} False)",
            f"accuracy on {result['queries']} queries, {where}:"]
    t = Table()
    for col, just in (("condition", "left"), ("demos", "right"), ("accuracy", "right"), ("n", "right"),
                      ("pred. True", "right")):
        t.add_column(col, justify=just)
    for c in result["conditions"]:
        t.add_row(c["description"] if not c.get("skipped") else f"{c['description']} (skipped: {c['skipped']})",
                  str(c["demos"]), pct(c["accuracy"]), str(c["n"]), pct(c["predicted_true"]))
    tail = [f"majority-class baseline on the queries: {pct(result['majority_baseline'])}",
            f"{result['tokens_evaluated']} tokens in {result['seconds']} s"]
    tail += [f"note: {n}" for n in result["notes"]]
    return Group(Text("\n".join(head)), t, Text("\n".join(tail)))


# --- the search over time (evaluation only: gold is compared with reconstructed labels) ---------------
def trajectory(run: LabeledRun, events: list[dict]) -> list[dict]:
    """Per event: step (proposals so far, over all batches), batch, U (of that batch), and agreement with
    gold where the labels at that point are known exactly.

    Events record only the proposed example's change, not what ConsistencyFix changed with it nor which
    examples were seeded. Walking back from the final labels undoes each accepted change; before an accept
    that applied fixes, or before a seed event, the labels are unknown and agreement is None (never guessed).

    Example: trajectory(run, RunDir(run.path).events())[-1] -> {"step": 3000, "U": 41.2, "agreement": 0.9, ...}
    """
    gold = run.dataset.gold
    run = replace(run, labels=used_labels(run, False))
    step = 0
    steps = []
    for ev in events:
        step += ev.get("kind") in ("skip", "accept", "reject")
        steps.append(step)
    labels = list(run.labels)
    known = True
    rows = []
    for ev, x in zip(reversed(events), reversed(steps)):
        agr = agreement(labels, gold) if known and gold is not None else None
        rows.append({"step": x, "batch": ev.get("batch", 0), "U": ev.get("U"), "kind": ev.get("kind"),
                     "agreement": agr[0] if agr else None})
        kind = ev.get("kind")
        if kind == "seed":
            known = False  # which examples the seed labeled is not logged
        elif kind == "accept" and known:
            if ev.get("fixes") or not (isinstance(ev.get("example"), int) and 0 <= ev["example"] < len(labels)):
                known = False
            else:
                labels[ev["example"]] = ev.get("old")
    return rows[::-1]


def plot_run(run: LabeledRun, out) -> dict:
    """Draw U and agreement with gold over iterations to `out` (.png); needs matplotlib (extra `plot`)."""
    from .rundir import RunDir

    events = RunDir(run.path).events()
    if not events:
        raise RunError(f"{run.path / 'events.jsonl'} is missing or empty: nothing to plot")
    try:
        from matplotlib.figure import Figure  # no pyplot: no global backend or open-figure state
    except ImportError:
        raise RunError("--plot needs matplotlib: pip install 'icm-lite[plot]'") from None
    rows = trajectory(run, events)
    x = [r["step"] for r in rows]
    fig = Figure(figsize=(7, 5))
    top, bottom = fig.subplots(2, 1, sharex=True)
    top.plot(x, [r["U"] for r in rows], color="tab:blue", lw=1)
    top.set_ylabel("U of the batch" if rows[-1]["batch"] else "U = alpha P - I")
    for a, b in zip(rows, rows[1:]):
        if b["batch"] != a["batch"]:
            for ax in (top, bottom):
                ax.axvline(b["step"], color="gray", lw=0.5, ls=":")
    known = [(r["step"], r["agreement"]) for r in rows if r["agreement"] is not None]
    if known:
        bottom.plot(*zip(*known), color="tab:green", lw=1)
    bottom.set_ylabel("agreement with gold")
    bottom.set_ylim(0, 1.02)
    bottom.set_xlabel("proposals" + (" (dotted: next batch)" if rows[-1]["batch"] else ""))
    if len(known) < len(rows) and run.dataset.gold is not None:
        since = f"before step {known[0][0]}" if known else "throughout"
        bottom.set_title(f"agreement unknown {since}: the event log does not record seeds or ConsistencyFix "
                         "changes", fontsize=8)
    n = len(run.labels)
    fig.suptitle(f"{run.path.name}: {run.dataset.task.name}, {n} examples", fontsize=10)
    fig.tight_layout()
    try:
        fig.savefig(out, dpi=120)
    except OSError as e:
        raise RunError(f"cannot write {out}: {e.strerror or e}") from None
    return {"plot": str(out), "events": len(rows), "agreement_points": len(known)}
