"""The one checkpoint format: safetensors for tensors, JSON for everything else; nothing pickled.

A *model directory* (what ``from_pretrained`` reads, what the app loads) holds ``config.json``,
``model.safetensors``, the tokenizer files, ``text_config.json`` and ``training_card.json``.
A *training checkpoint* is a model directory plus the state needed for an exact resume:
``target_encoder.safetensors``, ``optimizer.safetensors`` + ``optimizer.json``, ``scheduler.json``,
``rng.safetensors`` and ``trainer_state.json`` (step, epoch, batch position, Python/NumPy RNG).
"""
from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

MODEL_FILES = ("config.json", "model.safetensors")


def is_model_dir(path: str | Path) -> bool:
    p = Path(path)
    return all((p / f).exists() for f in MODEL_FILES)


def save_model_dir(path: str | Path, model, item_tokenizer, card: dict | None = None) -> Path:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(path), safe_serialization=True)
    item_tokenizer.save_pretrained(path)
    if card is not None:
        (path / "training_card.json").write_text(json.dumps(card, indent=2, default=str))
    return path


def load_model_dir(path: str | Path, device: str | torch.device = "cpu", **config_overrides):
    """(model, item_tokenizer, card) from a model directory; ``config_overrides`` (e.g. dropout) are
    applied to its config before the model is built."""
    from .modeling import JEPA4RecModel
    from .text import ItemTokenizer

    path = Path(path)
    if not is_model_dir(path):
        raise FileNotFoundError(f"{path} is not a JEPA4Rec model directory (needs {', '.join(MODEL_FILES)})")
    model = JEPA4RecModel.from_pretrained(str(path), use_safetensors=True, **config_overrides).to(device)
    model.eval()
    card_path = path / "training_card.json"
    card = json.loads(card_path.read_text()) if card_path.exists() else {}
    return model, ItemTokenizer.from_pretrained(path), card


def _optimizer_to_flat(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, state in sd["state"].items():
        for name, value in state.items():
            if torch.is_tensor(value):
                tensors[f"{pid}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{name}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _optimizer_from_flat(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    for key, value in meta.get("scalars", {}).items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = s
    py = random.getstate()
    np_state = np.random.get_state()
    meta = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }
    return tensors, meta


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    if torch.cuda.is_available():
        states = [tensors[k] for k in sorted(tensors) if k.startswith("torch_cuda_")]
        if states:
            torch.cuda.set_rng_state_all(states)
    py = meta["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = meta["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), n[2], n[3], n[4]))


def save_training_checkpoint(path, *, model, item_tokenizer, optimizer, scheduler, target_encoder=None,
                             trainer_state: dict, card: dict | None = None) -> Path:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    save_model_dir(tmp, model, item_tokenizer, card)
    if target_encoder is not None:
        save_file({k: v.detach().cpu().contiguous() for k, v in target_encoder.state_dict().items()},
                  str(tmp / "target_encoder.safetensors"))
    opt_tensors, opt_meta = _optimizer_to_flat(optimizer)
    save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
    (tmp / "optimizer.json").write_text(json.dumps(opt_meta))
    (tmp / "scheduler.json").write_text(json.dumps(scheduler.state_dict(), default=lambda o: None))
    rng_tensors, rng_meta = rng_state()
    save_file(rng_tensors, str(tmp / "rng.safetensors"))
    (tmp / "trainer_state.json").write_text(json.dumps({**trainer_state, "rng": rng_meta}, indent=1, default=str))
    # Write-then-rename: an interrupted save never leaves a half checkpoint under the final name.
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)
    return path


def load_training_checkpoint(path, *, model, optimizer, scheduler, target_encoder=None, device="cpu") -> dict:
    """Restore model, optimizer, scheduler, target encoder and RNG in place; returns the trainer state."""
    path = Path(path)
    weights = load_file(str(path / "model.safetensors"), device=str(device))
    missing, unexpected = model.load_state_dict(weights, strict=False)
    # The MLM decoder is tied to the word embeddings and saved once.
    missing = [k for k in missing if k != "mlm_head.decoder.weight"]
    if missing or unexpected:
        raise RuntimeError(f"{path}: checkpoint does not match the model (missing {missing}, unexpected {unexpected})")
    if target_encoder is not None:
        target_encoder.load_state_dict(load_file(str(path / "target_encoder.safetensors"), device=str(device)))
    opt_meta = json.loads((path / "optimizer.json").read_text())
    optimizer.load_state_dict(_optimizer_from_flat(load_file(str(path / "optimizer.safetensors"), device=str(device)), opt_meta))
    sched = json.loads((path / "scheduler.json").read_text())
    sched.pop("lr_lambdas", None)
    scheduler.load_state_dict({**scheduler.state_dict(), **sched})
    state = json.loads((path / "trainer_state.json").read_text())
    set_rng_state(load_file(str(path / "rng.safetensors")), state.pop("rng"))
    return state


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    ckpts = sorted(Path(output_dir).glob("checkpoint-*[0-9]"), key=lambda p: int(p.name.split("-")[-1]))
    return ckpts[-1] if ckpts else None
