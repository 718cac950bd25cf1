"""ICM's simulated-annealing search (Wen et al. 2025, Algorithms 1 and 2). Pure: no I/O, no model.

The search holds a labeling D (None = unlabeled) and maximises U(D) = alpha * P(D) - I(D), with P from
`scoring.predictability` and I from `consistency`. Each `step()`:
  1. samples an example (weight 100 when unlabeled and its group already has a labeled member, else 1);
  2. predicts its label with every other labeled example in context; if that equals the current label,
     nothing changes ("skip");
  3. otherwise D^ = D with the new label; ConsistencyFix(D^) (Algorithm 2, see `fix`);
  4. accepts D^ if dU = U(D^) - U(D) > 0, else with probability exp(dU / T).
Every context places every labeled example where the scorer's fixed layout puts it, so U is a function of
the labeling alone: U(D) is the state's, only the new labelings are scored, and a labeling scored once is
not scored again (a memo). A proposal repeated under an unchanged labeling reuses its dU and draws only the
acceptance coin: zero tokens. ConsistencyFix draws from its own random stream, derived from the seed, the
labeling and the proposal, so a cached and a recomputed proposal end the same, and traces stay
deterministic and resumable.

ConsistencyFix, `fix`:
  code  (authors' src/experiments/ICM.py): on a proposal the first fix is applied unconditionally; each
        round walks the inconsistent pairs in shuffled order and takes the first pair whose best option does
        not lower U; a contradiction's options are (T,F) and (F,T).
  paper (Algorithm 2): each round picks one random inconsistent pair and keeps its best option unless that
        lowers U; a contradiction may also become (F,F).
Seeds, `seeds`: `groups` labels the first K examples of a shuffled list of whole consistency groups (the
authors'); `examples` labels K examples drawn anywhere. Both half True, half False.
`patience` N stops the search when N iterations in a row changed no label. The search never sees gold
labels: it is given examples and a scorer, nothing else. Every step returns an `Event`.

Example: Search(examples, Scorer(backend, examples), "none", SearchConfig(iterations=200)).run()
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator, Sequence

from .consistency import Consistency
from .options import opt
from .plan import LAYOUT, LAYOUTS, TAIL
from .estimate import Block, horvitz_thompson
from .scoring import OBJECTIVES, Scorer, aggregate, predictability, term
from .tasks import Example

SCHEDULES = ("log", "exp")
FIXES = ("code", "paper")
SEEDS = ("groups", "examples")
DELTAS = ("exact", "sample")
_MEMO = 256  # labelings whose scores are kept


@dataclass(frozen=True)
class SearchConfig:
    """The search's options (each is also a `label` option: options.py)."""

    iterations: int | None = opt(None, "Search iterations (proposals) per batch. Default: 12 per example of the "
                                       "batch, the authors' budget (3000 for their batches of 256).", min=0)
    patience: int = opt(0, "Stop a batch after this many iterations in a row that changed no label (0 = never).",
                        min=0)
    alpha: float = opt(30.0, "Weight of mutual predictability against inconsistencies. Tuned for --objective code; "
                             "with paper (a sum over examples) scale alpha and T0 down by about N.")
    t0: float = opt(10.0, "Initial temperature.")
    t_min: float = opt(0.01, "Final temperature.")
    schedule: str = opt("log", "Cooling schedule over accepted proposals.", choices=SCHEDULES)
    init_k: int = opt(8, "Seed labels (half True, half False).", min=0)
    seeds: str = opt("groups", "Which examples get the seed labels: groups = the first K examples of shuffled whole "
                               "consistency groups (the authors' code); examples = K examples drawn anywhere.",
                     choices=SEEDS)
    fix: str = opt("code", "ConsistencyFix: code = the authors' code (first fix of a proposal forced, first pair "
                           "that does not lower U); paper = Algorithm 2 (best option of a random pair, kept unless "
                           "it lowers U; a contradiction may become False/False).", choices=FIXES)
    fix_rounds: int = opt(10, "ConsistencyFix rounds per proposal.", min=0)
    objective: str = opt("code", "code: mean log-odds (authors' code); paper: sum of log-probabilities.",
                         choices=OBJECTIVES)
    order: str = opt(LAYOUT, "Where each demonstration sits in a context: tree = divide and conquer over a seeded "
                             "shuffle, about n·L·(log2(n) + tail) tokens per U(D); grouped = the same tree over whole "
                             "consistency groups (a group's members read the same demonstrations); canonical = the "
                             "authors' file order, about n²·L/2.",
                     choices=LAYOUTS)
    tail: int = opt(TAIL, "Tree layouts: examples pushed right before every query, the same ones for every query "
                          "(as in the authors' order), instead of the query's tree neighbours. Costs n·tail·L tokens "
                          "per U(D); predictions lean towards the tail's labels.", min=0)
    delta: str = opt("exact", "How dU is computed: exact = every labeled example rescored under the new labeling "
                              "(one leave-one-out pass); sample = the changed examples plus a random block of about "
                              "--queries others (unbiased; accepted with the penalty rule for its noise). Opt-in.",
                     choices=DELTAS)
    queries: int = opt(16, "With --delta sample: labeled examples per sampled block.", min=1)
    priority: float = opt(100.0, "Sampling weight of an unlabeled example whose group already has a labeled member "
                                 "(others: 1).")
    seed: int = opt(0, "Random seed (same seed + data + model = same run).")

    def __post_init__(self) -> None:
        for name, allowed in (("schedule", SCHEDULES), ("objective", OBJECTIVES), ("fix", FIXES),
                              ("seeds", SEEDS), ("order", LAYOUTS), ("delta", DELTAS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}")


PER_EXAMPLE = 12  # iterations per example without --iterations: the authors' 3000 for a batch of 256


def budget(config: "SearchConfig", n: int) -> int:
    """Iterations a batch of n examples gets: --iterations, or 12 per example when it is not given.

    Example: budget(SearchConfig(), 40) -> 480
    """
    return PER_EXAMPLE * n if config.iterations is None else config.iterations


def temperature(schedule: str, t0: float, t_min: float, n_accepted: int) -> float:
    """log: max(Tmin, T0 / (1 + 2 ln(1 + n))); exp: max(Tmin, T0 * 0.99**n); n = accepted proposals."""
    if schedule == "log":
        t = t0 / (1.0 + 2.0 * math.log(1.0 + n_accepted))
    elif schedule == "exp":
        t = t0 * 0.99 ** n_accepted
    else:
        raise ValueError(f"schedule must be one of {SCHEDULES}")
    return max(t_min, t)


def accept_probability(delta: float, t: float) -> float:
    """Metropolis: 1 for an improvement, else exp(dU / T)."""
    return 1.0 if delta > 0 else math.exp(delta / t)


@dataclass
class Event:
    """What one step did. kind: seed | skip | accept | reject | done. cached: the proposal's dU was reused
    (scored earlier under the same labeling). stop (on done): "iterations" or "patience"."""

    kind: str
    iteration: int
    temperature: float
    U: float
    P: float
    I: int
    n_labeled: int
    n_true: int
    example: int | None = None
    old: bool | None = None
    new: bool | None = None
    delta: float | None = None
    fixes: int = 0
    tokens: int = 0
    cached: bool = False
    stop: str | None = None
    noise: float | None = None  # with --delta sample: the estimate's standard deviation

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Eval:
    labels: tuple
    scores: dict[int, float]
    P: float
    I: int
    U: float
    var: float = 0.0  # of U, when U is an estimate
    estimated: bool = False


@dataclass
class SearchState:
    labels: list
    scores: dict[int, float] = field(default_factory=dict)
    U: float = 0.0
    P: float = 0.0
    I: int = 0
    iteration: int = 0
    n_accepted: int = 0
    quiet: int = 0  # iterations in a row that changed no label
    stopped: str | None = None  # why the search ended early ("patience")
    spread: float | None = None  # with --delta sample: variance of a block query's change, pooled over steps
    estimated: bool = False  # P and U are running estimates (--delta sample after an accepted estimate)


class Search:
    def __init__(self, examples: Sequence[Example], scorer: Scorer, relation: str, config: SearchConfig, *,
                 ranked_seeds: bool = False):
        """ranked_seeds: label the K seeds by rank of their predicted log-odds (top half True) instead of at
        random; for a scorer whose contexts start with fixed demonstrations (later batches), so the seeds
        follow the polarity those demonstrations set. Still half True, half False."""
        self.examples = examples
        self.scorer = scorer
        self.config = config
        self.ranked_seeds = ranked_seeds
        self.cons = Consistency(examples, relation)
        self.rng = random.Random(config.seed)
        self.state = SearchState(labels=[None] * len(examples))
        self._members: dict[str, list[int]] = {}
        for i, ex in enumerate(examples):
            if ex.group is not None:
                self._members.setdefault(ex.group, []).append(i)
        self._memo: OrderedDict[tuple, _Eval] = OrderedDict()
        self._proposals: dict[tuple[int, bool], tuple[_Eval, int]] = {}  # for the current labeling
        self._predictions: dict[int, float] = {}  # unlabeled examples, for the current labeling
        self._block: Block | None = None  # with --delta sample: this step's block of queries

    # --- scoring ---------------------------------------------------------------------------------
    def _evaluate(self, labelings: list[tuple]) -> list[_Eval]:
        """U of each labeling; the ones not in the memo are scored together, in one pass."""
        if self._block is not None:
            return self._estimate(labelings)
        todo = list(dict.fromkeys(lab for lab in labelings if lab not in self._memo))
        for lab, scores in zip(todo, self.scorer.scores(todo)):
            p = predictability(scores, lab, self.config.objective)
            inc = self.cons.count(lab)
            self._memo[lab] = _Eval(lab, scores, p, inc, self.config.alpha * p - inc)
        out = []
        for lab in labelings:
            self._memo.move_to_end(lab)
            out.append(self._memo[lab])
        while len(self._memo) > _MEMO:
            self._memo.popitem(last=False)
        return out

    def _estimate(self, labelings: list[tuple]) -> list[_Eval]:
        """U of labelings that differ from the state's on a few examples, estimated (estimate.py): exact for the
        changed examples, the block's queries for the rest; all labelings and the state's in one pass."""
        st, c, block = self.state, self.config, self._block
        if block.probability >= 1.0 and not st.estimated:  # the block is everything: score exactly, once
            self._block = None
            try:
                return self._evaluate(labelings)
            finally:
                self._block = block
        base = tuple(st.labels)
        labeled = [i for i, y in enumerate(base) if y is not None]
        wants_base: set[int] = set()
        plan = []
        known = self._predictions  # a lone changed example's context is the same under both labelings
        for lab in labelings:
            changed = [i for i, (a, b) in enumerate(zip(base, lab)) if a != b]
            same = [i for i in labeled if i not in changed and lab[i] is not None and i in block]
            lone = changed[0] if len(changed) == 1 and changed[0] in known else None
            wants_base.update(same + [i for i in changed if base[i] is not None and i != lone])
            plan.append((lab, changed, same, lone))
        got = self.scorer.scores([base] + [lab for lab, *_ in plan],
                                 [wants_base] + [set(same) | {i for i in ch if lab[i] is not None and i != lone}
                                                 for lab, ch, same, lone in plan])
        old, out = got[0], []
        total = st.P * len(labeled) if c.objective == "code" else st.P  # the sum of the state's terms
        for (lab, changed, same, lone), new in zip(plan, got[1:]):
            if lone is not None:
                new[lone] = old[lone] = known[lone]
            diffs = [term(new[i], lab[i], c.objective) - term(old[i], base[i], c.objective) for i in same]
            population = sum(1 for i in labeled if i not in changed and lab[i] is not None)
            rest, var = horvitz_thompson(diffs, population, block.probability)
            if var != var:  # fewer than two block queries: the spread measured in earlier steps
                var = (st.spread or 0.0) * population ** 2 * (1 / block.probability - 1) / max(1, len(diffs))
            elif len(diffs) >= 2:
                mean = sum(diffs) / len(diffs)
                s2 = sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1)
                st.spread = s2 if st.spread is None else 0.9 * st.spread + 0.1 * s2
            own = (sum(term(new[i], lab[i], c.objective) for i in changed if lab[i] is not None)
                   - sum(term(old[i], base[i], c.objective) for i in changed if base[i] is not None))
            n = sum(y is not None for y in lab)
            p = aggregate(total + own + rest, n, c.objective)
            scale = (c.alpha / n) ** 2 if c.objective == "code" and n else c.alpha ** 2
            inc = self.cons.count(lab)
            out.append(_Eval(lab, {**st.scores, **new}, p, inc, c.alpha * p - inc, var * scale, estimated=True))
        return out

    def _exact_state(self) -> None:
        """Replace the state's estimated P and U by exact ones (one leave-one-out pass)."""
        block, self._block = self._block, None
        self._adopt(self._evaluate([tuple(self.state.labels)])[0])
        self._block = block

    def _fix_rng(self, labels: tuple, tag: str) -> random.Random:
        """ConsistencyFix's own stream: a function of the seed, the labeling and the proposal."""
        code = "".join("n" if y is None else "1" if y else "0" for y in labels)
        digest = hashlib.blake2b(f"{self.config.seed}|{tag}|{code}".encode(), digest_size=8).digest()
        return random.Random(int.from_bytes(digest, "big"))

    def _with(self, labels: tuple, i: int, j: int, option: tuple[bool, bool]) -> tuple:
        lab = list(labels)
        lab[i], lab[j] = option
        return tuple(lab)

    def fix(self, labels: tuple, rng: random.Random, forced: bool) -> tuple[_Eval, int]:
        """ConsistencyFix (Algorithm 2) on `labels`: the fixed labeling's evaluation and the fixes applied.
        forced: apply the first fix whatever it does to U (the authors' code, on a proposal)."""
        c = self.config
        if c.fix == "paper":
            return self._fix_paper(labels, rng)
        cur = None if forced else self._evaluate([labels])[0]
        fixes = 0
        for _ in range(c.fix_rounds):
            pairs = self.cons.inconsistent(labels)
            if not pairs:
                break
            rng.shuffle(pairs)
            taken = None
            for i, j in pairs:
                opts = self._evaluate([self._with(labels, i, j, o) for o in self.cons.options(i, j, both_false=False)])
                best = max(opts, key=lambda e: e.U)  # the first of equals, as np.argmax
                if cur is None or best.U >= cur.U:
                    taken = best
                    break
            if taken is None:
                break
            labels, cur, fixes = taken.labels, taken, fixes + 1
        return (cur if cur is not None else self._evaluate([labels])[0]), fixes

    def _fix_paper(self, labels: tuple, rng: random.Random) -> tuple[_Eval, int]:
        """A pair whose best option would lower U is not tried again until a fix changes the labeling: with the
        same labels it would score the same."""
        cur, fixes, tried = None, 0, set()
        for _ in range(self.config.fix_rounds):
            bad = [p for p in self.cons.inconsistent(labels) if p not in tried]
            if not bad:
                break
            i, j = bad[rng.randrange(len(bad))]
            opts = [self._with(labels, i, j, o) for o in self.cons.options(i, j)]
            evals = self._evaluate(([labels] if cur is None else []) + opts)  # the first round scores D^ too
            if cur is None:
                cur, evals = evals[0], evals[1:]
            best = max(evals, key=lambda e: e.U)
            if best.U >= cur.U:
                labels, cur, fixes = best.labels, best, fixes + 1
                tried.clear()
            else:
                tried.add((i, j))
        return (cur if cur is not None else self._evaluate([labels])[0]), fixes

    # --- the search ----------------------------------------------------------------------------
    def _event(self, kind: str, **kw) -> Event:
        st = self.state
        labeled = [y for y in st.labels if y is not None]
        return Event(kind, st.iteration, self.temperature(), st.U, st.P, st.I, len(labeled), sum(labeled),
                     tokens=self.scorer.backend.tokens_evaluated, **kw)

    def temperature(self) -> float:
        c = self.config
        return temperature(c.schedule, c.t0, c.t_min, self.state.n_accepted)

    def _adopt(self, ev: _Eval) -> None:
        st = self.state
        if tuple(st.labels) != ev.labels:
            self._proposals.clear()
            self._predictions.clear()
        st.labels, st.scores, st.P, st.I, st.U = list(ev.labels), dict(ev.scores), ev.P, ev.I, ev.U
        st.estimated = ev.estimated

    def _seed_examples(self, k: int) -> list[int]:
        n = len(self.examples)
        if self.config.seeds == "examples":
            return self.rng.sample(range(n), k)
        units: dict = {}
        for i, ex in enumerate(self.examples):
            units.setdefault(ex.group if ex.group is not None else ("solo", i), []).append(i)
        order = list(units.values())
        self.rng.shuffle(order)
        return [i for members in order for i in members][:k]

    def start(self) -> Event:
        """Label K seed examples, half True and half False, then run ConsistencyFix."""
        n = len(self.examples)
        k = min(self.config.init_k, n)
        chosen = self._seed_examples(k)
        seeds = [True] * (k // 2) + [False] * (k - k // 2)
        if self.ranked_seeds:
            odds = self.scorer.predict_many(chosen, [None] * n)
            chosen.sort(key=lambda i: (-odds[i], i))
        else:
            self.rng.shuffle(seeds)
        labels: list = [None] * n
        for i, y in zip(chosen, seeds):
            labels[i] = y
        ev, fixes = self.fix(tuple(labels), self._fix_rng(tuple(labels), "seed"), forced=False)
        self._adopt(ev)
        return self._event("seed", fixes=fixes)

    def _sample(self) -> int:
        labels = self.state.labels
        grouped = {g for g, m in self._members.items() if any(labels[i] is not None for i in m)}
        weights = [self.config.priority if y is None and ex.group in grouped else 1.0
                   for y, ex in zip(labels, self.examples)]
        return self.rng.choices(range(len(labels)), weights=weights)[0]

    def predict(self, x: int) -> float:
        """Log-odds of x with every other labeled example in context: for a labeled x its leave-one-out score
        (the same context), for an unlabeled one a model call, remembered until the labeling changes."""
        st = self.state
        if st.labels[x] is not None and x in st.scores and self.config.delta == "exact":
            return st.scores[x]
        if x not in self._predictions:
            self._predictions[x] = self.scorer.predict(x, st.labels)
        return self._predictions[x]

    def step(self) -> Event:
        st = self.state
        st.iteration += 1
        t = self.temperature()
        x = self._sample()
        new = self.predict(x) > 0
        old = st.labels[x]
        if old == new:
            st.quiet += 1
            return self._event("skip", example=x, old=old, new=new)
        if self.config.delta == "sample":
            return self._sampled_step(x, old, new, t)
        cached = (x, new) in self._proposals
        if not cached:
            proposal = list(st.labels)
            proposal[x] = new
            proposal = tuple(proposal)
            self._proposals[(x, new)] = self.fix(proposal, self._fix_rng(tuple(st.labels), f"{x}:{new}"),
                                                 forced=self.config.fix == "code")
        after, fixes = self._proposals[(x, new)]
        delta = after.U - st.U
        accept = delta > 0 or self.rng.random() < math.exp(delta / t)
        changed = accept and after.labels != tuple(st.labels)
        st.quiet = 0 if changed else st.quiet + 1
        if accept:
            self._adopt(after)
            st.n_accepted += 1
        return self._event("accept" if accept else "reject", example=x, old=old, new=new, delta=delta, fixes=fixes,
                           cached=cached)

    def _sampled_step(self, x: int, old, new: bool, t: float) -> Event:
        """A proposal scored with an estimated dU (a fresh block every step, never cached), accepted by the penalty
        rule (Ceperley & Dewing 1999): min(1, exp(dU/T - var/(2 T^2))), which keeps the acceptance unbiased for a
        Gaussian estimate of known variance."""
        st, c = self.state, self.config
        labels = tuple(st.labels)
        labeled = sum(y is not None for y in labels)
        self._block = Block.pick(self.scorer.layout, labeled, c.queries, self._fix_rng(labels, f"block:{st.iteration}"))
        try:
            proposal = list(labels)
            proposal[x] = new
            after, fixes = self.fix(tuple(proposal), self._fix_rng(labels, f"{x}:{new}"), forced=c.fix == "code")
        finally:
            self._block = None
        delta = after.U - st.U
        d = delta / t - after.var / (2 * t * t)
        accept = d > 0 or self.rng.random() < math.exp(d)
        changed = accept and after.labels != labels
        st.quiet = 0 if changed else st.quiet + 1
        if accept:
            self._adopt(after)
            st.n_accepted += 1
        return self._event("accept" if accept else "reject", example=x, old=old, new=new, delta=delta, fixes=fixes,
                           noise=math.sqrt(after.var))

    def finished(self) -> bool:
        st, c = self.state, self.config
        if st.stopped is None and c.patience and st.quiet >= c.patience and st.iteration > 0:
            st.stopped = "patience"
        return st.stopped is not None or st.iteration >= budget(c, len(self.examples))

    def events(self, should_stop: Callable[[], bool] | None = None) -> Iterator[Event]:
        """The search as a stream of events: seed (when fresh), one per step, done at the end. Stops quietly,
        without a done event, when `should_stop()` is true (the state is then resumable)."""
        if self.state.iteration == 0 and all(y is None for y in self.state.labels):
            yield self.start()
        while not self.finished():
            if should_stop is not None and should_stop():
                return
            yield self.step()
        if self.config.delta == "sample":
            self._exact_state()  # what the run reports and saves is exact, not the running estimate
        yield self._event("done", stop=self.state.stopped or "iterations")

    def run(self, on_event: Callable[[Event], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> SearchState:
        emit = on_event or (lambda e: None)
        for ev in self.events(should_stop):
            emit(ev)
        return self.state

    # --- resume ----------------------------------------------------------------------------------
    def snapshot(self) -> dict:
        st = self.state
        version, internal, gauss = self.rng.getstate()
        return {"labels": st.labels, "scores": {str(k): v for k, v in st.scores.items()}, "U": st.U, "P": st.P,
                "I": st.I, "iteration": st.iteration, "n_accepted": st.n_accepted, "quiet": st.quiet,
                "stopped": st.stopped, "spread": st.spread, "estimated": st.estimated,
                "rng": [version, list(internal), gauss]}

    def restore(self, snap: dict) -> None:
        self.state = SearchState(list(snap["labels"]), {int(k): v for k, v in snap["scores"].items()},
                                 snap["U"], snap["P"], snap["I"], snap["iteration"], snap["n_accepted"],
                                 snap.get("quiet", 0), snap.get("stopped"), snap.get("spread"), snap.get("estimated", False))
        self._memo.clear()
        self._proposals.clear()
        self._predictions.clear()
        st = self.state
        if not st.estimated:
            self._memo[tuple(st.labels)] = _Eval(tuple(st.labels), dict(st.scores), st.P, st.I, st.U)
        version, internal, gauss = snap["rng"]
        self.rng.setstate((version, tuple(internal), gauss))
