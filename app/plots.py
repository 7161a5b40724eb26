"""Plotly figures: the reveal curve, the embedding map and the experiment charts.

Each experiment chart reads a result file under ``scripts/results/`` written by the command named in
:data:`jepa4rec.experiments.EXPERIMENTS`; a missing file gives a message naming that command instead of
a chart.
"""
from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from jepa4rec.experiments import Experiment


TITLE_LINE = 38  # characters: a chart title this long fits a phone's 390 px width
TITLE_TOP = 30  # px between the figure's top and a title anchored there: clear of the app's "Plot" label


def wrapped(title: str) -> str:
    """A chart title broken into lines at word boundaries (plotly never wraps one: on a phone it is cut)."""
    return "<br>".join(textwrap.wrap(title, TITLE_LINE)) or title


def reveal_curve_figure(curve: pd.DataFrame, history_rank: int | None = None,
                        title: str = "Target rank against the share of its words revealed") -> go.Figure:
    fig = px.line(curve, x="reveal %", y="target rank", markers=True, title=wrapped(title))
    worst = max([int(curve["target rank"].max())] + ([history_rank] if history_rank else []))
    if history_rank is not None:
        fig.add_hline(y=history_rank, line_dash="dot", line_color="grey",
                      annotation_text=f"history alone: {history_rank:,}", annotation_position="top left")
    # Log scale, best rank on top; plotly takes a log axis' range in log10 units, and would not reverse it itself.
    # Ticks at 1, 2, 5, 10, 20, 50, ...: plotly's own log ticks label 20 and 50 as "2" and "5". A rank that
    # stays 1 still gets a short axis from 1 to 2 instead of 0.8-1.4, where no rank can be.
    top = max(worst * 1.5, 2.0)
    ticks = [m * 10 ** e for e in range(int(math.log10(top)) + 1) for m in (1, 2, 5) if m * 10 ** e <= top]
    fig.update_yaxes(type="log", range=[math.log10(top), math.log10(0.8)], tickvals=ticks,
                     ticktext=[f"{t:,}" for t in ticks], title="rank of the target (1 = top, log scale)")
    fig.update_xaxes(title="share of the target's words revealed (%)")
    fig.update_layout(height=340, margin=dict(l=40, r=20, t=70, b=40))
    return fig


# D3's (tab10's) hues first, then Plotly's Alphabet, keeping a colour only when it is at least 25 CIE76 ΔE from
# every colour kept before it and 15 from the map's marks (crimson top 10, gold target, black history, grey
# "other"); that drops the greys, D3's red and Alphabet's near-repeats. Alphabet alone led with two purples
# (ml-100k's Drama and Crime looked alike). 24 colours: every MovieLens genre, or the 20 largest groups.
PALETTE = ["#1F77B4", "#FF7F0E", "#2CA02C", "#9467BD", "#8C564B", "#E377C2", "#BCBD22", "#17BECF",
           "#AA0DFE", "#3283FE", "#85660D", "#782AB6", "#1C8356", "#16FF32", "#F7E1A0", "#C4451C",
           "#FE00FA", "#FEAF16", "#F8A19F", "#F6222E", "#1CFFCE", "#B10DA1", "#B00068", "#FA0087"]


def embedding_figure(coords: np.ndarray, titles: list[str], groups: list[str], history: list[int],
                     target: int | None, top: list[int], title: str,
                     new_item: tuple[float, float, str] | None = None) -> go.Figure:
    """The map; ``new_item`` (x, y, title) marks a typed item, placed among its nearest catalogue items."""
    df = pd.DataFrame({"x": coords[:, 0], "y": coords[:, 1], "title": titles, "group": groups})
    order = [g for g, _ in df["group"].value_counts().items() if g != "other"] + (["other"] if "other" in set(groups) else [])
    colours = {g: PALETTE[i % len(PALETTE)] for i, g in enumerate(o for o in order if o != "other")}
    colours["other"] = "#c8c8c8"
    fig = px.scatter(df, x="x", y="y", color="group", hover_name="title", hover_data={"x": False, "y": False, "group": True},
                     title=title, opacity=0.6, category_orders={"group": order}, color_discrete_map=colours,
                     render_mode="webgl" if len(df) > 5000 else "auto")
    fig.update_traces(marker=dict(size=4))
    marks = [("history", history, "circle-open", "black", 11), ("top 10", top, "diamond-open", "crimson", 11)]
    if target is not None:
        marks.append(("target", [target], "star", "gold", 18))
    for name, ids, symbol, colour, size in marks:
        if not ids:
            continue
        ids = list(ids)
        fig.add_trace(go.Scatter(x=coords[ids, 0], y=coords[ids, 1], mode="markers", name=name,
                                 text=[titles[i] for i in ids], hoverinfo="text",
                                 marker=dict(symbol=symbol, size=size, color=colour, line=dict(width=2, color=colour))))
    if new_item is not None:
        fig.add_trace(go.Scatter(x=[new_item[0]], y=[new_item[1]], mode="markers", name="new item", text=[new_item[2]],
                                 hoverinfo="text", marker=dict(symbol="x", size=16, color="#111",
                                                               line=dict(width=2, color="#111"))))
    # The legend goes below the plot: beside it, long category names squeezed the map to half width.
    fig.update_layout(height=720, margin=dict(l=10, r=10, t=50, b=10), legend_title_text="",
                      legend=dict(orientation="h", yanchor="top", y=-0.02, xanchor="left", x=0, itemsizing="constant",
                                  font=dict(size=11)))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def explanation_figure(explained: dict) -> go.Figure:
    """Two bar charts: each history item's pull on the item's score, and each of its words'."""
    from plotly.subplots import make_subplots

    hist, words = explained["history"], explained["words"]
    # One above the other, each as tall as its bars: side by side, a phone's 390 px left the bars no room.
    rows = max(len(hist), 1), max(len(words), 1)
    fig = make_subplots(rows=2, cols=1, row_heights=[rows[0] / sum(rows), rows[1] / sum(rows)], vertical_spacing=0.12,
                        subplot_titles=("each history item left out", "each of its words masked"))
    short = [h["title"] if len(h["title"]) <= 22 else h["title"][:21] + "…" for h in hist]
    fig.add_trace(go.Bar(x=[h["delta"] for h in hist], y=[f"{i + 1}. {t}" for i, t in enumerate(short)],
                         orientation="h", marker_color=["#2a9d8f" if h["delta"] >= 0 else "#e76f51" for h in hist],
                         hovertext=[h["title"] for h in hist], hoverinfo="text+x"), row=1, col=1)
    fig.add_trace(go.Bar(x=[w["delta"] for w in words], y=[f"{i + 1}. {w['word']}" for i, w in enumerate(words)],
                         orientation="h", marker_color=["#2a9d8f" if w["delta"] >= 0 else "#e76f51" for w in words]),
                  row=2, col=1)
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title_text="change in score", title_font_size=12)
    for subtitle in fig.layout.annotations:  # right-aligned over the bars: centred, they ran off a phone
        subtitle.update(x=1, xanchor="right", font_size=12)
    title = explained["title"] if len(explained["title"]) <= 70 else explained["title"][:69] + "…"
    fig.update_layout(title=wrapped(f"Why '{title}'"), showlegend=False, margin=dict(l=10, r=10, t=90, b=40),
                      height=max(380, 24 * sum(rows) + 220))
    return fig


AXIS_LABELS = {"value": "metric value", "reveal": "share of target words revealed", "ratio": "masking ratio",
               "fraction": "share of training users kept", "variant": "", "pretraining": "pre-training data",
               "dataset": "", "model": "model", "metric": "metric", "cell": "protocol and priors"}


def read_result(path: Path) -> pd.DataFrame:
    if path.suffix == ".json":
        data = json.loads(path.read_text())
        return pd.DataFrame(data["rows"] if isinstance(data, dict) and "rows" in data else data)
    return pd.read_csv(path)


def _span_references(df: pd.DataFrame, x: str) -> pd.DataFrame:
    """Rows with no ``x`` (a reference such as the untrained start) repeated at the lowest and highest x
    of the others, so that they draw as a flat line across the chart."""
    reference = df[x].isna()
    if not reference.any() or reference.all():
        return df
    ends = [df.loc[reference].assign(**{x: value}) for value in (df.loc[~reference, x].min(), df.loc[~reference, x].max())]
    return pd.concat([df.loc[~reference], *ends], ignore_index=True)


def experiment_figure(exp: Experiment, df: pd.DataFrame) -> go.Figure:
    for column, value in exp.only:  # a file written before the column existed is charted whole
        if column in df.columns:
            df = df[df[column] == value]
    # Files written before the dash column existed draw as plain lines.
    dash = exp.dash if exp.kind == "line" and exp.dash in df.columns else None
    if exp.references and exp.kind == "line":  # a series measured once: no x, so drawn as a reference line
        df = df.copy()
        df.loc[df[exp.color].astype(str).str.contains(exp.references, regex=False), exp.x] = np.nan
        dash = exp.color
    if dash:
        references = set(df.loc[df[exp.x].isna(), dash])
        # measured series first in the legend, references after them
        dash_order = sorted(df[dash].unique(), key=lambda value: value in references)
        dash_map = {value: "dash" if value in references else "solid" for value in dash_order}
        df = _span_references(df, exp.x)
    agg = df
    error = None
    group_cols = [c for c in (exp.x, exp.color, exp.facet, exp.row, dash) if c]
    if df.duplicated(group_cols).any():  # several seeds: mean and spread
        agg = df.groupby(group_cols, as_index=False)[exp.y].agg(["mean", "std"]).reset_index()
        agg = agg.rename(columns={"mean": exp.y})
        error = "std"
    if exp.kind == "barh":
        return _horizontal_bars(exp, agg, error)
    plot = px.bar if exp.kind == "bar" else px.line
    kwargs = dict(x=exp.x, y=exp.y, color=exp.color, facet_col=exp.facet, facet_row=exp.row, error_y=error,
                  title=wrapped(exp.title), log_x=exp.log_x)
    if exp.facet:  # each panel has its own y axis: room for its tick labels between the panels
        kwargs["facet_col_spacing"] = 0.07
    if exp.kind == "bar":
        kwargs["barmode"] = "group"
    else:
        kwargs["markers"] = True
        if dash:
            kwargs.update(line_dash=dash, line_dash_map=dash_map, category_orders={dash: dash_order})
    fig = plot(agg, **kwargs, labels=AXIS_LABELS)
    fig.for_each_annotation(lambda a: a.update(text=a.text.split("=", 1)[-1]))  # "metric=NDCG@10" -> "NDCG@10"
    if dash:  # a reference is one value, not points measured at the chart's ends; the legend names it fully
        fig.update_traces(mode="lines", selector=dict(line_dash="dash"))
        fig.update_layout(legend_title_text="")
    if exp.facet:
        fig.update_yaxes(matches=None, showticklabels=True)
    if exp.facet and exp.kind == "bar":  # each panel lists only its own categories (no empty slots)
        fig.update_xaxes(matches=None)
    n_rows = agg[exp.row].nunique() if exp.row else 1
    # Long bar labels are drawn slanted under the bars and take the height from the plot: give it back.
    longest = int(agg[exp.x].astype(str).str.len().max()) if exp.kind == "bar" and len(agg) else 0
    label_room = 6 * max(0, longest - 12)
    fig.update_layout(height=300 + 220 * n_rows + label_room, margin=dict(l=40, r=20, t=_title_room(exp.title), b=40))
    return fig


def _title_room(title: str, below: int = 0) -> int:
    """The top margin for ``title`` as :func:`wrapped` breaks it (22 px a line), plus ``below`` px under it."""
    return 36 + 22 * wrapped(title).count("<br>") + below


def _horizontal_bars(exp: Experiment, agg: pd.DataFrame, error: str | None) -> go.Figure:
    """Bars along the x axis, one panel per ``exp.facet`` value stacked in rows: dozens of long model
    names stay readable down the side, each panel lists only its own, first row of the file on top."""
    fig = px.bar(agg, x=exp.y, y=exp.x, color=exp.color, facet_row=exp.facet, error_x=error, orientation="h",
                 barmode="group", title=wrapped(exp.title), labels=AXIS_LABELS, facet_row_spacing=0.04)
    fig.for_each_annotation(lambda a: a.update(text=a.text.split("=", 1)[-1]))
    fig.update_yaxes(matches=None, showticklabels=True, autorange="reversed", title=None)
    fig.update_xaxes(matches=None, showticklabels=True)
    per_panel = agg.groupby(exp.facet)[exp.x].nunique() if exp.facet else pd.Series([agg[exp.x].nunique()])
    n_colors = agg[exp.color].nunique() if exp.color else 1
    # Equal-height panels, each tall enough for its longest list of bar groups.
    # The legend above the panels, a row per entry: on the right its long cell names took half the bars' width.
    legend_room = 20 * (n_colors + 1)
    height = 150 + legend_room + len(per_panel) * (40 + int(per_panel.max()) * (6 * n_colors + 8))
    fig.update_layout(height=height, margin=dict(l=40, r=20, t=TITLE_TOP + _title_room(exp.title, legend_room), b=40),
                      legend=dict(orientation="v", yanchor="bottom", y=1.0, xanchor="left", x=0),
                      # Anchored under the figure's top, so the legend under it cannot overlap its wrapped lines.
                      title=dict(yref="container", y=1 - TITLE_TOP / height, yanchor="top"),
                      legend_title_text=AXIS_LABELS.get(exp.color, exp.color))
    return fig


LOSS_NAMES = {"loss_si": "sequence-item contrastive", "loss_mlm": "masked language modelling",
              "loss_map": "mapping (JEPA)", "item_spread": "item-vector spread"}


def training_curve_figure(log_csv: Path) -> go.Figure | None:
    """Each pre-training loss component against the step, from a run's ``train_log.csv``."""
    if not log_csv.exists():
        return None
    df = pd.read_csv(log_csv)
    cols = [c for c in ("loss_si", "loss_mlm", "loss_map", "item_spread") if c in df.columns]
    long = df.melt(id_vars="step", value_vars=cols, var_name="component", value_name="value")
    long["component"] = long["component"].map(LOSS_NAMES).fillna(long["component"])
    fig = px.line(long, x="step", y="value", facet_col="component", title="Pre-training losses of the loaded checkpoint",
                  labels={"step": "step", "value": ""})
    fig.for_each_annotation(lambda a: a.update(text=a.text.split("=", 1)[-1]))
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
                  title="Fine-tuning of the loaded checkpoint: validation metrics per epoch",
                  labels={"value": "validation metric", "epoch": "epoch"})
    fig.update_layout(height=320, margin=dict(l=40, r=20, t=60, b=40))
    return fig
