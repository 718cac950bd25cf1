"""ICM's simulated-annealing search (Wen et al. 2025, Algorithms 1 and 2). Pure: no I/O, no model.

The search holds a labeling D (None = unlabeled) and maximises U(D) = alpha * P(D) - I(D), with P from
`scoring.predictability` and I from `consistency`. Each `step()`:
  1. samples an example (weight 100 when unlabeled and its group already has a labeled member, else 1);
  2. predicts its label with every other labeled example in context; if that equals the current label,
     nothing changes ("skip");
  3. otherwise D^ = D with the new label; ConsistencyFix(D^) (Algorithm 2: pick an inconsistent pair,
     try its consistent label options, keep the best unless it lowers U, up to `fix_rounds` times);
  4. accepts D^ if dU > 0, else with probability exp(dU / T).
U(D) and U(D^) always come from one plan in which the changed examples sit last in every context, so
dU compares the same demonstration order. Every step returns an `Event`; callers render or log them.
The search never sees gold labels: it is given examples and a scorer, nothing else.

Example: Search(examples, Scorer(backend, examples), "none", SearchConfig(iterations=200)).run()
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

from .consistency import Consistency
from .scoring import OBJECTIVES, Scorer, predictability
from .tasks import Example

SCHEDULES = ("log", "exp")


@dataclass(frozen=True)
class SearchConfig:
    alpha: float = 30.0
    t0: float = 10.0
    t_min: float = 0.01
    schedule: str = "log"
    iterations: int = 3000
    init_k: int = 8
    fix_rounds: int = 10
    objective: str = "code"
    seed: int = 0
    priority: float = 100.0

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}")


def temperature(schedule: str, t0: float, t_min: float, n_accepted: int) -> float:
    """log: max(Tmin, T0 / (1 + 2 ln(1 + n))); exp: max(Tmin, T0 * 0.99**n); n = accepted proposals."""
    if schedule == "log":
        t = t0 / (1.0 + 2.0 * math.log(1.0 + n_accepted))
    elif schedule == "exp":
        t = t0 * 0.99 ** n_accepted
    else:
        raise ValueError(f"schedule must be one of {SCHEDULES}")
    return max(t_min, t)


@dataclass
class Event:
    """What one step did. kind: seed | skip | accept | reject | done."""

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

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Eval:
    labels: list
    scores: dict[int, float]
    P: float
    I: int
    U: float


@dataclass
class SearchState:
    labels: list
    scores: dict[int, float] = field(default_factory=dict)
    U: float = 0.0
    P: float = 0.0
    I: int = 0
    iteration: int = 0
    n_accepted: int = 0


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

    # --- scoring -------------------------------------------------------------------------------
    def _evaluate(self, changed: list[int], candidates: list[list]) -> list[_Eval]:
        """U of labelings that agree outside `changed`, in one plan (same demonstration order)."""
        per = self.scorer.compare(candidates[0], changed, [{c: lab[c] for c in changed} for lab in candidates])
        out = []
        for lab, scores in zip(candidates, per):
            p = predictability(scores, lab, self.config.objective)
            inc = self.cons.count(lab)
            out.append(_Eval(lab, scores, p, inc, self.config.alpha * p - inc))
        return out

    def _consistency_fix(self, old: list | None, new: list, changed: list[int]) -> tuple[_Eval | None, _Eval, int]:
        """Algorithm 2 on `new`; returns (U of old, U of the fixed labeling, fixes applied), one order.

        A pair whose best option would lower U is not tried again until a fix changes the labeling:
        with the same labels it would score the same, and each try costs a pass over the model.
        """
        fixes, result = 0, None
        tried: set[tuple[int, int]] = set()
        for _ in range(self.config.fix_rounds):
            bad = [p for p in self.cons.inconsistent(new) if p not in tried]
            if not bad:
                break
            i, j = bad[self.rng.randrange(len(bad))]
            trial = changed + [k for k in (i, j) if k not in changed]
            options = []
            for yi, yj in self.cons.options(i, j):
                lab = list(new)
                lab[i], lab[j] = yi, yj
                options.append(lab)
            head = ([old] if old is not None else []) + [new]
            evals = self._evaluate(trial, head + options)
            cur, opts = evals[len(head) - 1], evals[len(head):]
            best = max(opts, key=lambda e: e.U)
            if best.U >= cur.U:
                new, changed, fixes = best.labels, trial, fixes + 1
                cur = best
                tried.clear()
            else:
                tried.add((i, j))
            result = (evals[0] if old is not None else None, cur)
        if result is None:
            evals = self._evaluate(changed, ([old] if old is not None else []) + [new])
            result = (evals[0] if old is not None else None, evals[-1])
        return result[0], result[1], fixes

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
        st.labels, st.scores, st.P, st.I, st.U = list(ev.labels), dict(ev.scores), ev.P, ev.I, ev.U

    def start(self) -> Event:
        """Label K random examples, half True and half False, then run ConsistencyFix."""
        n = len(self.examples)
        k = min(self.config.init_k, n)
        chosen = self.rng.sample(range(n), k)
        seeds = [True] * (k // 2) + [False] * (k - k // 2)
        if self.ranked_seeds:
            empty = [None] * n
            odds = {i: self.scorer.predict(i, empty) for i in chosen}
            chosen.sort(key=lambda i: (-odds[i], i))
        else:
            self.rng.shuffle(seeds)
        labels: list = [None] * n
        for i, y in zip(chosen, seeds):
            labels[i] = y
        _, ev, fixes = self._consistency_fix(None, labels, [])
        self._adopt(ev)
        return self._event("seed", fixes=fixes)

    def _sample(self) -> int:
        labels = self.state.labels
        grouped = {g for g, m in self._members.items() if any(labels[i] is not None for i in m)}
        weights = [self.config.priority if y is None and ex.group in grouped else 1.0
                   for y, ex in zip(labels, self.examples)]
        return self.rng.choices(range(len(labels)), weights=weights)[0]

    def step(self) -> Event:
        st = self.state
        st.iteration += 1
        t = self.temperature()
        x = self._sample()
        new = self.scorer.predict(x, st.labels) > 0
        old = st.labels[x]
        if old == new:
            return self._event("skip", example=x, old=old, new=new)
        proposal = list(st.labels)
        proposal[x] = new
        before, after, fixes = self._consistency_fix(st.labels, proposal, [x])
        delta = after.U - before.U
        accept = delta > 0 or self.rng.random() < math.exp(delta / t)
        if accept:
            self._adopt(after)
            st.n_accepted += 1
        else:
            self._adopt(before)  # same labels, scores re-read under this step's order
        return self._event("accept" if accept else "reject", example=x, old=old, new=new, delta=delta, fixes=fixes)

    def run(self, on_event: Callable[[Event], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> SearchState:
        emit = on_event or (lambda e: None)
        if self.state.iteration == 0 and all(y is None for y in self.state.labels):
            emit(self.start())
        while self.state.iteration < self.config.iterations:
            if should_stop is not None and should_stop():
                break
            emit(self.step())
        emit(self._event("done"))
        return self.state

    # --- resume ----------------------------------------------------------------------------------
    def snapshot(self) -> dict:
        st = self.state
        version, internal, gauss = self.rng.getstate()
        return {"labels": st.labels, "scores": {str(k): v for k, v in st.scores.items()}, "U": st.U, "P": st.P,
                "I": st.I, "iteration": st.iteration, "n_accepted": st.n_accepted,
                "rng": [version, list(internal), gauss]}

    def restore(self, snap: dict) -> None:
        self.state = SearchState(list(snap["labels"]), {int(k): v for k, v in snap["scores"].items()},
                                 snap["U"], snap["P"], snap["I"], snap["iteration"], snap["n_accepted"])
        version, internal, gauss = snap["rng"]
        self.rng.setstate((version, tuple(internal), gauss))
