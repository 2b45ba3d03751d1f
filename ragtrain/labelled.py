"""Labelled inputs: query/positive pairs (JSONL) and BEIR folders -> triples and an evaluation set.

Pairs: queries that share a positive form one group, and whole groups go to train / val / test, so no
positive text is on both sides. Given negatives are kept; mined ones fill up to --negatives.

BEIR: the corpus is kept as it is (documents, not re-chunked, so numbers stay comparable with published
ones). Train queries make the triples; every other qrels split (dev, test, ...) is copied unchanged into
eval/qrels. val.jsonl and eval/qrels/val.tsv come from dev when there is one, else from --val-fraction of
the train queries (grouped by shared relevant documents).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from ragtrain.config import PrepareConfig
from ragtrain.errors import UserError
from ragtrain.fileio import read_jsonl
from ragtrain.negatives import mine_within
from ragtrain.prepare import Prepared, load_passages, mining_options, split_groups


def connected_groups(members: list[tuple[int, ...]]) -> list[int]:
    """For each item (a query with its positives), a group number; items sharing a positive share a group."""
    parent: dict[int, int] = {}

    def root(x: int) -> int:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for positives in members:
        for p in positives[1:]:
            parent[root(p)] = root(positives[0])
    return [root(positives[0]) for positives in members]


def triples_for(split_queries: list[int], query_texts: list[str], positives: list[tuple[int, ...]],
                given: list[tuple[int, ...]], allowed: list[int], texts: list[str], doc_ids: list[str],
                config: PrepareConfig, counts: Counter) -> list[dict]:
    """One triple per (query, positive); given negatives first, mined ones to fill up to --negatives."""
    mined = mine_within(allowed, texts, doc_ids, [query_texts[q] for q in split_queries],
                        [positives[q] for q in split_queries], mining_options(config), counts)
    rows = []
    for q, mined_negatives in zip(split_queries, mined):
        negatives = [n for n in given[q] if n not in positives[q]]
        negatives += [n for n in mined_negatives if n not in negatives][: max(0, config.negatives - len(negatives))]
        rows.extend({"query": query_texts[q], "positive": texts[p], "negatives": [texts[n] for n in negatives]}
                    for p in positives[q])
    return rows


# ------------------------------------------------------------------------------------------------- pairs
def read_pairs(path: Path) -> list[tuple[str, list[str], list[str]]]:
    pairs = []
    for number, row in enumerate(read_jsonl(path, "--pairs file"), start=1):
        positives = row.get("positives", [row["positive"]] if "positive" in row else [])
        negatives = row.get("negatives", [])
        if not isinstance(row.get("query"), str) or not row["query"].strip() or not isinstance(positives, list) \
                or not positives or not all(isinstance(p, str) and p.strip() for p in positives):
            raise UserError(f"{path}: pair {number} needs a 'query' and a 'positive' text (or a 'positives' list)")
        if not isinstance(negatives, list) or not all(isinstance(n, str) for n in negatives):
            raise UserError(f"{path}: pair {number}: 'negatives' must be a list of texts")
        pairs.append((row["query"], positives, [n for n in negatives if n.strip()]))
    if not pairs:
        raise UserError(f"{path} holds no pairs; each line needs 'query' and 'positive'")
    return pairs


def prepare_pairs(config: PrepareConfig, counts: Counter) -> Prepared:
    pairs = read_pairs(config.pairs)
    counts["pairs"] = len(pairs)
    texts: list[str] = []
    ids: list[str] = []
    doc_ids: list[str] = []
    titles: list[str] = []
    index: dict[str, int] = {}

    def add(text: str, passage_id: str | None = None, doc_id: str | None = None, title: str = "") -> int:
        if text not in index:
            index[text] = len(texts)
            texts.append(text)
            ids.append(passage_id or f"p{len(texts) - 1}")
            doc_ids.append(doc_id or ids[-1])  # a pair's text is its own document
            titles.append(title)
        return index[text]

    positives = [tuple(dict.fromkeys(add(p) for p in pos)) for _, pos, _ in pairs]
    given = [tuple(add(n) for n in negs) for _, _, negs in pairs]
    for passage in load_passages(config, counts) if config.inputs else []:
        add(passage.text, passage.passage_id, passage.doc_id, passage.title)
    groups = [str(g) for g in connected_groups(positives)]
    split_of = split_groups(groups, config.val_fraction, config.test_fraction, config.seed)
    query_texts = [q for q, _, _ in pairs]
    by_split = {s: [q for q, g in enumerate(groups) if split_of[g] == s] for s in ("train", "val", "test")}
    triples = {}
    for split in ("train", "val"):
        held_out = {p for s in by_split if s != split for q in by_split[s] for p in positives[q]}
        allowed = [i for i in range(len(texts)) if i not in held_out]
        triples[split] = triples_for(by_split[split], query_texts, positives, given, allowed, texts, doc_ids,
                                     config, counts)
    corpus = [{"_id": i, "title": t, "text": x} for i, t, x in zip(ids, titles, texts)]
    queries, qrels = [], {}
    for split in ("val", "test"):
        qrels[split] = []
        for n, q in enumerate(by_split[split]):
            queries.append({"_id": f"{split}-{n}", "text": query_texts[q]})
            qrels[split].extend((f"{split}-{n}", ids[p], 1) for p in positives[q])
    return Prepared(triples["train"], triples["val"], corpus, queries, qrels)


# -------------------------------------------------------------------------------------------------- BEIR
def read_beir(directory: Path):
    from ragtrain.evaluate import read_qrels  # late: it imports torch

    corpus = read_jsonl(directory / "corpus.jsonl", "BEIR corpus")
    queries = {str(q["_id"]): str(q.get("text", "")) for q in read_jsonl(directory / "queries.jsonl", "BEIR queries")}
    qrels = {path.stem: read_qrels(path) for path in sorted((directory / "qrels").glob("*.tsv"))}
    if "train" not in qrels:
        raise UserError(f"{directory / 'qrels' / 'train.tsv'} not found; --beir needs train qrels to make triples")
    missing = sorted(q for split in qrels.values() for q in split if q not in queries)
    if missing:
        raise UserError(f"{len(missing)} qrels query ids are not in {directory / 'queries.jsonl'} (e.g. {missing[0]!r})")
    return corpus, queries, qrels


def prepare_beir(config: PrepareConfig, counts: Counter) -> Prepared:
    corpus, query_text, qrels = read_beir(config.beir)
    ids = [str(doc["_id"]) for doc in corpus]
    texts = [f"{doc.get('title') or ''} {doc.get('text') or ''}".strip() for doc in corpus]  # as evaluate reads them
    position = {doc_id: i for i, doc_id in enumerate(ids)}
    judged = {split: {q: tuple(position[d] for d, s in sorted(docs.items()) if s > 0 and d in position)
                      for q, docs in sorted(rows.items())} for split, rows in qrels.items()}
    counts["documents"] = len(corpus)
    counts.update({f"beir_queries_{split}": len(rows) for split, rows in judged.items()})
    train = {q: pos for q, pos in judged["train"].items() if pos}
    if "dev" in judged:
        val = {q: pos for q, pos in judged["dev"].items() if pos}
        qrels["val"] = qrels["dev"]
    else:
        names = sorted(train)
        groups = [str(g) for g in connected_groups([train[q] for q in names])]
        split_of = split_groups(groups, config.val_fraction, 0.0, config.seed) if config.val_fraction else {}
        val = {q: train[q] for q, g in zip(names, groups) if split_of.get(g) == "val"}
        train = {q: pos for q, pos in train.items() if q not in val}
        qrels["val"] = {q: qrels["train"][q] for q in val}
    held_out = {p for split, rows in judged.items() if split != "train" for pos in rows.values() for p in pos}
    held_out |= {p for pos in val.values() for p in pos}
    train_docs = {p for pos in train.values() for p in pos}
    triples = {}
    for split, chosen in (("train", train), ("val", val)):
        banned = held_out - train_docs if split == "train" else set()  # never train against eval answers
        allowed = [i for i in range(len(texts)) if i not in banned]
        names = sorted(chosen)
        triples[split] = triples_for(list(range(len(names))), [query_text[q] for q in names],
                                     [chosen[q] for q in names], [()] * len(names), allowed, texts, ids,
                                     config, counts)
    eval_splits = {split: rows for split, rows in qrels.items() if split != "train"}
    eval_queries = sorted({q for rows in eval_splits.values() for q in rows})
    return Prepared(
        triples["train"], triples["val"],
        [{"_id": ids[i], "title": doc.get("title") or "", "text": doc.get("text") or ""} for i, doc in enumerate(corpus)],
        [{"_id": q, "text": query_text[q]} for q in eval_queries],
        {split: [(q, d, s) for q, docs in sorted(rows.items()) for d, s in sorted(docs.items())]
         for split, rows in sorted(eval_splits.items())},
    )
