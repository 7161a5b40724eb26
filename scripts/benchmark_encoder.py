"""Speed of the encoder and of ranking: the project's SDPA attention against transformers' Longformer
with the same weights in the same process, catalogue encoding, full-ranking evaluation, top-10 at
scale, int8 serving and a reveal-slider move. Prints every figure and writes them to one JSON file.

Parts (``--parts``, all by default):

* ``encoder``: tokens/s, forward + backward and forward alone, at B x L = 8 x 256 and 4 x 1024 (every
  token real), tiny and MiniLM sizes, ``attention_path`` "sdpa" against "longformer";
* ``finetune``: end-to-end fine-tuning pairs/s on real Scientific batches (the fine-tuning loss, the
  MiniLM-sized model, 1024-token histories): today's path (Longformer, random batches) against the
  new one (SDPA, ``group_by_length``);
* ``catalogue``: Scientific's item sentences encoded per second with the MiniLM-sized model, in fp32,
  bf16 autocast (native on CPUs with AVX512-BF16 or AMX) and int8 dynamic quantisation;
* ``evaluate``: full-ranking users/s on Scientific's test split, tiny and MiniLM sizes: before (Longformer,
  users in case order), and now (users in order of history length) with either attention path;
* ``int8``: NDCG@10 of int8 dynamic quantisation and of bf16 autocast against fp32 (the untrained
  converted MiniLM) on the first ``--int8-users`` Scientific test users;
* ``topk``: top-10 latency (p50 / p95 over single queries) and recall@10 against exact, for 100k and
  1M synthetic item vectors (Scientific's MiniLM item vectors plus noise of norm ``--noise``: a text
  encoder's structure, not isotropic noise); exact matrix product and the automatic choice (IVF beyond 200k);
* ``reveal``: a reveal-slider move (``Recommender.recommend`` with a target and a fraction) on a
  catalogue of ``--reveal-items`` items with the MiniLM-sized model; p50 / p95.

  python scripts/benchmark_encoder.py                       # everything, ~25 min on 2 cores
  python scripts/benchmark_encoder.py --parts encoder topk --threads 2
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from jepa4rec.cli import ArgumentParser, command, command_line
from jepa4rec.paths import RESULTS_DIR

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PARTS = ("encoder", "finetune", "catalogue", "evaluate", "int8", "topk", "reveal")


def timed(fn, repeats: int) -> float:
    """Median seconds of ``repeats`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def model_of(size: str, vocab: int = 30522):
    import torch

    from jepa4rec.modeling import JEPA4RecModel, JepaConfig

    torch.manual_seed(0)
    return JEPA4RecModel(JepaConfig.from_size(size, vocab_size=vocab, hidden_dropout_prob=0.0,
                                              attention_probs_dropout_prob=0.0))


def random_inputs(B: int, L: int, vocab: int):
    import torch

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, vocab, (B, L), generator=g)
    glob = torch.zeros(B, L, dtype=torch.long)
    glob[:, 0] = 1
    return dict(input_ids=ids, attention_mask=torch.ones(B, L, dtype=torch.long),
                token_type_ids=torch.randint(1, 3, (B, L), generator=g), position_ids=torch.arange(L).expand(B, L),
                item_position_ids=torch.randint(1, 20, (B, L), generator=g), global_attention_mask=glob)


def bench_encoder(args) -> list[dict]:
    import torch

    rows = []
    for size in ("tiny", "minilm"):
        model = model_of(size).train()
        enc = model.encoder
        for B, L in ((8, 256), (4, 1024)):
            batch = random_inputs(B, L, 30522)
            row = {"size": size, "batch": B, "length": L, "window": enc.config.attention_window}
            for path in ("longformer", "sdpa"):
                enc.attention_path = path

                def train_step():
                    model.zero_grad(set_to_none=True)
                    enc(**batch).pow(2).mean().backward()

                def forward():
                    with torch.inference_mode():
                        enc(**batch)

                row[f"{path}_train_tok_s"] = round(B * L / timed(train_step, args.repeats), 1)
                row[f"{path}_forward_tok_s"] = round(B * L / timed(forward, args.repeats), 1)
            row["train_speedup"] = round(row["sdpa_train_tok_s"] / row["longformer_train_tok_s"], 2)
            row["forward_speedup"] = round(row["sdpa_forward_tok_s"] / row["longformer_forward_tok_s"], 2)
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def scientific(args):
    from jepa4rec.data import load_dataset

    return load_dataset("Scientific_UniSRec", root=args.data_root)


def minilm_recommender(dataset, max_tokens: int = 128, max_items: int = 20, **kwargs):
    from jepa4rec.recommender import Recommender

    return Recommender.from_language_model("minilm", dataset, max_items=max_items, max_tokens=max_tokens, **kwargs)


def bench_finetune(args) -> dict:
    """Pairs/s of the fine-tuning step (the history encoder, softmax over a fixed item matrix, backward,
    AdamW) on the same real pairs; only the attention path and the batching differ."""
    import torch
    import torch.nn.functional as F

    from jepa4rec.batches import group_by_length
    from jepa4rec.batches import finetuning_pairs

    ds = scientific(args)
    rec = minilm_recommender(ds, max_tokens=1024, max_items=50, device="cpu")
    model, tok = rec.model.train(), rec.tok
    items = F.normalize(torch.randn(ds.n_items, model.config.hidden_size), dim=-1)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    rng = np.random.default_rng(0)
    n = args.finetune_batches * args.batch_size
    pairs = finetuning_pairs(ds, "sample", 50, rng)[:n]  # both paths train on these same pairs
    result = {"pairs": n, "batch_size": args.batch_size, "max_tokens": 1024}
    for name, path, grouped in (("longformer_random", "longformer", False), ("sdpa_grouped", "sdpa", True)):
        ordered = pairs
        if grouped:
            ordered = group_by_length(pairs, [tok.history_length([rec.encoded[i] for i in p.history]) for p in pairs],
                                      args.batch_size, np.random.default_rng(1))
        model.encoder.attention_path = path
        chunks = [ordered[b * args.batch_size:(b + 1) * args.batch_size] for b in range(args.finetune_batches)]
        t = time.perf_counter()
        tokens = 0
        for chunk in chunks:
            hist = tok.collate([[rec.encoded[i] for i in p.history] for p in chunk])
            tokens += int(hist["attention_mask"].sum())
            h = F.normalize(model.encode(hist), dim=-1)
            loss = F.cross_entropy(h @ items.T / 0.05, torch.tensor([p.target for p in chunk]))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        seconds = time.perf_counter() - t
        result[f"{name}_pairs_s"] = round(n / seconds, 2)
        result[f"{name}_real_tokens"] = tokens
    result["speedup"] = round(result["sdpa_grouped_pairs_s"] / result["longformer_random_pairs_s"], 2)
    print(json.dumps(result), flush=True)
    return result


def bench_catalogue(args) -> list[dict]:
    from jepa4rec.devices import native_bf16

    import torch

    ds = scientific(args)
    rows = []
    for precision in ("fp32", "bf16", "int8"):
        rec = minilm_recommender(ds, device="cpu", use_cache=False, precision="fp32" if precision == "int8" else precision)
        if precision == "int8":
            rec.quantize_int8()
        t = time.perf_counter()
        rec.embed_encoded_items(rec.encoded)
        seconds = time.perf_counter() - t
        row = {"precision": precision, "items": ds.n_items, "seconds": round(seconds, 1),
               "items_s": round(ds.n_items / seconds, 1), "native_bf16": native_bf16(torch.device("cpu"))}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def bench_evaluate(args) -> list[dict]:
    import torch

    from jepa4rec.evaluation import evaluate, rank_of_targets
    from jepa4rec.recommender import Recommender
    from jepa4rec.text import ItemTokenizer, TextConfig, sentence_text, train_tokenizer

    ds = scientific(args)
    rows = []
    tiny_tok = ItemTokenizer(train_tokenizer((sentence_text(i) for i in ds.items), 8000), TextConfig(max_tokens=1024))
    for size in ("tiny", "minilm"):
        if size == "tiny":
            from jepa4rec.builder import new_model

            model = new_model(tiny_tok, model_size="tiny", overrides={}, max_items=50, max_tokens=1024, seed=0)
            rec = Recommender(model, tiny_tok, ds, device="cpu", batch_size=64, precision="fp32")
        else:  # fp32 throughout: the gain measured is the attention and the ordering (precisions: see int8)
            rec = minilm_recommender(ds, device="cpu", batch_size=64, precision="fp32")
        _ = rec.item_vectors
        # Longformer's kernels on MiniLM-sized histories run at well under 1 user/s: fewer users there.
        cases = ds.test_cases()[: args.eval_users if size == "tiny" else args.minilm_eval_users]
        row = {"size": size, "users": len(cases), "max_tokens": rec.tok.config.max_tokens}
        # Before: Longformer's kernels on users in case order (batches pad to their longest history).
        rec.model.encoder.attention_path = "longformer"
        t = time.perf_counter()
        with torch.no_grad():
            for s in range(0, len(cases), 64):
                chunk = cases[s:s + 64]
                rank_of_targets(rec.score_all([list(c.history) for c in chunk]), [c.target for c in chunk])
        row["before_users_s"] = round(len(cases) / (time.perf_counter() - t), 1)
        for path in ("longformer", "sdpa"):  # now: users in order of history length
            rec.model.encoder.attention_path = path
            row[f"{path}_users_s"] = round(evaluate(rec, cases, batch_size=64, progress=False)["users_per_s"], 1)
        row["speedup"] = round(row["sdpa_users_s"] / row["before_users_s"], 2)
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def bench_int8(args) -> list[dict]:
    """Ranking fidelity of the faster precisions (int8 dynamic quantisation, bf16 autocast) against fp32."""
    from jepa4rec.evaluation import evaluate

    ds = scientific(args)
    cases = ds.test_cases()[: args.int8_users]
    rows, fp32 = [], None
    for precision in ("fp32", "int8", "bf16"):
        rec = minilm_recommender(ds, device="cpu", use_cache=False, precision="fp32" if precision == "int8" else precision)
        if precision == "int8":
            rec.quantize_int8()
        t = time.perf_counter()
        _ = rec.item_vectors
        items_s = ds.n_items / (time.perf_counter() - t)
        m = evaluate(rec, cases, progress=False)
        fp32 = fp32 or m
        row = {"precision": precision, "users": len(cases), "ndcg10": round(m["NDCG@10"], 4),
               "relative_change": round(m["NDCG@10"] / fp32["NDCG@10"] - 1, 4), "users_s": round(m["users_per_s"], 1),
               "catalogue_items_s": round(items_s, 1)}
        row["within_2pct"] = abs(row["relative_change"]) <= 0.02
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def bench_topk(args) -> list[dict]:
    import torch
    import torch.nn.functional as F

    from jepa4rec.ranking import ItemIndex

    ds = scientific(args)
    base = F.normalize(minilm_recommender(ds, device="cpu").item_vectors, dim=-1)
    g = torch.Generator().manual_seed(0)
    rows = []
    for n in args.topk_sizes:
        # Each synthetic item (and query): a real item vector plus Gaussian noise of norm --noise, renormalised.
        def synthetic(m: int) -> torch.Tensor:
            noise = torch.randn(m, base.shape[1], generator=g) / base.shape[1] ** 0.5
            return F.normalize(base[torch.randint(0, len(base), (m,), generator=g)] + args.noise * noise, dim=-1)

        items, queries = synthetic(n), synthetic(args.queries)
        exact = ItemIndex(items, method="exact")
        t = time.perf_counter()
        auto = ItemIndex(items, threads=torch.get_num_threads())
        build_s = time.perf_counter() - t
        row = {"items": n, "noise": args.noise, "method": auto.method, "nprobe": auto.nprobe, "build_s": round(build_s, 1)}
        truth = []
        for name, index in (("exact", exact), ("auto", auto)):
            lat, found = [], []
            for q in queries:
                t = time.perf_counter()
                _, ids = index.search(q, 10)
                lat.append((time.perf_counter() - t) * 1000)
                found.append(set(ids.tolist()))
            if name == "exact":
                truth = found
            row[f"{name}_p50_ms"] = round(float(np.percentile(lat, 50)), 2)
            row[f"{name}_p95_ms"] = round(float(np.percentile(lat, 95)), 2)
        row["recall_at_10"] = round(float(np.mean([len(a & b) / 10 for a, b in zip(found, truth)])), 4)
        print(json.dumps(row), flush=True)
        rows.append(row)
        del items, exact, auto
    return rows


def bench_reveal(args) -> dict:
    """A catalogue of ``--reveal-items`` items: Scientific's sentences, repeated with a number suffix."""
    from dataclasses import replace

    ds = scientific(args)
    reps = -(-args.reveal_items // ds.n_items)
    items = [{**it, "title": f"{it.get('title', '')} #{r}"} for r in range(reps) for it in ds.items][: args.reveal_items]
    big = replace(ds, items=items, item_keys=[f"{k}#{r}" for r in range(reps) for k in ds.item_keys][: args.reveal_items])
    rec = minilm_recommender(big, device="cpu", use_cache=False)
    t = time.perf_counter()
    _ = rec.unit_item_vectors
    encode_s = time.perf_counter() - t
    cases = ds.test_cases()
    rng = np.random.default_rng(0)
    times = []
    for u in rng.choice(len(cases), size=min(args.reveal_users, len(cases)), replace=False):
        case = cases[int(u)]
        rec.history_vector(case.history)  # encoded when the history is built, not on a slider move
        for reveal in (0.1, 0.3, 0.5, 0.7):
            t = time.perf_counter()
            rec.recommend(case.history, k=10, target=case.target, reveal=reveal)
            times.append((time.perf_counter() - t) * 1000)
    row = {"items": len(items), "precision": rec.precision, "moves": len(times), "p50_ms": round(float(np.percentile(times, 50)), 2),
           "p95_ms": round(float(np.percentile(times, 95)), 2), "catalogue_encoding_s": round(encode_s, 1)}
    print(json.dumps(row), flush=True)
    return row


@command
def main(argv=None) -> int:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="what to measure (default: all)")
    parser.add_threads_argument(default=2)
    parser.add_data_root_argument()
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per encoder measurement (median)")
    parser.add_argument("--batch-size", type=int, default=8, help="fine-tuning batch size")
    parser.add_argument("--finetune-batches", type=int, default=6, help="fine-tuning batches timed per path")
    parser.add_argument("--eval-users", type=int, default=1024, help="Scientific test users per evaluation (tiny)")
    parser.add_argument("--minilm-eval-users", type=int, default=96, help="Scientific test users per evaluation (MiniLM)")
    parser.add_argument("--int8-users", type=int, default=2000, help="Scientific test users for the int8 fidelity check")
    parser.add_argument("--topk-sizes", type=int, nargs="+", default=[100_000, 1_000_000], help="synthetic catalogue sizes")
    parser.add_argument("--noise", type=float, default=1.0,
                        help="norm of the noise added to real item vectors to make synthetic ones (1.0: as long as "
                             "the vector itself, so clusters overlap and a top 10 mixes several real items)")
    parser.add_argument("--queries", type=int, default=200, help="single queries timed per top-k measurement")
    parser.add_argument("--reveal-items", type=int, default=20_000, help="catalogue size of the slider benchmark")
    parser.add_argument("--reveal-users", type=int, default=50, help="users (4 slider moves each)")
    parser.add_argument("--out", default=str(RESULTS_DIR / "benchmark_encoder.json"),
                        help="JSON file the figures are written to")
    args = parser.parse_args(argv)

    import torch
    command = command_line("scripts/benchmark_encoder.py", argv)
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else {}  # parts measured earlier stay
    for part in args.parts:
        print(f"== {part}", flush=True)
        t = time.perf_counter()
        rows = globals()[f"bench_{part}"](args)
        results[part] = {"date": time.strftime("%Y-%m-%d"), "command": command, "threads": args.threads,
                         "torch": torch.__version__, "seconds": round(time.perf_counter() - t, 1), "results": rows}
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
