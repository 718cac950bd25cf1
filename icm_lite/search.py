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
How a batch starts, `init`:
  seeds     (the authors', a cold start) K seed labels, half True, half False, then ConsistencyFix. `seeds`:
            `groups` labels the first K examples of a shuffled list of whole consistency groups (the authors');
            `examples` labels K examples drawn anywhere. The annealing starts hot (T0 10 at alpha 30).
  bootstrap (default, a warm start) every example labeled by passes of the cheap peer's rule (bootstrap.py:
            held-out many-shot prediction + consistent decoding), starting from the zero-shot labels, until a pass
            changes nothing, at most `passes`; then the labeling or its global flip, whichever has the higher U (a
            pass can settle on the flip; only U tells them apart). The annealing then starts cool (WARM_T0: a hot
            start would undo what the passes found) and proposes, for a sampled example, its group's held-out
            decoding (not its leave-one-out prediction: in the grouped layout that context ends with the mate,
            which a small model copies). When the passes do not settle within `passes`, the batch falls back to
            the cold start: the search as the authors run it, at their cost. Each pass is an event ("pass"; the
            last one is the "seed" event).
`patience` N stops the search when N iterations in a row changed no label (default: never for a cold start, one
sweep, WARM_PATIENCE per example, after a warm one). The search never sees gold labels: it is given examples and a
scorer, nothing else. Every step returns an `Event`.

Example: Search(examples, Scorer(backend, examples), "none", SearchConfig(iterations=200)).run()
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import OrderedDict
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Iterator, Sequence

from .bootstrap import PASSES, one_pass, zero_shot_start
from .consistency import Consistency
from .options import opt
from .plan import LAYOUT, LAYOUTS, TAIL
from .estimate import Block, horvitz_thompson
from .scoring import OBJECTIVES, Scorer, aggregate, predictability, term, utility
from .tasks import Example, units

SCHEDULES = ("log", "exp")
FIXES = ("code", "paper")
SEEDS = ("groups", "examples")
DELTAS = ("exact", "sample")
INITS = ("bootstrap", "seeds")
COLD_T0 = 10.0  # the authors' initial temperature (alpha 30)
WARM_T0 = 1.0  # after the bootstrap passes (measured: benchmarks/README.md, "warm start")
WARM_PATIENCE = 1  # sweeps (iterations per example) without a change that end a warm search
_MEMO = 256  # labelings whose scores are kept


@dataclass(frozen=True)
class SearchConfig:
    """The search's options (each is also a `label` option: options.py)."""

    iterations: int | None = opt(None, "Search iterations (proposals) per batch. Default: 12 per example of the "
                                       "batch, the authors' budget (3000 for their batches of 256).", min=0)
    patience: int | None = opt(None, "Stop a batch after this many iterations in a row that changed no label (0 = "
                                     "never). Default: never for a cold start; one per example of the batch after a "
                                     "warm one.", min=0)
    alpha: float = opt(30.0, "Weight of mutual predictability against inconsistencies. Tuned for --objective code; "
                             "with paper (a sum over examples) scale alpha and T0 down by about N.")
    t0: float | None = opt(None, "Initial temperature. Default: 10 for a cold start (the authors'); 1 after a warm "
                                 "one (--init bootstrap), whose labeling is already complete.")
    t_min: float = opt(0.01, "Final temperature.")
    schedule: str = opt("log", "Cooling schedule over accepted proposals.", choices=SCHEDULES)
    init: str = opt("bootstrap", "How a batch starts: bootstrap = every example labeled by passes of held-out "
                                 "many-shot prediction with consistent decoding from the zero-shot labels, then the "
                                 "labeling or its global flip, whichever has the higher U, then a cool annealing (a "
                                 "warm start; a batch whose passes do not settle within --passes falls back to "
                                 "seeds); seeds = --init-k random seed labels (the authors' cold start).",
                    choices=INITS)
    passes: int = opt(PASSES, "With --init bootstrap: passes that may change labels before the batch falls back to "
                              "--init seeds (each costs about one leave-one-out pass of the batch).", min=1)
    init_k: int = opt(8, "With --init seeds: seed labels (half True, half False).", min=0)
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
                              ("seeds", SEEDS), ("order", LAYOUTS), ("delta", DELTAS), ("init", INITS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}")


    def start_temperature(self, warm: bool) -> float:
        """--t0, or its default: the authors' 10 for a cold start, WARM_T0 after a warm one."""
        if self.t0 is not None:
            return self.t0
        return WARM_T0 if warm else COLD_T0

    def patience_for(self, n: int, warm: bool) -> int:
        """--patience, or its default: 0 (never) for a cold start, WARM_PATIENCE sweeps of n after a warm one.

        Example: SearchConfig().patience_for(40, warm=True) -> 40; SearchConfig().patience_for(40, warm=False) -> 0
        """
        if self.patience is not None:
            return self.patience
        return WARM_PATIENCE * n if warm else 0


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
    """What one step did. kind: pass | seed | skip | accept | reject | done (| predict, run.py). cached: the
    proposal's dU was reused (scored earlier under the same labeling). stop (on done): "iterations" or "patience".
    With --init bootstrap: `passes` done so far and `changed` labels by the last one (pass and seed events; a seed
    event with changed > 0 is the fall-back to the cold start); `flipped` (seed): the global flip of the passes'
    labeling had the higher U and was kept. A pass event's U, P, I and n_true are those of the labeling the pass
    scored (the one before its changes); every other event's are the state's."""

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
    passes: int | None = None
    changed: int | None = None
    flipped: bool | None = None
    predicted: int | None = None  # predict events (run.py, --core): examples of the rest predicted so far

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
    passes: int = 0  # bootstrap passes done (--init bootstrap)
    started: bool = False  # the start is done: seeds labeled, or the bootstrap passes finished
    warm: bool = False  # the annealing started from the bootstrap passes' labeling (not from seeds)


class Search:
    def __init__(self, examples: Sequence[Example], scorer: Scorer, relation: str, config: SearchConfig, *,
                 ranked_seeds: bool = False, pinned: dict[int, bool] | None = None):
        """ranked_seeds: label the K seeds by rank of their predicted log-odds (top half True) instead of at
        random; for a scorer whose contexts start with fixed demonstrations (later batches), so the seeds
        follow the polarity those demonstrations set. Still half True, half False. pinned: labels a person
        fixed (--pin): labeled from the start, counted in U like any label, never proposed, never changed by
        ConsistencyFix or the bootstrap passes."""
        self.examples = examples
        self.pinned = dict(pinned or {})
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
        self._held: tuple[tuple, dict[int, float]] | None = None  # held-out log-odds of a labeling (warm annealing)

    # --- scoring ---------------------------------------------------------------------------------
    def _evaluate(self, labelings: list[tuple]) -> list[_Eval]:
        """U of each labeling, exactly; the ones not in the memo are scored together, in one pass. (An estimator:
        `fix` takes this one or a sampled one, `_estimate` with a block.)"""
        todo = list(dict.fromkeys(lab for lab in labelings if lab not in self._memo))
        for lab, scores in zip(todo, self.scorer.scores(todo)):
            p = predictability(scores, lab, self.config.objective)
            inc = self.cons.count(lab)
            self._memo[lab] = _Eval(lab, scores, p, inc, utility(p, inc, self.config.alpha))
        out = []
        for lab in labelings:
            self._memo.move_to_end(lab)
            out.append(self._memo[lab])
        while len(self._memo) > _MEMO:
            self._memo.popitem(last=False)
        return out

    def _estimate(self, labelings: list[tuple], block: Block) -> list[_Eval]:
        """U of labelings that differ from the state's on a few examples, estimated (estimate.py): exact for the
        changed examples, the block's queries for the rest; all labelings and the state's in one pass."""
        st, c = self.state, self.config
        if block.probability >= 1.0 and not st.estimated:  # the block is everything: score exactly, once
            return self._evaluate(labelings)
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
            out.append(_Eval(lab, {**st.scores, **new}, p, inc, utility(p, inc, c.alpha), var * scale, estimated=True))
        return out

    def _exact_state(self) -> None:
        """Replace the state's estimated P and U by exact ones (one leave-one-out pass)."""
        self._adopt(self._evaluate([tuple(self.state.labels)])[0])

    def _fix_rng(self, labels: tuple, tag: str) -> random.Random:
        """ConsistencyFix's own stream: a function of the seed, the labeling and the proposal."""
        code = "".join("n" if y is None else "1" if y else "0" for y in labels)
        digest = hashlib.blake2b(f"{self.config.seed}|{tag}|{code}".encode(), digest_size=8).digest()
        return random.Random(int.from_bytes(digest, "big"))

    def _options(self, i: int, j: int, both_false: bool = True) -> list[tuple[bool, bool]]:
        """The pair's consistent options that keep its pinned labels."""
        pins = self.pinned
        return [o for o in self.cons.options(i, j, both_false)
                if pins.get(i, o[0]) == o[0] and pins.get(j, o[1]) == o[1]]

    def _with(self, labels: tuple, i: int, j: int, option: tuple[bool, bool]) -> tuple:
        lab = list(labels)
        lab[i], lab[j] = option
        return tuple(lab)

    def fix(self, labels: tuple, rng: random.Random, forced: bool, evaluate=None) -> tuple[_Eval, int]:
        """ConsistencyFix (Algorithm 2) on `labels`: the fixed labeling's evaluation and the fixes applied.
        forced: apply the first fix whatever it does to U (the authors' code, on a proposal). evaluate: how U is
        computed (default exactly, `_evaluate`; a sampled step passes its estimator)."""
        c = self.config
        evaluate = evaluate or self._evaluate
        if c.fix == "paper":
            return self._fix_paper(labels, rng, evaluate)
        cur = None if forced else evaluate([labels])[0]
        fixes = 0
        for _ in range(c.fix_rounds):
            pairs = self.cons.inconsistent(labels)
            if not pairs:
                break
            rng.shuffle(pairs)
            taken = None
            for i, j in pairs:
                options = self._options(i, j, both_false=False)
                if not options:
                    continue
                opts = evaluate([self._with(labels, i, j, o) for o in options])
                best = max(opts, key=lambda e: e.U)  # the first of equals, as np.argmax
                if cur is None or best.U >= cur.U:
                    taken = best
                    break
            if taken is None:
                break
            labels, cur, fixes = taken.labels, taken, fixes + 1
        return (cur if cur is not None else evaluate([labels])[0]), fixes

    def _fix_paper(self, labels: tuple, rng: random.Random, evaluate) -> tuple[_Eval, int]:
        """A pair whose best option would lower U is not tried again until a fix changes the labeling: with the
        same labels it would score the same."""
        cur, fixes, tried = None, 0, set()
        for _ in range(self.config.fix_rounds):
            bad = [p for p in self.cons.inconsistent(labels) if p not in tried]
            if not bad:
                break
            i, j = bad[rng.randrange(len(bad))]
            options = self._options(i, j)
            if not options:
                tried.add((i, j))
                continue
            opts = [self._with(labels, i, j, o) for o in options]
            evals = evaluate(([labels] if cur is None else []) + opts)  # the first round scores D^ too
            if cur is None:
                cur, evals = evals[0], evals[1:]
            best = max(evals, key=lambda e: e.U)
            if best.U >= cur.U:
                labels, cur, fixes = best.labels, best, fixes + 1
                tried.clear()
            else:
                tried.add((i, j))
        return (cur if cur is not None else evaluate([labels])[0]), fixes

    # --- the search ----------------------------------------------------------------------------
    def _event(self, kind: str, **kw) -> Event:
        st = self.state
        labeled = [y for y in st.labels if y is not None]
        return Event(kind, st.iteration, self.temperature(), st.U, st.P, st.I, len(labeled), sum(labeled),
                     tokens=self.scorer.tokens, **kw)

    def temperature(self) -> float:
        """The annealing's temperature now (during the bootstrap passes: the warm one it would start at)."""
        c, st = self.config, self.state
        warm = st.warm or (c.init == "bootstrap" and not st.started)
        return temperature(c.schedule, c.start_temperature(warm), c.t_min, st.n_accepted)

    def _adopt(self, ev: _Eval) -> None:
        st = self.state
        if tuple(st.labels) != ev.labels:
            self._proposals.clear()
            self._predictions.clear()
        st.labels, st.scores, st.P, st.I, st.U = list(ev.labels), dict(ev.scores), ev.P, ev.I, ev.U
        st.estimated = ev.estimated

    def _seed_examples(self, k: int) -> list[int]:
        free = [i for i in range(len(self.examples)) if i not in self.pinned]
        if self.config.seeds == "examples":
            return self.rng.sample(free, min(k, len(free)))
        order = units(self.examples, set(free))
        self.rng.shuffle(order)
        return [i for members in order for i in members][:k]

    def start(self) -> Event:
        """The cold start (--init seeds): label K seed examples, half True and half False, then run ConsistencyFix."""
        n = len(self.examples)
        k = min(self.config.init_k, n)
        chosen = self._seed_examples(k)
        k = len(chosen)
        seeds = [True] * (k // 2) + [False] * (k - k // 2)
        if self.ranked_seeds:
            odds = self.scorer.predict_many(chosen, [None] * n)
            chosen.sort(key=lambda i: (-odds[i], i))
        else:
            self.rng.shuffle(seeds)
        labels: list = [None] * n
        for i, y in zip(chosen, seeds):
            labels[i] = y
        for i, y in self.pinned.items():
            labels[i] = y
        ev, fixes = self.fix(tuple(labels), self._fix_rng(tuple(labels), "seed"), forced=False)
        self._adopt(ev)
        self.state.started = True
        return self._event("seed", fixes=fixes)

    def boot_pass(self) -> Event:
        """One pass of the warm start (--init bootstrap): every example predicted from the other groups' labels and
        decoded consistently (bootstrap.py). The first pass starts from the zero-shot labels (`_zero_shot_start`).
        The same plan also scores the labels leave-one-out (little more: the contexts share their prefixes), so when
        a pass changes nothing U is already known. A pass that changes nothing keeps the labeling or its global flip,
        whichever has the higher U, and is the "seed" event of a warm annealing. When --passes end with labels still
        changing, the passes have not settled on a labeling and the batch falls back to the cold start (`start`: the
        authors' seeds and schedule), also a "seed" event."""
        st = self.state
        if st.passes == 0:
            st.labels = self._zero_shot_start()
        p = one_pass(self.scorer, self.cons, st.labels, loo=True, fixed=self.pinned)
        st.passes += 1
        scored = self._remember(tuple(p.scored), p.loo)
        if p.changed and st.passes < self.config.passes:
            st.labels = p.labels
            # the event tells of the labeling this pass scored (its U is known from the same plan), not of the state,
            # whose U is not known until the passes end
            return replace(self._event("pass", passes=st.passes, changed=p.changed), U=scored.U, P=scored.P,
                           I=scored.I, n_true=sum(y is True for y in p.scored))
        if p.changed:
            st.labels = [None] * len(self.examples)
            return replace(self.start(), passes=st.passes, changed=p.changed)
        # the global flip: every label negated where the constraints allow it; under contradiction, the consistent
        # labeling the negated log-odds decode to (a negated one-True group would have several True)
        flipped = self.cons.decode({i: -s for i, s in p.held_out.items()}, self.pinned)
        found, flip = self._evaluate([tuple(p.labels), tuple(flipped[i] for i in range(len(p.labels)))])
        keep = flip if flip.U > found.U else found
        self._adopt(keep)
        if keep is found:
            self._held = (keep.labels, p.held_out)
        st.started = st.warm = True
        return self._event("seed", passes=st.passes, changed=0, flipped=keep is flip)

    def _zero_shot_start(self) -> list[bool]:
        """The passes' first labeling: the zero-shot labels decoded per group (bootstrap.zero_shot_start)."""
        return zero_shot_start(self.scorer, self.cons, self.pinned)

    def _remember(self, labels: tuple, scores: dict[int, float]) -> _Eval:
        """U of a labeling whose leave-one-out scores were computed elsewhere (a bootstrap pass), into the memo."""
        p = predictability(scores, labels, self.config.objective)
        inc = self.cons.count(labels)
        self._memo[labels] = _Eval(labels, dict(scores), p, inc, utility(p, inc, self.config.alpha))
        return self._memo[labels]

    def _sample(self) -> int:
        labels = self.state.labels
        grouped = {g for g, m in self._members.items() if any(labels[i] is not None for i in m)}
        weights = [0.0 if i in self.pinned else self.config.priority if y is None and ex.group in grouped else 1.0
                   for i, (y, ex) in enumerate(zip(labels, self.examples))]
        return self.rng.choices(range(len(labels)), weights=weights)[0]

    def predict(self, x: int) -> float:
        """Log-odds of x with every other labeled example in context: for a labeled x its leave-one-out score
        (the same context), for an unlabeled one a model call, remembered until the labeling changes. After a warm
        start, the held-out prediction of x's group instead (`_held_out_prediction`)."""
        st = self.state
        if st.warm:
            return self._held_out_prediction(x)
        if st.labels[x] is not None and x in st.scores and self.config.delta == "exact":
            return st.scores[x]
        if x not in self._predictions:
            self._predictions[x] = self.scorer.predict(x, st.labels)
        return self._predictions[x]

    def _held_out_prediction(self, x: int) -> float:
        """+1 or -1: x's label in the consistent decoding of its group's held-out log-odds (every labeled example
        outside the group in context, one pass for all groups, remembered until the labeling changes). After a warm
        start every example is labeled, and in the grouped layout x's leave-one-out context ends with its mate,
        whose label a small model copies (bench_recency): those predictions would propose the mate-copying
        direction for most pairs, each proposal a full U(D). The held-out decoding is the bootstrap passes' own
        rule, so a labeling they settled on proposes nothing, and a changed one proposes where they would move."""
        st = self.state
        key = tuple(st.labels)
        if self._held is None or self._held[0] != key:
            self._held = (key, self.scorer.held_out(st.labels))
        held = self._held[1]
        group = self._members.get(self.examples[x].group, [x]) if self.examples[x].group is not None else [x]
        return 1.0 if self.cons.decode({i: held[i] for i in group}, self.pinned)[x] else -1.0

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
        return self._decide(after, self._metropolis(delta / t), example=x, old=old, new=new, delta=delta, fixes=fixes,
                            cached=cached)

    def _sampled_step(self, x: int, old, new: bool, t: float) -> Event:
        """A proposal scored with an estimated dU (a fresh block every step, never cached), accepted by the penalty
        rule (Ceperley & Dewing 1999): min(1, exp(dU/T - var/(2 T^2))), which keeps the acceptance unbiased for a
        Gaussian estimate of known variance."""
        st, c = self.state, self.config
        labels = tuple(st.labels)
        labeled = sum(y is not None for y in labels)
        block = Block.pick(self.scorer.layout, labeled, c.queries, self._fix_rng(labels, f"block:{st.iteration}"))
        proposal = list(labels)
        proposal[x] = new
        after, fixes = self.fix(tuple(proposal), self._fix_rng(labels, f"{x}:{new}"), forced=c.fix == "code",
                                evaluate=lambda labelings: self._estimate(labelings, block))
        delta = after.U - st.U
        d = delta / t - after.var / (2 * t * t)
        return self._decide(after, self._metropolis(d), example=x, old=old, new=new, delta=delta, fixes=fixes,
                            noise=math.sqrt(after.var))

    def _metropolis(self, score: float) -> bool:
        """Accept a proposal whose (penalised) dU / T is `score`: always when it is positive, else with probability
        exp(score); the coin is drawn only then."""
        return score > 0 or self.rng.random() < math.exp(score)

    def _decide(self, after: _Eval, accept: bool, **event) -> Event:
        """The acceptance's consequences, the same for an exact and an estimated dU: the state, the quiet count."""
        st = self.state
        changed = accept and after.labels != tuple(st.labels)
        st.quiet = 0 if changed else st.quiet + 1
        if accept:
            self._adopt(after)
            st.n_accepted += 1
        return self._event("accept" if accept else "reject", **event)

    def finished(self) -> bool:
        st, c = self.state, self.config
        patience = c.patience_for(len(self.examples), st.warm)
        if st.stopped is None and patience and st.quiet >= patience and st.iteration > 0:
            st.stopped = "patience"
        return (st.stopped is not None or st.iteration >= budget(c, len(self.examples))
                or len(self.pinned) == len(self.examples))  # every label pinned: nothing to propose

    def events(self, should_stop: Callable[[], bool] | None = None) -> Iterator[Event]:
        """The search as a stream of events: seed (when fresh), one per step, done at the end. Stops quietly,
        without a done event, when `should_stop()` is true (the state is then resumable)."""
        if not self.state.started and self.config.init == "seeds":
            yield self.start()
        while not self.state.started:
            if should_stop is not None and should_stop():
                return
            yield self.boot_pass()
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
                "stopped": st.stopped, "spread": st.spread, "estimated": st.estimated, "passes": st.passes,
                "started": st.started, "warm": st.warm, "rng": [version, list(internal), gauss]}

    def restore(self, snap: dict) -> None:
        self.state = SearchState(list(snap["labels"]), {int(k): v for k, v in snap["scores"].items()},
                                 snap["U"], snap["P"], snap["I"], snap["iteration"], snap["n_accepted"],
                                 snap.get("quiet", 0), snap.get("stopped"), snap.get("spread"), snap.get("estimated", False),
                                 snap.get("passes", 0), snap.get("started", True), snap.get("warm", False))
        self._memo.clear()
        self._proposals.clear()
        self._predictions.clear()
        self._held = None
        st = self.state
        if st.started and not st.estimated:  # during the bootstrap passes the state's U is not yet known
            self._memo[tuple(st.labels)] = _Eval(tuple(st.labels), dict(st.scores), st.P, st.I, st.U)
        version, internal, gauss = snap["rng"]
        self.rng.setstate((version, tuple(internal), gauss))
