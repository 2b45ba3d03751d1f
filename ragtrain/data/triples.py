"""Training triples: reading, tokenising once, length-grouped batches, the false-negative mask, collation."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

import torch

from ragtrain.errors import UserError
from ragtrain.files.jsonfiles import open_for_reading, read_json, read_numbered_jsonl
from ragtrain.model.encoder import Encoder
from ragtrain.model.encoding import pad, tokenize_documents, tokenize_queries

GROUP_FACTOR = 50  # batches per length-sorted group: large enough to cut padding, small enough to stay random
EPOCH_SEED_STRIDE = 100_003  # a prime above any epoch count: each (seed, epoch) gives its own shuffle
SNIFF_BYTES = 4096  # read to tell a JSON array ('[' after any BOM or blank space) from JSON lines


@dataclass(frozen=True)
class Triple:
    query: str
    positive: str
    negatives: tuple[str, ...]
    scores: tuple[float, ...] | None = None  # a teacher's score of the positive, then of each negative


@dataclass(frozen=True)
class TokenizedTriples:
    """Token ids (no padding) of every triple; texts are tokenised once, before the loop."""

    queries: list[list[int]]
    positives: list[list[int]]
    negatives: list[list[list[int]]]
    query_texts: list[str]
    positive_texts: list[str]
    negative_texts: list[tuple[str, ...]]
    scores: list[tuple[float, ...] | None] | None = None  # teacher scores per triple (positive, then negatives)
    max_length: int | None = None  # the tokens per text they were cut at

    def __len__(self) -> int:
        return len(self.queries)

    def longest_doc(self, i: int) -> int:
        return max([len(self.positives[i]), *(len(n) for n in self.negatives[i])])


def load_triples(path: Path, require_scores: bool = False) -> list[Triple]:
    """JSONL of {"query", "positive", "negatives"} and optional "scores" (teacher scores: the positive's, then each
    negative's); the older JSON array with "negative" is read too. `require_scores`: a triple without is an error."""
    if not path.is_file():
        raise UserError(f"train file {path} not found; run 'ragtrain prepare-data' first")
    with open_for_reading(path) as handle:
        head = handle.read(SNIFF_BYTES).decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")  # not the whole file
    numbered = list(enumerate(_read_json_array(path), start=1)) if head.startswith("[") else read_numbered_jsonl(path, "train file")
    if not numbered:
        raise UserError(f"{path} holds no triples; run 'ragtrain prepare-data' or check the file")
    return [_triple_from_row(row, f"{path}:{number}", require_scores) for number, row in numbered]


def _read_json_array(path: Path) -> list[dict]:
    rows = read_json(path)
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise UserError(f"{path}: expected a JSON array of objects with query/positive/negative")
    return rows


def _triple_from_row(row: dict, where: str, require_scores: bool = False) -> Triple:
    query, positive = row.get("query"), row.get("positive")
    if not isinstance(query, str) or not query.strip():
        raise UserError(f"{where}: no 'query' text; each triple needs query, positive and negatives")
    if not isinstance(positive, str) or not positive.strip():
        raise UserError(f"{where}: no 'positive' text; each triple needs query, positive and negatives")
    negatives = row.get("negatives", row.get("negative", []))
    if isinstance(negatives, str):
        negatives = [negatives]
    if not isinstance(negatives, list) or not all(isinstance(n, str) for n in negatives):
        raise UserError(f"{where}: 'negatives' must be a list of strings")
    scores = _teacher_scores(row.get("scores"), len(negatives), where, require_scores)
    # A negative equal to the positive would be a false negative: drop it (and repeats), and its score.
    kept: dict[str, float | None] = {}
    for n, negative in enumerate(negatives):
        if negative.strip() and negative != positive and negative not in kept:
            kept[negative] = scores[1 + n] if scores else None
    kept_scores = (scores[0], *kept.values()) if scores else None
    return Triple(query, positive, tuple(kept), kept_scores)


def _teacher_scores(scores, negatives: int, where: str, required: bool) -> tuple[float, ...] | None:
    """A triple's 'scores' checked: 1 + `negatives` finite numbers; None when absent (an error if `required`)."""
    if scores is None:
        if required:
            raise UserError(f"{where}: no 'scores' (teacher scores), which --loss distill learns from; make the "
                            "triples with 'ragtrain prepare-data --teacher hybrid' (or a cross-encoder) or use --loss infonce")
        return None
    if not isinstance(scores, list) or len(scores) != 1 + negatives or not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in scores):
        raise UserError(f"{where}: 'scores' must be a list of {1 + negatives} finite numbers (the positive's score, then "
                        "each negative's)")
    return tuple(float(x) for x in scores)


def tokenize_triples(triples: list[Triple], encoder: Encoder) -> TokenizedTriples:
    """Tokenise every distinct text once, as the model reads it when searching (encoding.tokenize_queries and
    tokenize_documents: its prompts, its length, special tokens added)."""
    queries = sorted({t.query for t in triples})
    docs = sorted({t.positive for t in triples} | {n for t in triples for n in t.negatives})
    query_ids = dict(zip(queries, tokenize_queries(encoder, queries)))
    doc_ids = dict(zip(docs, tokenize_documents(encoder, docs)))
    return TokenizedTriples(
        queries=[query_ids[t.query] for t in triples],
        positives=[doc_ids[t.positive] for t in triples],
        negatives=[[doc_ids[n] for n in t.negatives] for t in triples],
        query_texts=[t.query for t in triples],
        positive_texts=[t.positive for t in triples],
        negative_texts=[t.negatives for t in triples],
        scores=[t.scores for t in triples],
        max_length=encoder.settings.max_length,
    )


def require_distinct_passages(data: TokenizedTriples, path: Path) -> None:
    """At least two different passages (as token ids): with one, every other candidate is masked as a repeat of
    the positive, the loss is zero and the run would "succeed" without learning anything."""
    passages = {tuple(ids) for ids in data.positives} | {tuple(ids) for negs in data.negatives for ids in negs}
    if len(passages) < 2:
        raise UserError(f"{path} holds a single distinct passage (at --max-seq-length "
                        f"{data.max_length}), so there is nothing to contrast it with; add triples with other "
                        "positives or negatives")


def epoch_batches(data: TokenizedTriples, batch_size: int, seed: int, epoch: int, group_by_length: bool = True) -> list[list[int]]:
    """The global batches of one epoch: a pure function of (seed, epoch), so resume can recompute them.

    Triples are shuffled, cut into chunks of GROUP_FACTOR batches, sorted by length inside each chunk
    (little padding, yet each batch is still a random draw of similar-length triples), cut into batches,
    and the batch order shuffled again. Every triple appears exactly once per epoch, and every batch holds
    `batch_size` triples but one (the rest of the last chunk): ceil(n / batch_size) batches in every epoch.
    A passage may repeat within a batch; the loss masks it out where it would be a false negative
    (`false_negative_mask`), so no triple has to wait for another batch.
    """
    rng = random.Random(seed * EPOCH_SEED_STRIDE + epoch)
    order = list(range(len(data)))
    rng.shuffle(order)
    group = batch_size * GROUP_FACTOR if group_by_length else len(order)
    batches: list[list[int]] = []
    for start in range(0, len(order), group):
        chunk = order[start : start + group]
        if group_by_length:
            chunk.sort(key=lambda i: (data.longest_doc(i), len(data.queries[i])))
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def false_negative_mask(data: TokenizedTriples, batch: list[int]) -> torch.Tensor:
    """(B, B + N) bool over collate's document layout: True where a document is a known positive of the
    query but not its own positive's column, so the loss leaves it out of that query's softmax.

    A query's known positives are the positives of every triple in the batch with the same query. Texts
    are compared as token ids, so whitespace or case variants that tokenize the same count as one passage.
    Query i's own column i is never masked.
    """
    ids: dict[tuple[int, ...], int] = {}
    docs = [data.positives[i] for i in batch] + [n for i in batch for n in data.negatives[i]]
    doc_keys = torch.tensor([ids.setdefault(tuple(d), len(ids)) for d in docs], dtype=torch.long)  # (B + N,)
    query_keys = torch.tensor([ids.setdefault(tuple(data.queries[i]), len(ids)) for i in batch], dtype=torch.long)  # (B,)
    size = len(batch)
    same_query = query_keys[:, None] == query_keys[None, :]  # (B, B): triple l asks what triple i asks
    is_positive_of = doc_keys[None, :] == doc_keys[:size, None]  # (B, B + N): document c is triple l's positive
    known = (same_query.float() @ is_positive_of.float()) > 0  # (B, B + N): c is a positive of some l asking i's query
    own = torch.zeros_like(known)
    own[:, :size] = torch.eye(size, dtype=torch.bool)
    return known & ~own


def micro_batches(batch: list[int], count: int) -> list[list[int]]:
    """Split a global batch into `count` near-equal consecutive micro-batches (gradient accumulation)."""
    size = -(-len(batch) // count)
    return [batch[i : i + size] for i in range(0, len(batch), size)]


def collate(data: TokenizedTriples, batch: list[int], pad_id: int) -> tuple[dict, dict]:
    """Queries (B, Lq) and documents (B + N, Ld): the B positives first, then every hard negative of the batch."""
    queries = pad([data.queries[i] for i in batch], pad_id)
    docs = [data.positives[i] for i in batch] + [n for i in batch for n in data.negatives[i]]
    return queries, pad(docs, pad_id)


def distill_targets(data: TokenizedTriples, batch: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each triple's candidates over collate's document layout, for --loss distill: (candidates, valid, teacher),
    each (B, 1 + N) with N the most negatives of a triple in the batch. candidates: row indices into the
    documents (positive i at row i, then its negatives where collate puts them; padding points at row i);
    valid: False on padding; teacher: the triples' scores (0 on padding)."""
    size = len(batch)
    width = 1 + max(len(data.negatives[i]) for i in batch)
    candidates = torch.arange(size).unsqueeze(1).repeat(1, width)  # (B, 1 + N)
    valid = torch.zeros(size, width, dtype=torch.bool)
    teacher = torch.zeros(size, width)
    start = size  # the first negative's row: collate puts every positive first
    for row, i in enumerate(batch):
        count = len(data.negatives[i])
        candidates[row, 1 : 1 + count] = torch.arange(start, start + count)
        valid[row, : 1 + count] = True
        teacher[row, : 1 + count] = torch.tensor(data.scores[i])
        start += count
    return candidates, valid, teacher
