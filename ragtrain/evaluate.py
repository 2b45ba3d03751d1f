"""Embed a corpus and queries, search exact top-k, score with metrics, and report models side by side."""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from ragtrain.config import EvaluateConfig, as_dict
from ragtrain.data import pad
from ragtrain.errors import UserError
from ragtrain.fileio import atomic_write_json, read_jsonl
from ragtrain.metrics import mean_metrics
from ragtrain.model import Encoder, load_encoder
from ragtrain.negatives import bm25_search, build_bm25
from ragtrain.runtime import resolve_device

SEARCH_CHUNK = 1024  # queries scored against the corpus at once: bounds the (queries x corpus) matrix


@dataclass(frozen=True)
class EvalData:
    corpus_ids: list[str]
    corpus_texts: list[str]
    query_ids: list[str]
    query_texts: list[str]
    qrels: dict[str, dict[str, int]]


def load_eval_data(directory: Path, split: str) -> EvalData:
    """A BEIR-layout directory: corpus.jsonl, queries.jsonl, qrels/<split>.tsv."""
    qrels_path = directory / "qrels" / f"{split}.tsv"
    for path in (directory / "corpus.jsonl", directory / "queries.jsonl", qrels_path):
        if not path.is_file():
            raise UserError(f"{path} not found; --eval-data must be a BEIR directory (corpus.jsonl, queries.jsonl, "
                            f"qrels/{split}.tsv) such as the eval/ folder from 'ragtrain prepare-data'")
    corpus = read_jsonl(directory / "corpus.jsonl", "corpus")
    qrels = read_qrels(qrels_path)
    if not qrels:
        raise UserError(f"{qrels_path} has no judgements; choose another --split")
    queries = {str(q["_id"]): str(q.get("text", "")) for q in read_jsonl(directory / "queries.jsonl", "queries")}
    corpus_ids = [str(doc["_id"]) for doc in corpus]
    missing_queries = [q for q in qrels if q not in queries]
    known_docs = set(corpus_ids)
    missing_docs = sorted({d for judged in qrels.values() for d in judged if d not in known_docs})
    if missing_queries:
        raise UserError(f"{len(missing_queries)} query ids in {qrels_path} are not in queries.jsonl "
                        f"(e.g. {missing_queries[0]!r}); fix the qrels or the queries")
    if missing_docs:
        raise UserError(f"{len(missing_docs)} corpus ids in {qrels_path} are not in corpus.jsonl "
                        f"(e.g. {missing_docs[0]!r}); fix the qrels or the corpus")
    query_ids = sorted(qrels)
    return EvalData(
        corpus_ids=corpus_ids,
        corpus_texts=[(f"{doc.get('title') or ''} {doc.get('text') or ''}").strip() for doc in corpus],
        query_ids=query_ids,
        query_texts=[queries[q] for q in query_ids],
        qrels=qrels,
    )


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8") as handle:
        for line_number, row in enumerate(csv.reader(handle, delimiter="\t"), start=1):
            if not row or (line_number == 1 and row[0] == "query-id"):
                continue
            if len(row) < 3:
                raise UserError(f"{path}:{line_number}: expected 'query-id<TAB>corpus-id<TAB>score'")
            try:
                qrels.setdefault(row[0], {})[row[1]] = int(float(row[2]))
            except ValueError:
                raise UserError(f"{path}:{line_number}: score {row[2]!r} is not a number") from None
    return qrels


@torch.no_grad()
def embed_texts(encoder: Encoder, tokenizer, texts: list[str], batch_size: int, max_length: int,
                device: torch.device, desc: str) -> torch.Tensor:
    """(len(texts), dim) embeddings; texts are encoded longest first so each batch pads little."""
    encoder.eval()
    token_ids = tokenizer(texts, truncation=True, max_length=max_length, padding=False)["input_ids"]
    order = sorted(range(len(texts)), key=lambda i: -len(token_ids[i]))
    pad_id = tokenizer.pad_token_id or 0
    out: list[torch.Tensor] = [torch.empty(0)] * len(texts)
    for start in tqdm(range(0, len(order), batch_size), desc=desc, unit="batch", leave=False):
        index = order[start : start + batch_size]
        batch = {k: v.to(device) for k, v in pad([token_ids[i] for i in index], pad_id).items()}
        for i, emb in zip(index, encoder(**batch).float().cpu()):
            out[i] = emb
    return torch.stack(out)


def dense_rankings(query_emb: torch.Tensor, corpus_emb: torch.Tensor, depth: int) -> np.ndarray:
    """Top-`depth` corpus indices per query by dot product (cosine for normalised models), in chunks."""
    depth = min(depth, corpus_emb.size(0))
    rows = []
    for start in range(0, query_emb.size(0), SEARCH_CHUNK):
        scores = query_emb[start : start + SEARCH_CHUNK] @ corpus_emb.T  # (chunk, corpus)
        rows.append(torch.topk(scores, depth, dim=1).indices.numpy())
    return np.concatenate(rows) if rows else np.zeros((0, depth), dtype=np.int64)


def rank_with_model(model: str, data: EvalData, config: EvaluateConfig, device: torch.device) -> np.ndarray:
    depth = max(config.k_values)
    if model == "bm25":
        indices, _ = bm25_search(build_bm25(data.corpus_texts), data.query_texts, depth)
        return indices
    encoder, tokenizer = load_encoder(model)
    encoder.to(device)
    corpus_emb = embed_texts(encoder, tokenizer, data.corpus_texts, config.batch_size, config.max_seq_length, device, "corpus")
    query_emb = embed_texts(encoder, tokenizer, data.query_texts, config.batch_size, config.max_seq_length, device, "queries")
    return dense_rankings(query_emb, corpus_emb, depth)


def evaluate(config: EvaluateConfig, console: Console | None = None) -> dict:
    config.validate()
    console = console or Console()
    device = resolve_device(config.device)
    data = load_eval_data(config.eval_data, config.split)
    results = {"settings": as_dict(config), "queries": len(data.query_ids), "corpus": len(data.corpus_ids), "models": {}}
    for model in config.models:
        started = time.perf_counter()
        ranked = rank_with_model(model, data, config, device)
        rankings = {q: [data.corpus_ids[i] for i in row] for q, row in zip(data.query_ids, ranked)}
        results["models"][model] = {"metrics": mean_metrics(rankings, data.qrels, config.k_values),
                                    "seconds": time.perf_counter() - started}
    console.print(results_table(results, config.k_values))
    if config.output:
        atomic_write_json(config.output, results)
    return results


def results_table(results: dict, k_values: tuple[int, ...]) -> Table:
    columns = [f"recall@{k}" for k in k_values] + [f"ndcg@{k}" for k in k_values if k == 10 or len(k_values) == 1]
    table = Table(title=f"Retrieval on {results['queries']} queries, {results['corpus']} documents")
    table.add_column("model")
    for column in columns:
        table.add_column(column, justify="right")
    base = None
    for model, result in results["models"].items():
        values = [result["metrics"][c] for c in columns]
        cells = [f"{v:.4f}" if base is None else f"{v:.4f} ({v - b:+.4f})" for v, b in zip(values, base or values)]
        table.add_row(model, *cells)
        base = base or values
    return table
