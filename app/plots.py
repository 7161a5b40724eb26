"""Plotly figures: the reveal curve, the embedding map and the experiment charts.

Each experiment chart reads a result file under ``scripts/results/`` written by the command named in
:data:`EXPERIMENTS`; a missing file gives a message naming that command instead of a chart.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go


def reveal_curve_figure(curve: pd.DataFrame, title: str = "Target rank against revealed words") -> go.Figure:
    fig = px.line(curve, x="reveal %", y="target rank", markers=True, title=title)
    fig.update_yaxes(autorange="reversed", title="rank of the target (1 = top)")
    fig.update_layout(height=320, margin=dict(l=40, r=20, t=50, b=40))
    return fig


def embedding_figure(coords: np.ndarray, titles: list[str], groups: list[str], history: list[int],
                     target: int | None, top: list[int], title: str) -> go.Figure:
    df = pd.DataFrame({"x": coords[:, 0], "y": coords[:, 1], "title": titles, "group": groups})
    fig = px.scatter(df, x="x", y="y", color="group", hover_name="title", hover_data={"x": False, "y": False},
                     title=title, opacity=0.55)
    fig.update_traces(marker=dict(size=4))
    marks = [("history", history, "circle-open", "black", 11), ("top-10", top, "diamond-open", "crimson", 11)]
    if target is not None:
        marks.append(("target", [target], "star", "gold", 18))
    for name, ids, symbol, colour, size in marks:
        if not ids:
            continue
        ids = list(ids)
        fig.add_trace(go.Scatter(x=coords[ids, 0], y=coords[ids, 1], mode="markers", name=name,
                                 text=[titles[i] for i in ids], hoverinfo="text",
                                 marker=dict(symbol=symbol, size=size, color=colour, line=dict(width=2, color=colour))))
    fig.update_layout(height=620, margin=dict(l=20, r=20, t=50, b=20), legend=dict(itemsizing="constant"))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


@dataclass(frozen=True)
class Experiment:
    stem: str  # scripts/results/<stem>.csv (long format)
    title: str
    command: str
    x: str
    y: str
    color: str
    facet: str | None = None
    row: str | None = None  # a second facet, in rows
    kind: str = "line"  # line | bar
    log_x: bool = False


EXPERIMENTS = (
    Experiment("reveal_curve", "Reveal case study (Fig. 7): Recall@10 against the share of target words revealed",
               "python scripts/reproduce_reveal.py", x="reveal", y="value", color="model", facet="metric", row="dataset"),
    Experiment("masking_ratio", "Next-item masking ratio (Fig. 8)", "python scripts/reproduce_masking.py",
               x="ratio", y="value", color="dataset", facet="metric"),
    Experiment("ablations", "Ablations (Table 3)", "python scripts/reproduce_ablations.py",
               x="variant", y="value", color="dataset", facet="metric", kind="bar"),
    Experiment("low_resource", "Low-resource training (Fig. 5): share of training users kept",
               "python scripts/reproduce_low_resource.py", x="fraction", y="value", color="model", facet="metric",
               row="dataset", log_x=True),
    Experiment("pretrain_data", "Pre-training data (Fig. 3): fine-tuned after pre-training on none, one or all domains",
               "python scripts/reproduce_pretrain_data.py", x="pretraining", y="value", color="dataset", facet="metric",
               kind="bar"),
    Experiment("zeroshot", "Zero-shot transfer (Fig. 4): pre-trained models on unseen target domains",
               "python scripts/reproduce_pretrain_data.py", x="dataset", y="value", color="model", facet="metric",
               kind="bar"),
    Experiment("results_table", "Overall results (Table 2)", "python scripts/results_table.py",
               x="model", y="value", color="metric", facet="dataset", kind="bar"),
)


def read_result(path: Path) -> pd.DataFrame:
    if path.suffix == ".json":
        data = json.loads(path.read_text())
        return pd.DataFrame(data["rows"] if isinstance(data, dict) and "rows" in data else data)
    return pd.read_csv(path)


def experiment_figure(exp: Experiment, df: pd.DataFrame) -> go.Figure:
    agg = df
    error = None
    group_cols = [c for c in (exp.x, exp.color, exp.facet, exp.row) if c]
    if df.duplicated(group_cols).any():  # several seeds: mean and spread
        agg = df.groupby(group_cols, as_index=False)[exp.y].agg(["mean", "std"]).reset_index()
        agg = agg.rename(columns={"mean": exp.y})
        error = "std"
    plot = px.bar if exp.kind == "bar" else px.line
    kwargs = dict(x=exp.x, y=exp.y, color=exp.color, facet_col=exp.facet, facet_row=exp.row, error_y=error,
                  title=exp.title, log_x=exp.log_x)
    if exp.kind == "bar":
        kwargs["barmode"] = "group"
    else:
        kwargs["markers"] = True
    fig = plot(agg, **kwargs)
    if exp.facet:
        fig.update_yaxes(matches=None, showticklabels=True)
    n_rows = agg[exp.row].nunique() if exp.row else 1
    fig.update_layout(height=300 + 220 * n_rows, margin=dict(l=40, r=20, t=60, b=40))
    return fig


def training_curve_figure(log_csv: Path) -> go.Figure | None:
    """Each pre-training loss component against the step, from a run's ``train_log.csv``."""
    if not log_csv.exists():
        return None
    df = pd.read_csv(log_csv)
    cols = [c for c in ("loss_si", "loss_mlm", "loss_map", "item_spread") if c in df.columns]
    long = df.melt(id_vars="step", value_vars=cols, var_name="component", value_name="value")
    fig = px.line(long, x="step", y="value", facet_col="component", title="Pre-training losses of the loaded checkpoint")
    fig.update_yaxes(matches=None, showticklabels=True)
    fig.update_layout(height=300, margin=dict(l=40, r=20, t=60, b=40), showlegend=False)
    return fig


def finetune_curve_figure(results_json: Path) -> go.Figure | None:
    """Validation NDCG@10 / Recall@10 per epoch of a fine-tuning run (its ``results.json``)."""
    if not results_json.exists():
        return None
    history = json.loads(results_json.read_text())["history"]
    rows = [{"epoch": h["epoch"], "metric": m, "value": h["valid"][m]} for h in history for m in ("NDCG@10", "Recall@10")]
    fig = px.line(pd.DataFrame(rows), x="epoch", y="value", color="metric", markers=True,
                  title="Fine-tuning of the loaded checkpoint: validation metrics per epoch")
    fig.update_layout(height=320, margin=dict(l=40, r=20, t=60, b=40))
    return fig
