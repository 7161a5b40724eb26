"""Adapting a pre-trained model to a shop's own purchases within a time budget, and keeping the result.

A shop that brings its catalogue and purchase log gets, beside the zero-shot ranking, an **adapted** model:
a small sequence transformer (SASRec's blocks, no item IDs) trained on the shop's training split over the
pre-trained JEPA4Rec model's own item vectors, which stay frozen (:class:`SequenceAdapter`). Its scores add
a learned multiple of each item's cosine to the history's recent items (the text skip of
:class:`~jepa4rec.baselines.sasrec.SASRec`), so it starts where a text-similarity ranking is and learns what
the shop's histories say about the next purchase (order, what goes with what) on top of it; it takes seconds
to minutes on a CPU, where fine-tuning the whole encoder takes hours. Without the skip, two minutes of
training fell short of the zero-shot model with score priors on Scientific (docs/app.md, 2026-12-06).

:func:`adapt` trains one within ``budget_s`` seconds (early stopping on the validation split, the best epoch
kept, a cancel callable honoured after each epoch). :func:`save_adapted` writes a model directory in the one
checkpoint format (the base model's files, plus ``adapter/model.safetensors`` and ``adapter/adapter.json``);
:meth:`jepa4rec.recommender.Recommender.from_pretrained` loads it, and ranks by the adapter wherever it is
used (``python -m jepa4rec.evaluate``, ``python -m jepa4rec.recommend``). The adapter is over item vectors,
not item IDs, so it also runs on another catalogue; it was trained for the one it names in its card.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file, save_file

from .baselines.sasrec import SASRec, SASRecConfig, train_sasrec
from .checkpoint import CheckpointError, save_model_dir
from .errors import UserError

ADAPTER_DIR = "adapter"
ADAPTER_CONFIG = "adapter.json"
# The adapter's shapes: SASRec's two blocks over the item vectors projected to 128 dimensions, as the results
# table's "transformer over frozen item vectors" rows, with and without the text skip. Each trains RACE_EPOCHS
# epochs on the shop's data and the better one goes on: measured on Scientific and Online Retail
# (docs/app.md, 2026-12-06), neither shape is the better one on both.
_BASE_ADAPTER = SASRecConfig(hidden_size=128, epochs=200, patience=5, device="cpu")
CANDIDATES = (dataclasses.replace(_BASE_ADAPTER, text_skip=True), _BASE_ADAPTER)
RACE_EPOCHS = 3


class AdaptationCancelled(UserError):
    """The visitor cancelled before a first epoch finished: there is nothing to keep."""


@dataclass
class SequenceAdapter:
    """The adapter: a trained SASRec head over the base model's item vectors, and its card."""

    config: SASRecConfig
    state: dict  # the head's weights (feature projection, positions, blocks); the item vectors are not in it
    card: dict

    def for_vectors(self, item_vectors: torch.Tensor) -> SASRec:
        """The head over a catalogue's item vectors ([n_items, d], the base model's, unit length)."""
        model = SASRec(item_vectors.shape[0], self.config, item_features=item_vectors.detach().float().cpu())
        missing, unexpected = model.load_state_dict(self.state, strict=False)
        if unexpected or [k for k in missing if k != "item_features"]:
            raise CheckpointError(f"adapter does not fit its configuration (missing {missing}, unexpected {unexpected})")
        return model.eval()


def adapt(rec, budget_s: float = 120.0, config: SASRecConfig | None = None,
          on_epoch: Callable[[dict], None] | None = None, cancelled: Callable[[], bool] | None = None) -> SequenceAdapter:
    """Train a :class:`SequenceAdapter` on ``rec``'s catalogue (its dataset's training split, early stopping on
    the validation split) within ``budget_s`` seconds of training: training stops after the epoch that
    crosses the budget, or the first that ``cancelled()`` is true after, and keeps the best epoch so far.

    Without ``config``, the shape is chosen on the shop's own validation split: each of :data:`CANDIDATES`
    trains :data:`RACE_EPOCHS` epochs, and the better one (validation NDCG@10) goes on for the rest of the
    budget from where it stands. With the text skip the adapter starts from text similarity, which is what
    wins where items are bought for what they are (Scientific); without it the sequence model learns faster,
    which wins where what goes with what is not in the words (Online Retail)."""
    dataset = rec.dataset
    if not dataset.sequences:
        raise UserError(f"{dataset.name} has no purchases to adapt to", hint="upload an interactions file with it")
    vectors = rec.unit_item_vectors.detach().float().cpu()
    started = time.perf_counter()
    why = {"stopped": "validation stopped improving"}
    curve: list[dict] = []  # every epoch of every training, numbered in order
    last: dict = {}  # the latest training's log and config

    def out_of_time() -> bool:
        if cancelled is not None and cancelled():
            why["stopped"] = "cancelled"
            return True
        if time.perf_counter() - started > budget_s:
            why["stopped"] = f"the {budget_s:.0f} s budget"
            return True
        return False

    def train(cfg: SASRecConfig, shape: str, epochs: int | None = None, init_state: dict | None = None):
        done = {"n": 0}

        def heard(row: dict) -> None:
            done["n"] += 1
            row = {**row, "epoch": len(curve) + 1, "shape": shape}
            curve.append(row)
            if on_epoch is not None:
                on_epoch(row)

        stop = out_of_time if epochs is None else (lambda: out_of_time() or done["n"] >= epochs)
        model, log = train_sasrec(dataset, cfg, progress=False, item_features=vectors, stop_early=stop,
                                  on_epoch=heard, init_state=init_state)
        last.update(log=log, cfg=cfg)
        best = None if log["best_epoch"] is None else log["best_valid"][cfg.select_metric]
        return model, log, best

    if config is not None:
        race, (cfg, shape) = [], (config, _shape(config))
        model, log, best = train(cfg, shape)
    else:
        race = []
        for cfg in CANDIDATES:
            if race and out_of_time():
                break
            model, log, best = train(cfg, _shape(cfg), epochs=RACE_EPOCHS)
            race.append({"shape": _shape(cfg), "config": cfg, "model": model, "log": log, "best": best})
        scored = [r for r in race if r["best"] is not None]
        if not scored:
            raise AdaptationCancelled("adaptation was cancelled before its first epoch ended; nothing was trained")
        winner = max(scored, key=lambda r: r["best"])
        cfg, shape, model, log, best = winner["config"], winner["shape"], winner["model"], winner["log"], winner["best"]
        if not out_of_time() and len(log["epochs"]) == RACE_EPOCHS:  # the race stopped it, not early stopping
            more, more_log, more_best = train(cfg, shape, init_state=model.state_dict())
            if more_best is not None and more_best > best:
                model, log, best = more, more_log, more_best
    if best is None:
        raise AdaptationCancelled("adaptation was cancelled before its first epoch ended; nothing was trained")
    if why["stopped"] == "validation stopped improving" and len(last["log"]["epochs"]) == last["cfg"].epochs:
        why["stopped"] = f"its {last['cfg'].epochs} epochs"
    best_row = max((r for r in curve if r["shape"] == shape and "valid" in r), key=lambda r: r["valid"][cfg.select_metric])
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if k != "item_features"}
    card = {"kind": "sequence_adapter", "shape": shape, "dataset": dataset.name, "n_items": dataset.n_items,
            "users": dataset.n_users, "best_epoch": best_row["epoch"], "epochs_run": len(curve),
            "best_valid": best_row["valid"], "train_seconds": round(time.perf_counter() - started, 1),
            "budget_s": budget_s, "stopped": why["stopped"], "base_model_digest": rec.model_digest,
            "catalogue_digest": rec.catalogue_digest,
            "race": [{"shape": r["shape"], "epochs": len(r["log"]["epochs"]), "best_valid_NDCG@10": r["best"]}
                     for r in race],
            "valid_curve": [{"epoch": r["epoch"], "shape": r["shape"], "NDCG@10": r["valid"]["NDCG@10"]}
                            for r in curve if "valid" in r]}
    return SequenceAdapter(cfg, state, card)


def _shape(cfg: SASRecConfig) -> str:
    return "text skip + sequence" if cfg.text_skip else "sequence"


def save_adapted(rec, adapter: SequenceAdapter, folder: str | Path) -> Path:
    """A model directory of ``rec``'s model with ``adapter``: the one checkpoint format (safetensors + JSON),
    every file under 10 MB; what Recommender.from_pretrained and the commands load."""
    folder = Path(folder)
    card = {**rec.card, "adapter": adapter.card}
    save_model_dir(folder, rec.model, rec.tok, card)
    sub = folder / ADAPTER_DIR
    sub.mkdir(exist_ok=True)
    save_file({k: v.contiguous() for k, v in adapter.state.items()}, str(sub / "model.safetensors"))
    (sub / ADAPTER_CONFIG).write_text(json.dumps({"config": asdict(adapter.config), "card": adapter.card}, indent=2))
    return folder


def load_adapter(folder: str | Path) -> SequenceAdapter | None:
    """The adapter a model directory holds (None when it holds none); safetensors + JSON only."""
    sub = Path(folder) / ADAPTER_DIR
    if not (sub / ADAPTER_CONFIG).is_file():
        return None
    try:
        meta = json.loads((sub / ADAPTER_CONFIG).read_text(encoding="utf-8"))
        names = {f.name for f in fields(SASRecConfig)}
        config = SASRecConfig(**{k: v for k, v in meta["config"].items() if k in names})
        state = load_file(str(sub / "model.safetensors"))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{sub}: not a readable adapter ({err})") from None
    return SequenceAdapter(config, state, meta.get("card", {}))
