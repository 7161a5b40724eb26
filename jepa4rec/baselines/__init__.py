"""Baselines that share JEPA4Rec's evaluation: each one is a :class:`jepa4rec.evaluation.Scorer`."""
from .popularity import PopularityScorer
from .sasrec import SASRec, SASRecConfig, load_sasrec, save_sasrec, train_sasrec

__all__ = ["PopularityScorer", "SASRec", "SASRecConfig", "load_sasrec", "save_sasrec", "train_sasrec"]
