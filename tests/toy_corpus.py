"""A toy corpus in SeqRecBench layout whose next items are predictable from text.

Each domain has 6 "themes"; user u buys 5 items of theme u % 6 in random order, and every item title
starts with its theme's words. Shared by the pre-training, fine-tuning and Recommender tests.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

THEMES = ["red guitar", "blue drum", "green piano", "black violin", "white bass", "silver flute"]
FILLER = "string pedal cable tuner capo pick stand case strap light heavy steel nylon acoustic electric classic".split()
TINY_MODEL = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, attention_window=16)


def write_domain(folder: Path, seed: int, n_users: int = 60, n_items: int = 30) -> Path:
    """items.jsonl + interactions.csv; user u buys 5 of the 5 items of theme u % 6 in random order."""
    rng = random.Random(seed)
    folder.mkdir(parents=True)
    theme_of = [i % len(THEMES) for i in range(n_items)]
    with open(folder / "items.jsonl", "w") as fh:
        for i in range(n_items):
            title = f"{THEMES[theme_of[i]]} {' '.join(rng.sample(FILLER, 2))}"
            fh.write(json.dumps({"item_id": 1000 + i, "title": title}) + "\n")
    rows = []
    for u in range(n_users):
        pool = [i for i in range(n_items) if theme_of[i] == u % len(THEMES)]
        rows += [f"{u},{1000 + i},{k * 100 + u}" for k, i in enumerate(rng.sample(pool, 5))]
    (folder / "interactions.csv").write_text("user_id,item_id,timestamp\n" + "\n".join(rows) + "\n")
    return folder
