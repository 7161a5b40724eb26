"""The Gradio layout. Callbacks are thin: they unpack components and call :mod:`app.handlers`."""
from __future__ import annotations

import json

import gradio as gr

from jepa4rec.evaluation import format_metrics

from . import handlers as H
from .plots import (EXPERIMENTS, embedding_figure, experiment_figure, finetune_curve_figure, read_result,
                    reveal_curve_figure, training_curve_figure)
from .service import DEFAULT_DATASET, AppService
from jepa4rec.data.registry import PROJECT_ROOT

try:  # On ZeroGPU Spaces, `spaces.GPU` attaches a GPU for the call; elsewhere the package is absent.
    import spaces

    gpu = spaces.GPU
except ImportError:  # pragma: no cover - depends on the host
    def gpu(fn):
        return fn

INTRO = """# JEPA4Rec — text-based sequential recommendation
Build a purchase history, pick the item that comes next, and reveal a share of its words: the model
combines the history with the partly masked item through its next-item predictor
(FFN2(h_CLS ⊕ h_{n+1,M})) and re-ranks **every** item of the catalogue. Items are text, so any dataset
works zero-shot with the pre-trained checkpoint."""

REVEAL_HELP = """**Reveal:** 0% = only the target's attribute names are visible (every value word is masked);
100% = its whole sentence. *Sequential* reveals words in sentence order (title first); *random*
reveals them in an order drawn from a fixed seed."""


def about_markdown(service: AppService, name: str) -> str:
    served = service.get(name)
    card = served.recommender.card
    lines = [f"## The loaded checkpoint: `{served.checkpoint.name}` ({served.mode} on {name})"]
    cfg = served.recommender.model.config
    lines.append(f"Encoder: Longformer, hidden {cfg.hidden_size}, {cfg.num_hidden_layers} layers, "
                 f"{cfg.num_attention_heads} heads, attention window {cfg.attention_window}; "
                 f"{sum(p.numel() for p in served.recommender.model.parameters()):,} parameters; "
                 f"vocabulary {cfg.vocab_size:,}; histories and items pooled by "
                 f"{'their [CLS] state' if cfg.pooling == 'cls' else 'the mean of their token states'}.")
    base = getattr(cfg, "base_model", None)
    if base:
        lines.append(f"Language prior: the encoder started from `{base.get('name')}` ({base.get('package')} "
                     f"{base.get('version')}), whose word meanings it keeps; items are text, so any catalogue "
                     "works without item IDs.")
    if card.get("kind") == "pretrain":
        lines.append(f"Pre-trained for {card.get('step', '?')} steps on {', '.join(card.get('domains', []))} "
                     f"({card.get('users', 0):,} users, {card.get('items', 0):,} items).")
    elif card.get("kind") == "finetune":
        lines.append(f"Fine-tuned on {card.get('dataset')} (best epoch {card.get('epoch')}) from "
                     f"`{card.get('init_from') or 'scratch'}`.")
    if card.get("shipped_test"):
        lines.append(f"Measured test metrics of these weights on {card['shipped_test']['dataset']} (all users, every "
                     f"item ranked): {format_metrics(card['shipped_test'])}.")
    elif card.get("test"):
        lines.append(f"Measured test metrics on {card.get('dataset')}: {format_metrics(card['test'])}.")
    if card.get("zero_shot"):
        for ds, m in card["zero_shot"].items():
            lines.append(f"Zero-shot on {ds}: {format_metrics(m)}.")
    model_card = served.checkpoint / "README.md"
    if model_card.exists():
        lines.append("\n---\n" + model_card.read_text())
    return "\n\n".join(lines)


def build_demo(service: AppService) -> gr.Blocks:
    names = service.dataset_names()
    default = DEFAULT_DATASET if DEFAULT_DATASET in names else names[0]

    with gr.Blocks(title="JEPA4Rec") as demo:
        gr.Markdown(INTRO)
        dataset = gr.Dropdown(names, value=default, label="Dataset", interactive=True)
        history = gr.State([])
        target = gr.State(None)
        previous_top = gr.State([])

        with gr.Tab("Recommend & reveal"):
            with gr.Row():
                with gr.Column(scale=2):
                    query = gr.Textbox(label="Search the catalogue", placeholder="type a few words of a title")
                    matches = gr.Dropdown([], label="Matches", interactive=True, allow_custom_value=False)
                    with gr.Row():
                        add_btn = gr.Button("Add to history", variant="primary")
                        target_btn = gr.Button("Use as target")
                    history_df = gr.Dataframe(label="Purchase history (oldest first)", interactive=False, wrap=True)
                    with gr.Row():
                        position = gr.Number(label="Row #", value=1, precision=0, minimum=1)
                        up_btn = gr.Button("Move up")
                        down_btn = gr.Button("Move down")
                        remove_btn = gr.Button("Remove")
                        clear_btn = gr.Button("Clear")
                    with gr.Row():
                        user = gr.Number(label="User of the test split", value=0, precision=0, minimum=0)
                        load_btn = gr.Button("Load this user (history + true next item)")
                with gr.Column(scale=3):
                    reveal = gr.Slider(0, 100, value=0, step=10, label="Reveal % of the target's words")
                    order = gr.Radio(["sequential", "random"], value="sequential", label="Reveal order")
                    gr.Markdown(REVEAL_HELP)
                    summary = gr.Markdown()
                    top_df = gr.Dataframe(label="Top 10", interactive=False, wrap=True)
                    curve = gr.Plot(label="Target rank against reveal fraction")

        with gr.Tab("Embedding map"):
            gr.Markdown("UMAP of every item vector of the dataset (fitted once per checkpoint and catalogue, then "
                        "cached), coloured by genre or category; the history, the target and the top 10 are marked.")
            map_btn = gr.Button("Draw / refresh the map")
            map_plot = gr.Plot()

        with gr.Tab("Experiments"):
            pretrain_log = service.checkpoints_dir / service.index["default"] / "train_log.csv"
            curve_fig = training_curve_figure(pretrain_log)
            if curve_fig is not None:
                gr.Markdown(f"### Pre-training of the default checkpoint\nFrom `{pretrain_log.parent.name}/train_log.csv`.")
                gr.Plot(curve_fig)
            for exp in EXPERIMENTS:
                path = service.result_file(exp.stem)
                script = PROJECT_ROOT / exp.command.split()[1]
                if path is None and script.exists():
                    gr.Markdown(f"### {exp.title}\nNo result file yet: run `{exp.command}` "
                                f"(it writes `scripts/results/{exp.stem}.csv`).")
                elif path is None:
                    gr.Markdown(f"### {exp.title}\nNot measured yet: `{exp.command}` is still to be written "
                                f"(it will write `scripts/results/{exp.stem}.csv`).")
                else:
                    try:
                        fig = experiment_figure(exp, read_result(path))
                    except (ValueError, KeyError) as err:  # a malformed file must not take the app down
                        gr.Markdown(f"### {exp.title}\n`{path}` could not be charted: {err}")
                        continue
                    gr.Markdown(f"### {exp.title}\nFrom `{path.name}`, written by `{exp.command}`.")
                    gr.Plot(fig)

        with gr.Tab("About"):
            about = gr.Markdown()
            train_plot = gr.Plot()

        # --- callbacks -----------------------------------------------------------------------
        @gpu
        def refresh(name, hist, tgt, pct, order_, prev):
            served = service.get(name)
            table, text, top = H.rank_view(served, hist, tgt, pct if tgt is not None else None, prev, order_)
            fig = reveal_curve_figure(H.reveal_curve(served, hist, tgt, order_)) if tgt is not None else None
            return H.history_table(served, hist), table, text, fig, top

        view_outputs = [history_df, top_df, summary, curve, previous_top]
        view_inputs = [dataset, history, target, reveal, order, previous_top]

        def on_search(name, q):
            return gr.update(choices=H.search_catalogue(service.get(name), q), value=None)

        def on_add(hist, label):
            return H.add_item(hist, H.parse_label(label) if label else None)

        def on_target(label, tgt):
            return H.parse_label(label) if label else tgt

        def on_load(name, u):
            return H.load_user(service.get(name), int(u or 0))

        def on_dataset(name):
            service.get(name)
            ckpt = service.get(name).checkpoint
            return [], None, [], about_markdown(service, name), (
                training_curve_figure(ckpt / "train_log.csv") or finetune_curve_figure(ckpt / "finetune_results.json"))

        def on_map(name, hist, tgt, top):
            served = service.get(name)
            coords = service.embedding_map(name)
            return embedding_figure(coords, served.recommender.titles, H.item_groups(served.dataset.items),
                                    hist, tgt, top, f"{name}: {served.dataset.n_items:,} items")

        query.input(on_search, [dataset, query], matches, trigger_mode="always_last", api_visibility="private")
        add_btn.click(on_add, [history, matches], history, api_visibility="private").then(
            refresh, view_inputs, view_outputs, api_visibility="private")
        target_btn.click(on_target, [matches, target], target, api_visibility="private").then(
            refresh, view_inputs, view_outputs, api_visibility="private")
        for btn, fn in ((up_btn, lambda h, p: H.move_item(h, p, -1)), (down_btn, lambda h, p: H.move_item(h, p, 1)),
                        (remove_btn, H.remove_item), (clear_btn, lambda h, p: [])):
            btn.click(fn, [history, position], history, api_visibility="private").then(
                refresh, view_inputs, view_outputs, api_visibility="private")
        load_btn.click(on_load, [dataset, user], [history, target], api_visibility="private").then(
            refresh, view_inputs, view_outputs, api_visibility="private")
        for ctl in (reveal, order):
            ctl.change(refresh, view_inputs, view_outputs, trigger_mode="always_last", api_visibility="private")
        dataset.change(on_dataset, dataset, [history, target, previous_top, about, train_plot],
                       api_visibility="private").then(refresh, view_inputs, view_outputs, api_visibility="private")
        map_btn.click(on_map, [dataset, history, target, previous_top], map_plot, api_visibility="private")
        demo.load(on_dataset, dataset, [history, target, previous_top, about, train_plot],
                  api_visibility="private").then(refresh, view_inputs, view_outputs, api_visibility="private")

        @gpu
        def recommend(dataset: str, history: list[int], target: int | None = None, reveal: float | None = None,
                      k: int = 10) -> dict:
            """Rank every item of `dataset` for `history` (item ids, oldest first); with `target` also its rank,
            and with `reveal` (0-1) the share of the target's words revealed to the next-item predictor."""
            if isinstance(history, str):
                history = json.loads(history)
            return H.api_recommend(service.get(dataset), history, target, reveal, k)

        def search(dataset: str, query: str, limit: int = 20) -> list[str]:
            """Catalogue items whose title contains every word of `query`, as "title [#id]" labels."""
            return H.search_catalogue(service.get(dataset), query, int(limit))

        gr.api(recommend, api_name="recommend")
        gr.api(search, api_name="search")
    return demo
