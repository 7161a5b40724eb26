"""Initialise token embeddings from WordLlama's static word vectors (``token_init: wordllama``).

WordLlama (MIT, PyPI ``wordllama``) ships one small embedding table inside its wheel:
``wordllama/weights/l2_supercat_256.safetensors``, 32,000 Llama-2 tokens × 256 dimensions trained
Matryoshka-style, so the first k dimensions are themselves a usable k-dimensional embedding. Our
vocabulary is trained on item sentences and differs from Llama-2's, so each of our tokens is
spelled out, re-tokenised with WordLlama's tokenizer, and given the mean of those pieces' vectors.
Tokens with no usable piece (special tokens, [UNK]) keep their random initialisation.

Sources: ``wordllama`` (the installed package), or a path to its wheel file or unpacked package
directory (``pip download wordllama --no-deps`` gives the wheel without installing anything).
"""
from __future__ import annotations

import importlib.util
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

WEIGHTS = "wordllama/weights/l2_supercat_256.safetensors"
TOKENIZER = "wordllama/tokenizers/l2_supercat_tokenizer_config.json"
TENSOR_KEY = "embedding.weight"


@dataclass
class WordInitReport:
    source: str
    covered: int  # our tokens that got a WordLlama vector
    vocab_size: int
    dims_copied: int  # leading WordLlama dimensions used (Matryoshka truncation)

    def __str__(self) -> str:
        return (f"token_init from {self.source}: {self.covered:,} of {self.vocab_size:,} tokens "
                f"({self.covered / max(1, self.vocab_size):.0%}), first {self.dims_copied} WordLlama dimensions")


def _read_files(source: str) -> tuple[bytes, str]:
    """(safetensors bytes, tokenizer JSON text) from the installed package, a wheel, or a directory."""
    if source == "wordllama":
        spec = importlib.util.find_spec("wordllama")
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError("token_init=wordllama needs the wordllama package (pip install wordllama), "
                                    "or give the path to its wheel or unpacked package directory")
        root = Path(list(spec.submodule_search_locations)[0]).parent
        return _read_dir(root, source)
    path = Path(source)
    if path.is_file() and path.suffix == ".whl":
        with zipfile.ZipFile(path) as whl:
            names = set(whl.namelist())
            missing = [n for n in (WEIGHTS, TOKENIZER) if n not in names]
            if missing:
                raise FileNotFoundError(f"{path}: the wheel lacks {missing}; is it a wordllama>=0.4 wheel?")
            return whl.read(WEIGHTS), whl.read(TOKENIZER).decode()
    if path.is_dir():
        # Either the site-packages folder above wordllama/ or wordllama/ itself.
        return _read_dir(path if (path / WEIGHTS).exists() else path.parent, source)
    raise FileNotFoundError(f"token_init={source}: not 'wordllama', a wordllama wheel, or a directory holding {WEIGHTS}")


def _read_dir(root: Path, source: str) -> tuple[bytes, str]:
    for rel in (WEIGHTS, TOKENIZER):
        if not (root / rel).exists():
            raise FileNotFoundError(f"token_init={source}: {root / rel} not found")
    return (root / WEIGHTS).read_bytes(), (root / TOKENIZER).read_text()


def _spelling(token: str) -> tuple[str, bool]:
    """(surface text, starts a word) of one of our vocabulary's tokens (WordPiece or byte-level BPE)."""
    if token.startswith("##"):
        return token[2:], False
    if token[:1] in ("Ġ", "▁"):
        return token[1:], True
    return token, True


def wordllama_embeddings(tokenizer, hidden_size: int, source: str = "wordllama", std: float = 0.02,
                         generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, WordInitReport]:
    """A [len(tokenizer), hidden_size] matrix of WordLlama-derived vectors, a bool mask of the rows that
    got one, and a report. Vectors are rescaled to element std ``std`` so that the token embedding keeps
    the size of the other summed embeddings (initialised N(0, std)); dimensions beyond WordLlama's 256
    are filled N(0, std)."""
    from safetensors.torch import load as load_safetensors
    from tokenizers import Tokenizer

    weights_bytes, tok_json = _read_files(source)
    table = load_safetensors(weights_bytes)[TENSOR_KEY].float()
    wl_tok = Tokenizer.from_str(tok_json)
    wl_vocab = wl_tok.get_vocab()
    dims = min(hidden_size, table.shape[1])
    table = table[:, :dims]
    # The lone word-boundary piece carries no meaning of its own.
    skip = {wl_vocab.get("▁")}

    special = set(getattr(tokenizer, "all_special_tokens", []))
    vocab = tokenizer.get_vocab()
    out = torch.randn(len(tokenizer), hidden_size, generator=generator) * std
    covered = torch.zeros(len(tokenizer), dtype=torch.bool)
    rows: dict[int, torch.Tensor] = {}
    for token, idx in vocab.items():
        if token in special or idx >= len(tokenizer):
            continue
        text, word_start = _spelling(token)
        if not text:
            continue
        if not word_start and text in wl_vocab:
            ids = [wl_vocab[text]]  # a word-internal piece Llama-2 also has
        else:
            ids = [i for i in wl_tok.encode(text, add_special_tokens=False).ids if i not in skip]
        if ids:
            rows[idx] = table[ids].mean(0)
    if rows:
        idx = torch.tensor(sorted(rows))
        mat = torch.stack([rows[i] for i in idx.tolist()])
        mat = (mat - mat.mean(0)) / mat.std().clamp_min(1e-8) * std
        out[idx, :dims] = mat
        covered[idx] = True
    report = WordInitReport(source=source, covered=int(covered.sum()), vocab_size=len(tokenizer), dims_copied=dims)
    return out, covered, report


def init_token_embeddings(model, tokenizer, source: str, seed: int = 0) -> WordInitReport:
    """Overwrite ``model``'s word-embedding rows covered by WordLlama (the padding row stays zero)."""
    emb = model.get_input_embeddings()
    generator = torch.Generator().manual_seed(seed)
    vectors, covered, report = wordllama_embeddings(tokenizer, emb.weight.shape[1], source,
                                                    std=model.config.initializer_range, generator=generator)
    with torch.no_grad():
        emb.weight[covered] = vectors[covered].to(emb.weight.dtype)
        if emb.padding_idx is not None:
            emb.weight[emb.padding_idx].zero_()
    return report
