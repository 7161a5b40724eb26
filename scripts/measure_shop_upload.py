"""A shop owner's upload, measured end to end: a dataset exported as a catalogue CSV plus an interactions CSV,
handed to the app's service as the "Your catalogue" tab hands it (read, encoded, scoreboard), a model adapted
within the budget, downloaded as the app's zip, and both scoreboards checked against
``python -m jepa4rec.evaluate --items ... --interactions ... --priors fit`` run as a separate command (the base
checkpoint for the zero-shot rows, the unzipped download for the adapted rows).

  python scripts/measure_shop_upload.py                                  # Scientific_UniSRec and OnlineRetail
  python scripts/measure_shop_upload.py --dataset OnlineRetail --budget-minutes 2 --threads 2
  python scripts/measure_shop_upload.py --users 0                        # score every customer (minutes)

The exported interactions keep each user's sequence order as the dataset holds it (the timestamp column is the
position in the sequence), so the upload's leave-one-out split is the dataset's own. Writes
scripts/results/shop_upload_<dataset>_<N|all>users.json and prints the figures.
"""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from app.service import DEFAULT_SCORED_USERS
from jepa4rec.cli import ArgumentParser, command, command_line
from jepa4rec.paths import RESULTS_DIR

METRICS = ("NDCG@10", "Recall@10", "MRR")


def export_upload(name: str, out_dir: Path, data_root: str | None) -> tuple[Path, Path, dict]:
    """``name`` as the two files a shop would upload: items (id + every attribute, in the order the items
    hold them) and interactions (user, item, timestamp = position in the user's sequence)."""
    from jepa4rec.data import load_dataset

    ds = load_dataset(name, root=data_root)
    out_dir.mkdir(parents=True, exist_ok=True)
    columns: list[str] = []
    for item in ds.items:
        columns += [k for k in item if k not in columns]
    items, inter = out_dir / f"{name}_items.csv", out_dir / f"{name}_interactions.csv"
    with open(items, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["item_id"] + columns)
        for key, item in zip(ds.item_keys, ds.items):
            writer.writerow([key] + [item.get(c, "") for c in columns])
    with open(inter, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["user", "item", "timestamp"])
        for user, seq in zip(ds.user_keys, ds.sequences):
            writer.writerows([user, ds.item_keys[i], t] for t, i in enumerate(seq))
    return items, inter, {"items": ds.n_items, "users": ds.n_users, "interactions": sum(map(len, ds.sequences))}


def evaluate_by_command(checkpoint: Path, items: Path, inter: Path, threads: int | None, users: int | None) -> dict:
    """``python -m jepa4rec.evaluate --priors fit`` in its own process: its four cells."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.jsonl"
        cmd = [sys.executable, "-m", "jepa4rec.evaluate", "--checkpoint", str(checkpoint), "--items", str(items),
               "--interactions", str(inter), "--priors", "fit", "--out", str(out)]
        if threads:
            cmd += ["--threads", str(threads)]
        if users:
            cmd += ["--max-users", str(users)]
        started = time.perf_counter()
        subprocess.run(cmd, check=True)
        result = json.loads(out.read_text().splitlines()[-1])
    return {"cells": result["cells"], "seconds": round(time.perf_counter() - started, 1), "command": " ".join(cmd[1:])}


def board_rows(board: dict) -> dict:
    """{row model: {cell: metrics}} with the priors rows named by their cell (kept_priors, excluded_priors)."""
    rows = {}
    for row in board["rows"]:
        rows[row["model"]] = row["cells"]
    return rows


def max_difference(board_cells: dict, board_priors: dict, command_cells: dict) -> float:
    """The largest |scoreboard - evaluate| over both protocols, raw and with priors, and the three metrics."""
    worst = 0.0
    for protocol in ("kept", "excluded"):
        for metric in METRICS:
            worst = max(worst, abs(board_cells[protocol][metric] - command_cells[protocol][metric]),
                        abs(board_priors[protocol][metric] - command_cells[f"{protocol}_priors"][metric]))
    return worst


def measure(name: str, args, work: Path) -> dict:
    from app.service import AppService, resident_mb

    items, inter, sizes = export_upload(name, work, args.data_root)
    print(f"{name}: exported {sizes['items']:,} items, {sizes['users']:,} users, {sizes['interactions']:,} purchases")
    service = AppService(data_root=args.data_root)
    service._base_recommender()  # the server's shared model, loaded at start-up: not part of an upload's time
    session = f"measure-{name}"
    started = time.perf_counter()
    served = service.add_upload(session, items, inter, label=items.name)
    uploaded_s = time.perf_counter() - started
    board = service.scoreboard(served, args.users)
    to_board_s = time.perf_counter() - started
    print(f"{name}: upload read and encoded in {uploaded_s:.1f} s, scoreboard after {to_board_s:.1f} s")

    epochs = []
    started = time.perf_counter()
    adapted_board = service.adapt(served, args.budget_minutes * 60, session,
                                  progress=lambda f, what: epochs.append(what) if "epoch" in what else None,
                                  users=args.users)
    adapt_s = time.perf_counter() - started
    adapter_card = served.adapted.adapter.card
    print(f"{name}: adapted in {adapt_s:.1f} s ({adapter_card['epochs_run']} epochs, stopped by {adapter_card['stopped']})")
    archive = service.adapted_archive(served)
    unzipped = work / f"{name}_adapted"
    with zipfile.ZipFile(archive) as z:
        z.extractall(unzipped)
    folders = {p.parent for p in unzipped.rglob("config.json")}
    if len(folders) != 1:
        raise SystemExit(f"the download {archive} holds {len(folders)} model folders, expected one")
    adapted_dir = folders.pop()

    base_dir = service.checkpoint_for("default")[0]
    zero_cmd = evaluate_by_command(base_dir, items, inter, args.threads, board["users"])
    adapted_cmd = evaluate_by_command(adapted_dir, items, inter, args.threads, board["users"])
    rows = board_rows(adapted_board)
    zero_diff = max_difference(rows["JEPA4Rec, zero-shot"], rows["JEPA4Rec, zero-shot + score priors"], zero_cmd["cells"])
    adapted_diff = max_difference(rows["adapted"], rows["adapted + score priors"], adapted_cmd["cells"])
    result = {
        "dataset": name, **sizes, "date": time.strftime("%Y-%m-%d"),
        "scoreboard_users": board["users"], "training_log": epochs, "upload_s": round(uploaded_s, 1), "time_to_scoreboard_s": round(to_board_s, 1),
        "budget_minutes": args.budget_minutes, "adapt_s": round(adapt_s, 1), "adapter": adapter_card,
        "scoreboard": rows, "paired_adapted_vs_zero_shot_priors": adapted_board["paired"],
        "evaluate_zero_shot": zero_cmd, "evaluate_adapted_download": adapted_cmd,
        "max_abs_difference_zero_shot": zero_diff, "max_abs_difference_adapted": adapted_diff,
        "rss_mb": round(resident_mb()), "command": command_line("scripts/measure_shop_upload.py", args.argv),
    }
    for protocol, p in adapted_board["paired"].items():
        print(f"{name}: adapted + priors / zero-shot + priors, NDCG@10, history {protocol}: {p['b_value']:.4f} / {p['a_value']:.4f} "
              f"= {p['ratio']:.3f}x [{p['ratio_low']:.3f}, {p['ratio_high']:.3f}] (p {p['p_value']:.4f})")
    print(f"{name}: scoreboard vs evaluate, largest difference: zero-shot {zero_diff:.2e}, adapted download {adapted_diff:.2e}")
    service.drop_session(session)
    return result


@command
def main(argv=None) -> int:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", action="append", default=None,
                   help="dataset to upload (repeatable; default: Scientific_UniSRec and OnlineRetail)")
    p.add_argument("--budget-minutes", type=float, default=2.0, help="adaptation budget, as the app's default (2)")
    p.add_argument("--users", type=int, default=DEFAULT_SCORED_USERS,
                   help=f"customers the scoreboard scores, as the app's 'Customers to score' (default "
                        f"{DEFAULT_SCORED_USERS:,}; 0: all)")
    p.add_argument("--work-dir", default=None, help="where the exported files and the download go (default: temporary)")
    p.add_data_root_argument()
    p.add_threads_argument()
    args = p.parse_args(argv)
    args.argv = argv
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="shop-upload-"))  # made once the first dataset is read
    for name in args.dataset or ["Scientific_UniSRec", "OnlineRetail"]:
        result = measure(name, args, work)
        path = RESULTS_DIR / f"shop_upload_{name}_{'all' if not args.users else args.users}users.json"
        path.write_text(json.dumps(result, indent=2))
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
