"""Writes the large benchmark datasets: meals, hotels and gadgets (170 pairs each) and mixed1000 (500 pairs of them).

Every review is composed from phrase lists written for icm_lite (phrases.json; no third-party text), by a seeded random
generator: a pair is two reviews of the same place or product, one positive and one negative, in a shared
`consistency_id`; which slot (`a` or `b`) holds the positive one is drawn at random. Every text is distinct within
and across the three files. `mixed1000.jsonl` takes 500 of their 510 pairs (the last 3-4 pairs of each left out),
shuffled by pair, under one template for all three domains.

    python benchmarks/data/make_large.py      # rewrites the files; the same seed gives the same bytes
"""

from __future__ import annotations

import random
from pathlib import Path

import orjson

HERE = Path(__file__).resolve().parent
PAIRS = 170
SEED = 2026

PHRASES = orjson.loads((HERE / "phrases.json").read_bytes())  # the phrase lists, written for icm_lite
DOMAINS, TEMPLATES = PHRASES["domains"], PHRASES["templates"]


def review(rng: random.Random, d: dict, place: str, good: bool) -> str:
    """One review of `place`: '<Thing> at <place> <verdict>. <More>' (a sentence or two of the one sentiment)."""
    thing = rng.choice(d["things"])
    verdict = rng.choice(d["good" if good else "bad"])
    more = rng.sample(d["good_more" if good else "bad_more"], rng.choice((1, 2)))
    where = "of" if d is DOMAINS["gadgets"] else "in" if place.startswith("this ") else "at"
    opener = f"{thing[0].upper()}{thing[1:]} {where} {place} {verdict}."
    return " ".join([opener, *more])


def pairs(name: str, rng: random.Random, seen: set[str]) -> list[tuple[str, str]]:
    """PAIRS (positive, negative) reviews of the same place, every text new."""
    d = DOMAINS[name]
    out = []
    while len(out) < PAIRS:
        place = rng.choice(d["places"])
        pos, neg = review(rng, d, place, True), review(rng, d, place, False)
        if pos in seen or neg in seen:
            continue
        seen.update((pos, neg))
        out.append((pos, neg))
    return out


def records(prefix: str, items: list[tuple[str, str]], rng: random.Random) -> list[dict]:
    rows = []
    for k, (pos, neg) in enumerate(items, start=1):
        a_true = rng.random() < 0.5
        first, second = (pos, neg) if a_true else (neg, pos)
        rows.append({"id": f"{prefix}{k:03d}a", "review": first, "slot": "a", "label": a_true, "consistency_id": k})
        rows.append({"id": f"{prefix}{k:03d}b", "review": second, "slot": "b", "label": not a_true, "consistency_id": k})
    return rows


def task(name: str) -> dict:
    return {"name": name, "template": TEMPLATES[name], "relation": "asymmetry", "key": "field:slot",
            "group_field": "consistency_id", "label_words": ["Yes", "No"]}


def write(name: str, rows: list[dict]) -> None:
    (HERE / f"{name}.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    (HERE / f"{name}.task.json").write_bytes(orjson.dumps(task(name), option=orjson.OPT_INDENT_2) + b"\n")


def main() -> None:
    rng = random.Random(SEED)
    seen: set[str] = set()
    made = {name: pairs(name, rng, seen) for name in ("meals", "hotels", "gadgets")}
    for name, items in made.items():
        write(name, records(name[:4], items, rng))
    keep = {"meals": PAIRS - 3, "hotels": PAIRS - 3, "gadgets": PAIRS - 4}  # 167 + 167 + 166 = 500 pairs
    mixed = [pair for name, items in made.items() for pair in items[: keep[name]]]
    rng.shuffle(mixed)
    write("mixed1000", records("mix", mixed, rng))


if __name__ == "__main__":
    main()
