"""Labelled inputs: query/positive pairs (pairfiles.py reads them) and BEIR folders -> triples and an evaluation set.

Pairs: pairs with the same query text are one query (its positives and given negatives joined); queries
that share a text (their own or a positive) form one group, and whole groups go to train / val / test, so no
query or positive text is on two sides. Given negatives are kept, except one that is a text of another split
(dropped and counted: joining groups by negatives would merge most pairs into one group, since popular
passages are everyone's negative); mined ones fill up to --negatives, drawn from this split's texts only.

BEIR: the corpus is kept as it is (documents, not re-chunked, so numbers stay comparable with published
ones). Train queries make the triples; every other qrels split (dev, test, ...) is copied into eval/qrels,
less what evaluate would refuse (judgements of unknown ids or of queries without text; counted). val.jsonl
and eval/qrels/val.tsv come from dev when there is one, else from --val-fraction of the train queries
(grouped by shared query texts and relevant documents).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path

from ragtrain.config.prepare import PrepareConfig
from ragtrain.data.beir import document_text, read_beir
from ragtrain.data.documents import load_passages
from ragtrain.data.pairfiles import PairFields, read_pairs
from ragtrain.data.prepared import HELD_OUT, Prepared, held_out_queries
from ragtrain.data.readers import Fields
from ragtrain.data.splits import same_share, sample_by_passage, split_groups, text_groups
from ragtrain.errors import UserError
from ragtrain.retrieval.negatives import MiningOptions, mine_within


def triples_for(pairs: list[tuple[int, int]], query_texts: list[str], positives: list[tuple[int, ...]],
                given: Mapping[int, tuple[int, ...]], allowed: list[int], texts: list[str], doc_ids: list[str],
                mining: MiningOptions, counts: Counter) -> Iterator[dict]:
    """One triple per (query, positive) pair, made as it is written; given negatives (by query, if any) first, mined
    ones to fill up to --negatives (every positive of the query kept out of them)."""
    queries = list(dict.fromkeys(q for q, _ in pairs))
    mined = dict(zip(queries, mine_within(allowed, texts, doc_ids, [query_texts[q] for q in queries],
                                          [positives[q] for q in queries], mining, counts)))
    for q, p in pairs:
        negatives = [n for n in given.get(q, ()) if n not in positives[q]]
        negatives += [n for n in mined[q] if n not in negatives][: max(0, mining.num_negatives - len(negatives))]
        yield {"query": query_texts[q], "positive": texts[p], "negatives": [texts[n] for n in negatives]}


def capped_pairs(by_split: dict[str, list[int]], positives: list[tuple[int, ...]], limit: int, seed: int,
                 counts: Counter) -> dict[str, list[tuple[int, int]]]:
    """Each split's (query, positive) pairs, the triples it makes, under --max-triples `limit`: the pairs of a seeded
    sample of positives, val keeping the share train keeps."""
    pairs = {split: [(q, p) for q in by_split[split] for p in positives[q]] for split in ("train", "val")}
    limits = {"train": limit, "val": same_share(limit, len(pairs["train"]), len(pairs["val"]))}
    for split, split_pairs in pairs.items():
        kept = sample_by_passage([p for _, p in split_pairs], limits[split], seed)
        if len(kept) < len(split_pairs):
            counts[f"triples_left_out_by_max_triples_{split}"] += len(split_pairs) - len(kept)
            pairs[split] = [split_pairs[n] for n in kept]
    return pairs


# ------------------------------------------------------------------------------------------------- pairs
def merge_by_query(pairs: list[tuple[str, list[str], list[str]]]) -> list[tuple[str, list[str], list[str]]]:
    """One item per distinct query text, with the positives and given negatives of all its pairs (first seen
    first): two pairs with one query are one query with two answers, never one answer's false negative."""
    merged: dict[str, tuple[dict[str, None], dict[str, None]]] = {}
    for query, positives, negatives in pairs:
        kept_positives, kept_negatives = merged.setdefault(query, ({}, {}))
        kept_positives.update(dict.fromkeys(positives))
        kept_negatives.update(dict.fromkeys(negatives))
    return [(query, list(positives), [n for n in negatives if n not in positives])
            for query, (positives, negatives) in merged.items()]


def prepare_pairs(config: PrepareConfig, mining: MiningOptions, counts: Counter) -> Prepared:
    pairs, columns_line = read_pairs(config.pairs, PairFields.of(config))
    queries = merge_by_query(pairs)
    counts.update(pairs=len(pairs), pair_queries=len(queries))
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

    positives = [tuple(add(p) for p in pos) for _, pos, _ in queries]
    given = [tuple(add(n) for n in negs) for _, _, negs in queries]
    passages = load_passages(config.inputs, Fields.of(config), config.max_words, config.overlap, counts) if config.inputs else []
    for passage in passages:
        add(passage.text, passage.passage_id, passage.doc_id, passage.title)
    groups = [str(g) for g in text_groups([(q, *pos) for q, pos, _ in queries])]
    split_of = split_groups(groups, config.val_fraction, config.test_fraction, config.seed,
                            "groups of pairs (pairs that share a query or a passage are one group)")
    query_texts = [q for q, _, _ in queries]
    by_split = {s: [q for q, g in enumerate(groups) if split_of[g] == s] for s in ("train", "val", "test")}
    counts.update({f"pair_queries_{s}": len(chosen) for s, chosen in by_split.items()})
    pairs = capped_pairs(by_split, positives, config.triples_cap, config.seed, counts)
    triples = {}
    for split in ("train", "val"):
        # Every text (query or positive) of the other splits stays out of this split's triples: as a given
        # negative it is dropped and counted, and the miner never draws it.
        others = {text for s in by_split if s != split for q in by_split[s]
                  for text in (query_texts[q], *(texts[p] for p in positives[q]))}
        kept = {q: tuple(n for n in given[q] if texts[n] not in others) for q in by_split[split]}
        counts[f"given_negatives_dropped_{split}_other_split"] += sum(len(given[q]) - len(kept[q]) for q in kept)
        allowed = [i for i in range(len(texts)) if texts[i] not in others]
        triples[split] = triples_for(pairs[split], query_texts, positives, kept, allowed, texts, doc_ids, mining, counts)
    corpus = [{"_id": i, "title": t, "text": x} for i, t, x in zip(ids, titles, texts)]
    eval_queries, qrels = held_out_queries({split: [(query_texts[q], [ids[p] for p in positives[q]])
                                                    for q in by_split[split]] for split in HELD_OUT})
    return Prepared(triples["train"], triples["val"], corpus, eval_queries, qrels, notes=[columns_line])


# -------------------------------------------------------------------------------------------------- BEIR
def load_beir(directory: Path, counts: Counter):
    """Corpus, queries and qrels splits of a BEIR folder, cleaned so that what is written is what evaluate
    accepts: a repeated id keeps its first row; a query without text, a judgement naming an unknown id and a
    split left without a relevant judgement are dropped. Each is counted for the summary."""
    if not directory.is_dir():
        raise UserError(f"--beir {directory} not found; pass a BEIR folder (corpus.jsonl, queries.jsonl, "
                        "qrels/train.tsv)")
    for path in (directory / "corpus.jsonl", directory / "queries.jsonl", directory / "qrels" / "train.tsv"):
        if not path.is_file():
            raise UserError(f"{path} not found; --beir needs corpus.jsonl, queries.jsonl and qrels/train.tsv "
                            "(train qrels make the triples)")
    splits = [path.stem for path in sorted((directory / "qrels").glob("*.tsv"))]
    corpus, queries, judged = read_beir(directory, splits, counts)
    if not corpus:
        raise UserError(f"{directory / 'corpus.jsonl'} holds no documents; --beir needs a corpus to search")
    qrels = {}
    for split in splits:
        rows = _known_judgements(judged[split], queries, corpus, counts)
        if any(grade > 0 for docs in rows.values() for grade in docs.values()):
            qrels[split] = rows
        else:
            counts["qrels_splits_dropped_no_relevant_judgement"] += 1
    if "train" not in qrels:
        raise UserError(f"{directory / 'qrels' / 'train.tsv'} has no relevant judgement of a query with text and a "
                        "document in the corpus; --beir needs train qrels to make triples")
    return corpus, {q: text for q, text in queries.items() if text.strip()}, qrels


def _known_judgements(qrels: dict[str, dict[str, int]], queries: dict[str, str], corpus: dict,
                      counts: Counter) -> dict[str, dict[str, int]]:
    kept = {}
    for query_id, docs in qrels.items():
        if query_id not in queries or not queries[query_id].strip():
            reason = "unknown_query" if query_id not in queries else "query_without_text"
            counts[f"qrels_dropped_{reason}"] += len(docs)
            continue
        known = {doc_id: grade for doc_id, grade in docs.items() if doc_id in corpus}
        counts["qrels_dropped_unknown_document"] += len(docs) - len(known)
        if known:
            kept[query_id] = known
    return kept


def prepare_beir(config: PrepareConfig, mining: MiningOptions, counts: Counter) -> Prepared:
    corpus, query_text, qrels = load_beir(config.beir, counts)
    ids = list(corpus)
    texts = [document_text(doc) for doc in corpus.values()]  # as evaluate reads them
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
        groups = [str(g) for g in text_groups([(query_text[q], *(texts[p] for p in train[q])) for q in names])]
        split_of = split_groups(groups, config.val_fraction, 0.0, config.seed, "groups of train queries (queries that "
                                "share a text or a relevant document are one group)") if config.val_fraction else {}
        val = {q: train[q] for q, g in zip(names, groups) if split_of.get(g) == "val"}
        train = {q: pos for q, pos in train.items() if q not in val}
        qrels["val"] = {q: qrels["train"][q] for q in val}
    held_out = {p for split, rows in judged.items() if split != "train" for pos in rows.values() for p in pos}
    held_out |= {p for pos in val.values() for p in pos}
    train_docs = {p for pos in train.values() for p in pos}
    names = sorted(train) + sorted(val)  # train's queries, then val's: one index space for both
    query_texts = [query_text[q] for q in names]
    positives = [train[q] for q in sorted(train)] + [val[q] for q in sorted(val)]
    by_split = {"train": list(range(len(train))), "val": list(range(len(train), len(names)))}
    pairs = capped_pairs(by_split, positives, config.triples_cap, config.seed, counts)
    triples = {}
    for split in ("train", "val"):
        banned = held_out - train_docs if split == "train" else set()  # never train against eval answers
        allowed = [i for i in range(len(texts)) if i not in banned]
        triples[split] = triples_for(pairs[split], query_texts, positives, {}, allowed, texts, ids, mining, counts)
    eval_splits = {split: rows for split, rows in qrels.items() if split != "train"}
    eval_queries = sorted({q for rows in eval_splits.values() for q in rows})
    return Prepared(
        triples["train"], triples["val"],
        [{"_id": doc_id, **doc} for doc_id, doc in corpus.items()],
        [{"_id": q, "text": query_text[q]} for q in eval_queries],
        {split: [(q, d, s) for q, docs in sorted(rows.items()) for d, s in sorted(docs.items())]
         for split, rows in sorted(eval_splits.items())},
    )
