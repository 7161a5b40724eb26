"""The Gradio layout. Callbacks are thin: they unpack components and call :mod:`app.handlers`; a
visitor's mistake (:class:`app.boundary.UserInputError`) becomes a warning toast (:func:`app.boundary.ui_boundary`),
never a traceback."""
from __future__ import annotations

import html
import math
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import numpy as np

from jepa4rec.data import DataFormatError
from jepa4rec.errors import UserError
from jepa4rec.evaluation import format_metrics
from jepa4rec.experiments import EXPERIMENTS, measured_with, recorded_command

from . import handlers as H
from .api import RANKING_ENDPOINTS, endpoints
from .batching import RANKING_CONCURRENCY
from .boundary import ui_boundary
from .plots import (embedding_figure, experiment_figure, explanation_figure, finetune_curve_figure, read_result,
                    reveal_curve_figure, training_curve_figure)
from .service import DEFAULT_DATASET, DEFAULT_SCORED_USERS, MAX_SCORED_USERS, AppService, dataset_label

try:  # On ZeroGPU Spaces, `spaces.GPU` attaches a GPU for the call; elsewhere the package is absent.
    import spaces

    gpu = spaces.GPU
except ImportError:  # pragma: no cover - depends on the host
    def gpu(fn):
        return fn

# The ranking events, the page's and the API's, share one pool of slots (their encodings share passes).
RANKING = dict(concurrency_limit=RANKING_CONCURRENCY, concurrency_id="ranking")

INTRO = """# JEPA4Rec: text-based sequential recommendation
Build a purchase history, pick the item that comes next (the *target*), and reveal a share of its words:
the model ranks **every** item of the catalogue from the history alone (left) and with the revealed words
(right). Items are read as text, never as IDs, so a catalogue the model was never trained on works too
(*zero-shot*)."""

REVEAL_HELP = """**How the revealed words count.** *History + revealed words* (the default) scores each item by
its similarity to the history plus, weighted by the share of words revealed, its similarity to the partly
masked target: at 0% it is exactly the history-only ranking. A model with score priors (a repeat or popularity
bias, see About) adds them in proportion to the share still hidden, so a fully revealed target is ranked by its
text alone. *Next-item predictor* is the paper's mapping
network FFN2, fed the history and the partly masked target; at 0% it sees only the target's attribute
names. The reveal chart in the Experiments tab (the paper's Fig. 7) is measured with both.
*Sequential* reveals words in sentence order (title first), *random* in an order drawn from a fixed seed."""

# How the About tab names each JepaConfig.pooling.
POOLING_WORDS = {"cls": "their [CLS] state", "mean": "the mean of their token states",
                 "recency": "the mean of their token states, weighted by a learned decay with each item's age"}

HOW_TO = """## How to use the app
1. **Choose a dataset.** The badge says whether its model was fine-tuned on it or serves it zero-shot,
   with the model's measured test NDCG@10 beside the popularity baseline's under the same protocol.
2. **Build a history**: type words of a title under *Search the catalogue*, pick a match, press
   *Add to history*; or enter a test user's number and press *Load this user* (their history and the
   item they really chose next).
3. **Pick a target** (*Use as target*) and move the **reveal** slider: the right-hand list re-ranks
   every item with that share of the target's words revealed; the chart shows the target's rank at
   every share. Items already in the history are left out unless *Allow repeat purchases* is on (it is
   on by default for Online Retail, where customers re-order).
4. **Embedding map**: every item's vector in 2-D (UMAP), coloured by genre or category (or by clusters
   of the vectors where the data has neither), with your history, the target and the top 10 marked.
5. **Experiments**: the paper's experiments as this project measured them, each with its command.

## The paper
Minh-Anh Nguyen and Dung D. Le, *JEPA4Rec: Learning Effective Language Representations for Sequential
Recommendation via Joint Embedding Predictive Architecture*. Items become sentences of (attribute,
value) pairs; a Longformer-style encoder reads a whole history as one text; pre-training combines a
sequence-item contrastive loss, masked language modelling and a JEPA mapping loss (an MLP predicts an
EMA target encoder's view of the next item).

## The data
* **MovieLens-100k**: 100,000 ratings of 1,682 films by 943 people (GroupLens, University of Minnesota),
  read from the `recbole` wheel on PyPI; titles, years and genres are the item text.
* **Amazon Scientific / Instruments**: Amazon product reviews (McAuley et al.) as packaged by UniSRec
  and IISAN; item text is title, brand and category (Instruments: title only).
* **Online Retail**: a UK online gift shop's 2010-2011 invoices (UCI Machine Learning Repository);
  item text is the product description.
* The pre-trained model saw eight other Amazon categories (beauty, toys, clothing, health, games,
  books, electronics), never the datasets above."""


UPLOAD_HELP = """Bring your own catalogue: the pre-trained model ranks it zero-shot, since items are read as text.
* **Item file**: CSV (first line the header) or JSON lines; an id column named `item_id` or `id`, and text
  columns such as title, brand, category, description, written into each item's sentence in the header's
  order. UTF-8, at most 200 MB and 200,000 items; ids unique; rows without any text are left out (and counted).
* **Interactions** (optional): CSV with `user`, `item` (an id of the item file) and `timestamp`
  columns; each user's items in time order become a history you can load, with its next item as target.
* Encoding on two CPU cores took 16 s for Scientific's 4,385 Amazon products and 70 s for 50,000 short
  product names (`scripts/benchmark_catalogue.py`); a progress bar shows it.
  The files are read in memory and deleted at once; the catalogue is dropped when you close the page.

**How well does it do on your shop?** With interactions, *Score the models* splits each customer's purchases as
the paper's evaluation does (the last one held out, the one before it for fitting) and ranks every item for
the first 1,000 customers of the file (about half a minute on two CPU cores; 0 scores all, about 30 s per
1,000 more): your best-sellers, the model zero-shot, the same with score priors (a repeat and a popularity
bias fitted on your data), and, after *Adapt*, a model adapted to all your purchases within the time you give
it (a small sequence model trained over the pre-trained model's item vectors). *Download* takes the adapted
model home: `python -m jepa4rec.evaluate --checkpoint FOLDER --items ITEMS --interactions PURCHASES --priors fit
--max-users 1000` reproduces its rows, and `python -m jepa4rec.recommend` serves it."""


def pooling_detail(model) -> str:
    """The learned decay of recency pooling, in words a reader can check: how much the previous item weighs."""
    decay = getattr(model.encoder, "recency_decay", None)
    if decay is None:
        return ""
    lam = float(decay)
    return f" (λ = {lam:.3f}: the item before the last weighs {math.exp(-lam):.2f}, the tenth last {math.exp(-9 * lam):.2f})"


def about_markdown(service: AppService, name: str) -> str:
    served = service.get(name)
    card = served.recommender.card
    name = served.display_name
    lines = [HOW_TO, f"## The model serving {name}: `{served.checkpoint.name}` ({served.mode})"]
    cfg = served.recommender.model.config
    lines.append(f"Encoder: Longformer-style, hidden size {cfg.hidden_size}, {cfg.num_hidden_layers} layers, "
                 f"{cfg.num_attention_heads} attention heads, attention window {cfg.attention_window} tokens; "
                 f"{sum(p.numel() for p in served.recommender.model.parameters()):,} parameters; "
                 f"vocabulary of {cfg.vocab_size:,} word pieces; histories and items pooled by "
                 f"{POOLING_WORDS.get(cfg.pooling, cfg.pooling)}{pooling_detail(served.recommender.model)}.")
    base = getattr(cfg, "base_model", None)
    if base:
        lines.append(f"Language prior: the encoder started from `{base.get('name')}` ({base.get('package')} "
                     f"{base.get('version')}), whose word meanings it keeps.")
    priors = served.recommender.priors
    if priors.repeat_bias:
        lines.append(f"Repeat bias: {priors.repeat_bias:+.3f} is added to the score of every item already in the history "
                     f"({'people here seldom choose the same item again' if priors.repeat_bias < 0 else 'people here often buy again'}"
                     "; fitted on the validation split, never the test; the paper's model has none).")
    if priors.popularity_bias:
        lines.append(f"Popularity bias: {priors.popularity_bias:+.3f} × log(1 + times bought in the training split) is added "
                     "to every item's score (text alone cannot tell a best-seller from an item bought once; fitted on the "
                     "validation split; the paper's model has none).")
    if card.get("kind") == "pretrain":
        lines.append(f"Pre-trained for {card.get('step', '?')} steps on {', '.join(card.get('domains', []))} "
                     f"({card.get('users', 0):,} users, {card.get('items', 0):,} items).")
    elif card.get("kind") == "finetune":
        lines.append(f"Fine-tuned on {card.get('dataset')} (best epoch {card.get('epoch')}) from "
                     f"`{card.get('init_from') or 'scratch'}`.")
    metrics = served.model_test_metrics()
    if metrics:
        protocol = ("history kept, each with its score priors fitted on validation" if served.popularity.get("priors")
                    else "history kept, no score priors")
        lines.append(f"Measured on {name}'s test split (every user, every item ranked; {protocol}): "
                     f"{format_metrics(metrics)}; popularity: {format_metrics(served.popularity)}. Every model under both "
                     "protocols, with and without priors: the Experiments tab's Table 2 and docs/results.md.")
    model_card = served.checkpoint / "README.md"
    if model_card.exists():
        lines.append("## Model card\n" + model_card.read_text().split("\n", 1)[-1])
    return "\n\n".join(lines)


def _unchecked_number(payload):
    """A slider's value as typed: gr.Slider refuses one beyond its range with an error box before any callback
    runs; the app clamps it instead and says so (Callbacks.clamp). (An instance's preprocess, not a subclass:
    Gradio writes a .pyi stub beside the file of every component subclass.)"""
    return None if payload is None else float(payload)


def _recommend_tab(ui: SimpleNamespace) -> None:
    with gr.Tab("Recommend & reveal") as ui.rec_tab:
        with gr.Row():
            with gr.Column(scale=2, min_width=320):
                ui.query = gr.Textbox(label="Search the catalogue", placeholder="type a few words of a title")
                ui.matches = gr.Dropdown([], label="Matches", interactive=True, allow_custom_value=False)
                with gr.Row():
                    ui.add_btn = gr.Button("Add to history", variant="primary")
                    ui.target_btn = gr.Button("Use as target")
                ui.history_df = gr.Dataframe(H.empty_history(), label="Purchase history (oldest first)",
                                             interactive=False, wrap=True)
                with gr.Row():
                    # No minimum or precision here: Gradio would refuse 0 with an error box and round 2.5 to 2 without
                    # a word; the app clamps what is typed and says so (Callbacks.clamp_row).
                    ui.position = gr.Number(label="Row #", value=1, min_width=80)
                    ui.up_btn = gr.Button("Move up", min_width=80)
                    ui.down_btn = gr.Button("Move down", min_width=80)
                    ui.remove_btn = gr.Button("Remove", min_width=80)
                    ui.clear_btn = gr.Button("Clear all", min_width=80)
                with gr.Row():
                    ui.user = gr.Number(label="User of the test split", value=0, min_width=120)
                    ui.load_btn = gr.Button("Load this user (history + true next item)")
                ui.repeats = gr.Checkbox(label="Allow repeat purchases (recommend items already in the history)",
                                         value=False)
            with gr.Column(scale=3, min_width=320):
                ui.reveal = gr.Slider(0, 100, value=0, step=1, label="Reveal % of the target's words")
                ui.reveal.preprocess = _unchecked_number
                with gr.Row():
                    ui.order = gr.Radio(["sequential", "random"], value="sequential", label="Reveal order")
                    ui.scoring = gr.Radio(list(H.SCORINGS), value=H.DEFAULT_SCORING, label="Scoring")
                ui.summary = gr.Markdown()
                ui.tables = gr.HTML()
                ui.curve = gr.Plot(label="Target rank against reveal fraction")
                gr.Markdown(REVEAL_HELP)
                with gr.Accordion("Why this item?", open=False):
                    ui.explain_pick = gr.Dropdown([], label="An item of the lists above, or the target")
                    ui.explain_btn = gr.Button("Explain")
                    ui.explain_plot = gr.Plot(show_label=False)
                with gr.Accordion("A brand-new item: where would it rank?", open=False):
                    gr.Markdown("Describe an item the catalogue does not have; it is ranked against every "
                                "catalogue item for the history above, as soon as it has words.")
                    ui.new_title = gr.Textbox(label="Title", placeholder="e.g. Toy Story 5")
                    ui.new_extra = gr.Textbox(label="Other attributes (name: value; name: value)",
                                              placeholder="e.g. year: 2026; genres: Animation, Comedy")
                    with gr.Row():
                        ui.new_btn = gr.Button("Rank it")
                        ui.add_new_btn = gr.Button("Add it to the catalogue (for you only)")
                    ui.new_summary = gr.Markdown()
                    ui.new_table = gr.HTML()


def _map_compare_upload_tabs(ui: SimpleNamespace) -> None:
    with gr.Tab("Embedding map") as ui.map_tab:
        gr.Markdown("UMAP of every item vector of the dataset (fitted once per model and catalogue, then cached); "
                    "your history, the target and the top 10 are marked.")
        ui.map_plot = gr.Plot(show_label=False)
    with gr.Tab("Compare models") as ui.compare_tab:
        gr.Markdown("The same history (the one on *Recommend & reveal*) ranked by JEPA4Rec, by the RecFormer-style "
                    "model (pre-trained from the same start on the same data, without the mapping loss), by JEPA4Rec "
                    "with recency pooling (recent items weigh more, by a decay learned in pre-training: better "
                    "zero-shot on Online Retail, a weaker reveal) and, where the dataset has one, by SASRec (item "
                    "IDs, trained on this dataset); each list with its model's own measured test NDCG@10 and the protocol it "
                    "was measured under.")
        ui.compare_btn = gr.Button("Compare for the current history", variant="primary")
        ui.compare_html = gr.HTML()
    with gr.Tab("Your catalogue") as ui.upload_tab:
        gr.Markdown(UPLOAD_HELP)
        with gr.Row():
            ui.items_file = gr.File(label="Item file (CSV or JSON lines)", file_types=[".csv", ".jsonl", ".json", ".ndjson"],
                                    elem_id="items-file")
            ui.inter_file = gr.File(label="Interactions (optional: user, item, timestamp)", file_types=[".csv", ".jsonl"],
                                    elem_id="interactions-file")
        ui.upload_btn = gr.Button("Use this catalogue", variant="primary")
        ui.upload_status = gr.Markdown()
        with gr.Row(equal_height=True):
            ui.board_users = gr.Number(label="Customers to score (0: all)", value=DEFAULT_SCORED_USERS, precision=0,
                                       min_width=120)
            ui.board_btn = gr.Button("Score the models on your purchases")
            ui.budget = gr.Number(label="Adaptation time (minutes)", value=2, min_width=120)
            ui.adapt_btn = gr.Button("Adapt a model to your shop", variant="primary")
            ui.cancel_btn = gr.Button("Cancel the adaptation")
        ui.adapt_status = gr.Markdown()
        ui.board_html = gr.HTML()
        ui.download_btn = gr.DownloadButton("Download the adapted model (model folder, zip)", visible=False)


def _experiments_about_tabs(ui: SimpleNamespace, service: AppService) -> None:
    with gr.Tab("Experiments") as ui.exp_tab:
        pretrain_log = service.checkpoints_dir / service.index["default"] / "train_log.csv"
        curve_fig = training_curve_figure(pretrain_log)
        if curve_fig is not None:
            gr.Markdown(f"### Pre-training of the default model\nFrom `{pretrain_log.parent.name}/train_log.csv`.")
            gr.Plot(curve_fig)
        for exp in EXPERIMENTS:
            path = service.result_file(exp.stem)
            if path is None and exp.script_path.exists():
                gr.Markdown(f"### {exp.title}\nNo result file yet: run `{exp.command}` "
                            f"(it writes `scripts/results/{exp.stem}.csv`).")
            elif path is None:
                gr.Markdown(f"### {exp.title}\nNot measured yet: `{exp.command}` is still to be written.")
            else:
                try:
                    fig = experiment_figure(exp, read_result(path))
                except (ValueError, KeyError) as err:  # a malformed file must not take the app down
                    gr.Markdown(f"### {exp.title}\n`{path.name}` could not be charted: {err}")
                    continue
                families = measured_with(path.with_suffix(".json"))
                made_with = f" Measured with {' and '.join(families)}." if families else ""
                command = recorded_command(path.with_suffix(".json"), exp)
                # The command line comes last: a long one wraps as a block, and text after it would start a line.
                gr.Markdown(f"### {exp.title}\nFrom `{path.name}`.{made_with} Written by `{command}`")
                gr.Plot(fig)
    with gr.Tab("About") as ui.about_tab:
        ui.about = gr.Markdown()
        ui.train_plot = gr.Plot(show_label=False)


class Callbacks:
    """What each control does: thin over :mod:`app.handlers`; a visitor's mistake becomes a warning."""

    def __init__(self, service: AppService, names: list[str]):
        self.service = service
        self.names = names

    def draw_map(self, name, hist, tgt, top_ids, new=None):
        served = self.service.get(name)
        return embedding_figure(self.service.embedding_map(name), served.recommender.titles,
                                self.service.map_groups(name), hist, tgt, top_ids,
                                f"{served.display_name}: {served.dataset.n_items:,} items", new)

    @ui_boundary
    def refresh(self, name, hist, tgt, pct, order, scoring, repeats, map_on, new):
        """Both top-10 lists, the summary, the reveal chart, the map (when open) and the items to explain."""
        served = self.service.get(name)
        view = H.rank_view(served, hist, tgt, pct, order, scoring, repeats)
        plain_ids = [r["item"] for r in view.history_only]
        left = H.top_table_html(view.history_only, "From the history alone")
        right = (H.top_table_html(view.revealed, f"With {pct:.0f}% of the target's words revealed", plain_ids)
                 if view.revealed is not None else "")
        fig = None
        if tgt is not None:
            fig = reveal_curve_figure(H.reveal_curve(served, hist, tgt, order, scoring, repeats), view.target_rank_history)
        top_ids = [r["item"] for r in (view.revealed or view.history_only)]
        map_fig = self.draw_map(name, hist, tgt, top_ids, new) if map_on else gr.skip()
        pickable = list(dict.fromkeys(([tgt] if tgt is not None else []) + top_ids + plain_ids))
        picks = gr.update(choices=H.item_choices(served, pickable), value=None)
        return H.history_table(served, hist), H.side_by_side(left, right), view.summary, fig, top_ids, map_fig, picks

    def search(self, name, q):
        """The matches of what is typed so far; no match is said in the list's own label (typing runs this on
        every keystroke, so a toast would pile up one per key)."""
        served = self.service.get(name)
        ids = H.search_catalogue(served, q)
        return gr.update(choices=H.item_choices(served, ids), value=None, label=H.matches_label(served, q, ids))

    @ui_boundary
    def add(self, name, hist, item):
        new, note = H.add_item(self.service.get(name), hist, item)
        if note:
            gr.Info(note)
        return new

    @ui_boundary
    def use_as_target(self, name, item):
        if item is None or item == "":
            raise H.UserInputError("Nothing is selected: search the catalogue and pick an item under Matches first.")
        return H.check_item(self.service.get(name), item)

    @ui_boundary
    def load_user(self, name, user):
        return H.load_user(self.service.get(name), user)

    @ui_boundary
    def move(self, hist, pos, delta):
        return H.move_item(hist, pos, delta)

    @ui_boundary
    def remove(self, hist, pos):
        return H.remove_item(hist, pos)

    @staticmethod
    def clamp(value, lo, hi, what, whole=True):
        """A number field's value within range; what was changed is said once, as a warning."""
        kept, said = H.clamp_number(value, lo, hi, what, whole)
        if said is None:
            return gr.skip()
        gr.Warning(said)
        return kept

    def clamp_row(self, hist, pos):
        # A row beyond the history is left for the buttons to refuse ("not in the history"): said once.
        try:
            beyond = float(pos) > len(hist) >= 1
        except (TypeError, ValueError):
            beyond = False
        return gr.skip() if beyond else self.clamp(pos, 1, max(len(hist), 1), "Row #")

    def clamp_user(self, name, user):
        return self.clamp(user, 0, max(len(self.service.get(name).dataset.test_cases()) - 1, 0), "User")

    @staticmethod
    def warn_reveal_without_target(tgt, pct):
        if tgt is None and pct:
            gr.Warning("Choose a target first (Use as target, or Load this user): reveal shows the target's words.")

    def reset(self, name, hist, tgt, shelf, shown):
        """Clear everything the previous dataset showed, at once, before the new one loads. A history's ids belong
        to its own catalogue, so it cannot follow a switch; it is put aside (and said so) and comes back when the
        visitor returns to that dataset. A catalogue that only gained the visitor's typed items keeps the history
        and target as they are (every id is the same)."""
        served = self.service.get(name) if name.startswith("upload:") else None
        label = served.display_name if served else dataset_label(name)
        loading = f"Loading **{html.escape(label)}**…"
        shelf = dict(shelf or {})
        if served is not None and served.extends:
            kept = (hist, tgt)
        else:
            if shown and shown != name and (hist or tgt is not None):
                shelf[shown] = (list(hist), tgt)
                gr.Info(f"Your history of {len(hist)} item(s) on {self.label(shown)} is kept: choose "
                        f"{self.label(shown)} again to go on with it.")
            kept = tuple(shelf.pop(name, ([], None)))
            if kept[0] or kept[1] is not None:
                gr.Info(f"Your history on {label} is back.")
        # The match list's label too: it may say the previous dataset had no match for the old query.
        return (*kept, [], gr.update(choices=[], value=None, label=H.matches_label(None, "", [])), "",
                H.empty_history(), "", loading, None,
                loading, None, 0, None, "", "", None, gr.update(choices=[], value=None), "", shelf, name)

    def label(self, name: str) -> str:
        try:
            return self.service.get(name).display_name if name.startswith("upload:") else dataset_label(name)
        except Exception:  # a visitor's catalogue dropped meanwhile
            return "your catalogue"

    def load(self, name, progress=gr.Progress()):
        try:
            served = self.service.get(name, progress=lambda f, what: progress(f, desc=what))
        except UserError as err:  # not here and not fetchable (no network): said on the page, with the command
            return H.unavailable_markdown(name, err), "", None, False
        ckpt = served.checkpoint
        fig = training_curve_figure(ckpt / "train_log.csv") or finetune_curve_figure(ckpt / "finetune_results.json")
        return H.badge_markdown(served), about_markdown(self.service, name), fig, served.repeats_by_default

    @ui_boundary
    def open_map(self, name, hist, tgt, top_ids, new, progress=gr.Progress()):
        H.check_history(self.service.get(name), hist)  # the map marks the history by id
        if not self.service.has_map(name):
            progress(0.1, desc=f"fitting UMAP over {self.service.get(name).dataset.n_items:,} item vectors (once per "
                               "model and catalogue, then cached)")
        return True, self.draw_map(name, hist, tgt, top_ids, new)

    @ui_boundary
    def explain(self, name, hist, item):
        if item is None or item == "":
            raise H.UserInputError("Pick an item to explain (from the lists above, or the target).")
        return explanation_figure(H.explain_item(self.service.get(name), hist, item))

    @ui_boundary
    def new_item(self, name, hist, title, extra, repeats):
        served = self.service.get(name)
        attrs = H.parse_attributes(title, extra)
        view = H.new_item_view(served, hist, attrs, repeats)
        point = None
        if self.service.has_map(name):  # placed at its nearest items' mean position, weighted by cosine
            coords = self.service.embedding_map(name)
            ids = [n["item"] for n in view["neighbours"]]
            w = np.clip(np.array([n["cosine"] for n in view["neighbours"]]), 1e-6, None)
            x, y = (coords[ids] * w[:, None]).sum(0) / w.sum()
            point = (float(x), float(y), f"new: {attrs.get('title') or next(iter(attrs.values()))}")
        where = (f"would rank **{view['rank']:,}** of {view['of']:,} for this history (score {view['score']:.3f})"
                 if view["history_used"] else "has no history to rank against yet: add items to the history")
        text = f"**{html.escape(' · '.join(attrs.values()))}** {where}."
        if view["history_used"] and view["popularity_prior"]:
            text += (" Every catalogue item's score includes this model's popularity prior (how often it sold); a new"
                     " item has no purchases yet, so it gets none")
            if view.get("rank_by_text_alone") is not None:
                text += f": ranked by text alone, as it is, it would be **{view['rank_by_text_alone']:,}**"
            text += "."
        if point is not None:
            text += " It is marked ✕ on the embedding map, among its nearest items."
        return text, H.neighbours_html(view), point

    @ui_boundary
    def compare(self, name, hist, repeats, progress=gr.Progress()):
        if not hist:
            raise H.UserInputError("The history is empty: build one on Recommend & reveal first.")
        return H.compare_html(H.compare_view(self.service, name, hist, repeats,
                                             progress=lambda f, what: progress(f, desc=what)))

    @ui_boundary
    def upload(self, items_path, inter_path, request: gr.Request, progress=gr.Progress()):
        if not items_path:
            raise H.UserInputError("Choose an item file first (CSV or JSON lines with an id column and text columns).")
        try:
            served = self.service.add_upload(request.session_hash, items_path, inter_path or None,
                                             label=Path(items_path).name,
                                             progress=lambda f, what: progress(f, desc=what))
        except DataFormatError as err:
            said = str(err)
            for f in (items_path, inter_path):  # the file's name, not Gradio's temporary folder
                if f:
                    said = said.replace(str(Path(f).parent) + "/", "")
            raise H.UserInputError(said) from None
        finally:
            for f in (items_path, inter_path):  # Gradio's copy of an upload does not outlive its use
                if f:
                    Path(f).unlink(missing_ok=True)
        choices = [(dataset_label(n), n) for n in self.names] + [(f"Your catalogue: {served.display_name}", served.name)]
        buyers = (f", {len(served.dataset.test_cases()):,} customers with a held-out purchase: *Score the models* "
                  "ranks them" if served.dataset.sequences else "")
        return (gr.update(choices=choices, value=served.name),
                f"Loaded **{served.display_name}**: {served.dataset.n_items:,} items{buyers}. Switch to *Recommend & "
                "reveal* to try it.", "", gr.update(value=None, visible=False))

    @ui_boundary
    def add_new_item(self, name, title, extra, request: gr.Request):
        served = self.service.add_visitor_item(request.session_hash, name, H.parse_attributes(title, extra))
        gr.Info(f"Added to {served.display_name}: it can now be recommended, for you only.")
        choices = [(dataset_label(n), n) for n in self.names] + [(served.display_name, served.name)]
        return gr.update(choices=choices, value=served.name)

    def _upload(self, name):
        if not str(name).startswith("upload:"):
            raise H.UserInputError("Choose your catalogue first: upload an item file with its purchases above.")
        return self.service.get(name)

    @ui_boundary
    def board(self, name, users, progress=gr.Progress()):
        served = self._upload(name)
        users, said = H.clamp_number(users, 0, MAX_SCORED_USERS, "Customers to score")
        if said:
            gr.Warning(said)
        board = self.service.scoreboard(served, users, progress=lambda f, what: progress(f, desc=what))
        return H.scoreboard_html(board, served.adapted.adapter.card if served.adapted else None)

    @ui_boundary
    def adapt(self, name, minutes, users, request: gr.Request, progress=gr.Progress()):
        served = self._upload(name)
        minutes, said = H.clamp_number(minutes, 0.25, 10, "Adaptation time (minutes)", whole=False)
        if said:
            gr.Warning(said)
        users, said = H.clamp_number(users, 0, MAX_SCORED_USERS, "Customers to score")
        if said:
            gr.Warning(said)
        board = self.service.adapt(served, minutes * 60, request.session_hash,
                                   progress=lambda f, what: progress(f, desc=what), users=users)
        card = served.adapted.adapter.card
        status = (f"Adapted in {card['train_seconds']:.0f} s ({card['epochs_run']} epochs, stopped by "
                  f"{card['stopped']}); the scoreboard below has its rows.")
        return (status, H.scoreboard_html(board, card),
                gr.update(value=str(self.service.adapted_archive(served)), visible=True))

    def cancel(self, request: gr.Request):
        self.service.cancel(request.session_hash)
        gr.Info("The adaptation stops after the epoch under way; the best epoch so far is kept.")

    def leave(self, request: gr.Request):
        self.service.drop_session(request.session_hash)


def _wire(demo: gr.Blocks, ui: SimpleNamespace, cb: Callbacks) -> None:
    """Connect the controls to the callbacks; every event is private (the API is app.api's)."""
    private = dict(api_visibility="private")
    refresh = gpu(cb.refresh)
    view_in = [ui.dataset, ui.history, ui.target, ui.reveal, ui.order, ui.scoring, ui.repeats, ui.map_open, ui.new_point]
    view_out = [ui.history_df, ui.tables, ui.summary, ui.curve, ui.top, ui.map_plot, ui.explain_pick]

    def then_refresh(event):
        return event.then(refresh, view_in, view_out, **private, **RANKING)

    ui.query.input(cb.search, [ui.dataset, ui.query], ui.matches, trigger_mode="always_last", **private)
    then_refresh(ui.add_btn.click(cb.add, [ui.dataset, ui.history, ui.matches], ui.history, **private))
    then_refresh(ui.target_btn.click(cb.use_as_target, [ui.dataset, ui.matches], ui.target, **private))
    then_refresh(ui.up_btn.click(lambda h, p: cb.move(h, p, -1), [ui.history, ui.position], ui.history, **private))
    then_refresh(ui.down_btn.click(lambda h, p: cb.move(h, p, 1), [ui.history, ui.position], ui.history, **private))
    then_refresh(ui.remove_btn.click(cb.remove, [ui.history, ui.position], ui.history, **private))
    then_refresh(ui.clear_btn.click(lambda: ([], None), None, [ui.history, ui.target], **private))
    then_refresh(ui.load_btn.click(cb.load_user, [ui.dataset, ui.user], [ui.history, ui.target], **private))
    ui.reveal.change(cb.warn_reveal_without_target, [ui.target, ui.reveal], None, **private)
    ui.reveal.change(lambda pct: cb.clamp(pct, 0, 100, "Reveal %", whole=False), ui.reveal, ui.reveal, **private)
    ui.position.blur(cb.clamp_row, [ui.history, ui.position], ui.position, **private)
    ui.user.blur(cb.clamp_user, [ui.dataset, ui.user], ui.user, **private)
    for control in (ui.reveal, ui.order, ui.scoring, ui.repeats):
        control.change(refresh, view_in, view_out, trigger_mode="always_last", **private, **RANKING)

    reset_out = [ui.history, ui.target, ui.top, ui.matches, ui.query, ui.history_df, ui.tables, ui.summary, ui.curve,
                 ui.badge, ui.map_plot, ui.reveal, ui.new_point, ui.new_summary, ui.new_table, ui.explain_plot,
                 ui.explain_pick, ui.compare_html, ui.shelf, ui.shown]
    load_out = [ui.badge, ui.about, ui.train_plot, ui.repeats]
    then_refresh(ui.dataset.change(cb.reset, [ui.dataset, ui.history, ui.target, ui.shelf, ui.shown], reset_out,
                                   **private).then(
        cb.load, ui.dataset, load_out, **private))
    then_refresh(demo.load(cb.load, ui.dataset, load_out, **private))
    demo.unload(cb.leave)

    ui.map_tab.select(cb.open_map, [ui.dataset, ui.history, ui.target, ui.top, ui.new_point], [ui.map_open, ui.map_plot],
                      **private)
    for tab in (ui.rec_tab, ui.compare_tab, ui.upload_tab, ui.exp_tab, ui.about_tab):
        tab.select(lambda: False, None, ui.map_open, **private)
    ui.explain_btn.click(cb.explain, [ui.dataset, ui.history, ui.explain_pick], ui.explain_plot, **private)
    ui.new_btn.click(cb.new_item, [ui.dataset, ui.history, ui.new_title, ui.new_extra, ui.repeats],
                     [ui.new_summary, ui.new_table, ui.new_point], **private)
    ui.add_new_btn.click(cb.add_new_item, [ui.dataset, ui.new_title, ui.new_extra], ui.dataset, **private)
    ui.compare_btn.click(cb.compare, [ui.dataset, ui.history, ui.repeats], ui.compare_html, **private)
    ui.upload_btn.click(cb.upload, [ui.items_file, ui.inter_file],
                        [ui.dataset, ui.upload_status, ui.board_html, ui.download_btn], **private)
    ui.board_btn.click(cb.board, [ui.dataset, ui.board_users], ui.board_html, **private)
    ui.adapt_btn.click(cb.adapt, [ui.dataset, ui.budget, ui.board_users], [ui.adapt_status, ui.board_html,
                                                                            ui.download_btn], **private)
    ui.cancel_btn.click(cb.cancel, None, None, **private)


def build_demo(service: AppService) -> gr.Blocks:
    names = service.dataset_names()
    default = DEFAULT_DATASET if DEFAULT_DATASET in names else names[0]
    ui = SimpleNamespace()
    with gr.Blocks(title="JEPA4Rec") as demo:
        gr.Markdown(INTRO)
        with gr.Row(equal_height=True):
            ui.dataset = gr.Dropdown([(dataset_label(n), n) for n in names], value=default, label="Dataset",
                                     interactive=True, scale=1, min_width=200)
            ui.badge = gr.Markdown("Loading…", scale=3)
        ui.history, ui.target, ui.top = gr.State([]), gr.State(None), gr.State([])
        # The dataset on screen, and the histories put aside on a switch ({dataset: (history, target)}).
        ui.shown, ui.shelf = gr.State(default), gr.State({})
        ui.map_open = gr.State(False)
        ui.new_point = gr.State(None)  # (x, y, title) of a typed new item on the map
        _recommend_tab(ui)
        _map_compare_upload_tabs(ui)
        _experiments_about_tabs(ui, service)
        # The named API first: a private event takes its function's name too, and would push an endpoint
        # registered after it to "<name>_1".
        for fn in endpoints(service, gpu):
            ranking = fn.__name__ in RANKING_ENDPOINTS
            gr.api(fn, api_name=fn.__name__, **(RANKING if ranking else {}))
        _wire(demo, ui, Callbacks(service, names))
    return demo
