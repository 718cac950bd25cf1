"""Writes the large benchmark datasets: meals, hotels and gadgets (170 pairs each) and mixed1000 (500 pairs of them).

Every review is composed from phrase lists written for icm_lite (below; no third-party text), by a seeded random
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

DOMAINS = {
    "meals": {
        "things": ["the pasta", "the soup", "the curry", "the steak", "the salad", "the pizza", "the fish", "the ramen",
                   "the burger", "the taco plate", "the dumpling soup", "the risotto", "the pancake stack", "the stew",
                   "the noodle bowl",
                   "the lamb", "the paella", "the omelette", "the sushi", "the dessert"],
        "places": ["this diner", "the corner bistro", "this noodle bar", "the harbour cafe", "this pizzeria",
                   "the taqueria downtown", "this family restaurant", "the new brasserie", "this sushi counter",
                   "the hotel restaurant", "this food truck", "the little trattoria", "this steakhouse",
                   "the vegan cafe", "this seafood shack", "the breakfast place"],
        "good": ["was delicious", "was perfectly cooked", "tasted fresh and full of flavour", "was the best I have had",
                 "was hot, generous and tasty", "was wonderful", "was cooked exactly right", "was simply excellent"],
        "bad": ["was cold and bland", "was burnt", "tasted stale", "was the worst I have had", "was greasy and dry",
                "was inedible", "was undercooked", "was tasteless and soggy"],
        "good_more": ["The staff were friendly and quick.", "We will definitely come back.", "Great value for money.",
                      "The service was warm and attentive.", "I left happy and full.", "Highly recommended.",
                      "Everyone at our table loved it.", "A lovely evening out."],
        "bad_more": ["The staff were rude and slow.", "We will never come back.", "Far too expensive for what it was.",
                     "The service was careless.", "I left hungry and annoyed.", "Avoid it.",
                     "Nobody at our table finished their plate.", "A miserable evening out."],
    },
    "hotels": {
        "things": ["the room", "the bed", "the bathroom", "the breakfast", "the view", "the pool", "the lobby",
                   "the shower", "the check-in", "the housekeeping", "the location", "the balcony", "the gym",
                   "the wifi", "the front desk", "the spa"],
        "places": ["this hotel", "the seaside inn", "this city hotel", "the mountain lodge", "this guesthouse",
                   "the airport hotel", "this boutique hotel", "the lakeside resort", "this hostel",
                   "the old manor hotel", "this motel", "the ski chalet", "this bed and breakfast", "the harbour hotel"],
        "good": ["was spotless", "was comfortable and quiet", "was better than the photos", "was a real treat",
                 "was spacious and bright", "was perfect", "was clean and cosy", "was just wonderful"],
        "bad": ["was filthy", "was noisy and cramped", "was worse than the photos", "was a nightmare",
                "smelled of mould", "was broken", "was dirty and dark", "was just awful"],
        "good_more": ["The staff could not have been kinder.", "I would happily stay again.", "Worth every penny.",
                      "We slept wonderfully.", "A relaxing stay from start to finish.", "I recommend it to anyone.",
                      "Our family had a great time.", "It made our trip."],
        "bad_more": ["The staff did not care at all.", "I would never stay again.", "A waste of money.",
                     "We barely slept.", "A stressful stay from start to finish.", "I warn everyone against it.",
                     "Our family had a terrible time.", "It ruined our trip."],
    },
    "gadgets": {
        "things": ["the battery", "the screen", "the sound", "the charger", "the build", "the setup", "the app",
                   "the power button", "the cable", "the display", "the motor", "the software", "the hinge"],
        "places": ["this phone", "this laptop", "this tablet", "this pair of earbuds", "this smart speaker",
                   "this e-reader", "this fitness tracker", "this coffee machine", "this drone", "this game console",
                   "this camera", "this toaster", "this monitor", "this electric toothbrush", "this blender",
                   "this kettle", "this printer", "this router"],
        "good": ["works perfectly", "is excellent", "is fast and reliable", "exceeded my hopes", "is a joy to use",
                 "works like a charm", "is superb", "is really well made"],
        "bad": ["stopped working", "is terrible", "is slow and unreliable", "broke in a week", "is a pain to use",
                "never worked properly", "is junk", "feels cheap and flimsy"],
        "good_more": ["I am really happy with it.", "Best purchase this year.", "Great value.",
                      "I would buy it again.", "Setup took two minutes.", "I recommend it without hesitation.",
                      "My whole family uses it every day.", "Five stars."],
        "bad_more": ["I am really disappointed.", "Worst purchase this year.", "A total waste of money.",
                     "I am sending it back.", "Setup was a nightmare.", "Do not buy it.",
                     "Nobody in my family wants to use it.", "One star is too many."],
    },
}
TEMPLATES = {
    "meals": "Review: {review}\nQuestion: Did the guest enjoy the meal?\nAnswer:",
    "hotels": "Review: {review}\nQuestion: Did the guest enjoy the stay?\nAnswer:",
    "gadgets": "Review: {review}\nQuestion: Is the buyer happy with the product?\nAnswer:",
    "mixed1000": "Review: {review}\nQuestion: Is this review positive?\nAnswer:",
}


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
