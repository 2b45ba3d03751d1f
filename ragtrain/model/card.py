"""A model card (README.md, in the Hugging Face model-card format) for every model directory train saves (best/,
final/), and `evaluate --update-card` adding its results to it.

The card holds YAML front matter (library_name, pipeline_tag, base_model, tags) and: the base model, the data
(triple counts, and the sha256 of prepare-data's manifest.json when it lies beside the training file), the training
options, a summary of the validation curve, evaluation results when known, and how to load the model with
sentence-transformers and with transformers alone (its pooling, head and normalisation written out). Evaluation
results live in the model directory's evaluation.json; the card's evaluation section is drawn from it between two
markers, so updating it rewrites that section alone.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ragtrain.files.atomic import atomic_write_json, atomic_write_text
from ragtrain.files.names import CARD, EVALUATIONS, MANIFEST
from ragtrain.version import VERSION

BEGIN, END = "<!-- ragtrain:evaluation-begin -->", "<!-- ragtrain:evaluation-end -->"
TAGS = ["sentence-transformers", "sentence-similarity", "feature-extraction", "retrieval", "ragtrain"]
CURVE_ROWS = 12  # validations shown in the card; a longer curve is thinned, keeping the first, best and last
SHOWN_METRICS = ("ndcg@10", "recall@10", "mrr@10", "map@100", "recall@100")  # evaluation columns, when measured


@dataclass(frozen=True)
class CardData:
    """What a card says about one saved model."""

    name: str  # e.g. "scifact-8e-5/best": the run's folder and this model's, wherever the command ran
    base_model: str
    pooling: str
    normalize: bool
    output_dim: int | None
    max_seq_length: int
    saved_as: str = ""  # which model of the run this is, and why
    options: dict = field(default_factory=dict)  # the run's options as config.json holds them
    data: dict = field(default_factory=dict)  # counts and hashes, by name
    validation: list[dict] = field(default_factory=list)  # metrics.jsonl's validation rows
    selection_metric: str | None = None
    evaluations: list[dict] = field(default_factory=list)  # evaluation.json's entries
    query_prompt: str | None = None  # put before every query, as training did
    document_prompt: str | None = None
    license: str | None = None  # the base model's, when its own files say (base_model_license)
    datasets: list[str] = field(default_factory=list)  # what it was trained on, when prepare-data's manifest says
    validation_precision: str = "fp32"  # what the validation figures were encoded in


def model_card(card: CardData) -> str:
    """The README.md text."""
    sections = [front_matter(card), f"# {card.name}", _about(card), _data_section(card.data),
                _options_section(card.options),
                validation_section(card.validation, card.selection_metric, card.validation_precision),
                evaluation_section(card.evaluations), usage_section(card)]
    return "\n\n".join(s for s in sections if s) + "\n"


def front_matter(card: CardData) -> str:
    meta = {"library_name": "sentence-transformers", "pipeline_tag": "sentence-similarity",
            "base_model": card.base_model, **({"license": card.license} if card.license else {}),
            **({"datasets": card.datasets} if card.datasets else {}), "tags": TAGS}
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---"


def _about(card: CardData) -> str:
    head = f", then a linear head to {card.output_dim} dimensions" if card.output_dim else ""
    norm = ", L2-normalised (compare by cosine)" if card.normalize else ", not normalised (compare by dot product)"
    lines = [f"A text-embedding model for retrieval, fine-tuned from `{card.base_model}` with ragtrain {VERSION}"
             " (contrastive InfoNCE on query/passage triples).", "",
             f"Embeddings: {card.pooling} pooling of the token states{head}{norm}; texts are cut at "
             f"{card.max_seq_length} tokens."]
    if card.saved_as:
        lines += ["", f"This directory is {card.saved_as}."]
    return "\n".join(lines)


def _data_section(data: dict) -> str:
    if not data:
        return ""
    rows = "\n".join(f"| {name} | {value} |" for name, value in data.items())
    return f"## Training data\n\n| | |\n|---|---|\n{rows}"


def _options_section(options: dict) -> str:
    if not options:
        return ""
    rows = "\n".join(f"| `{name}` | `{json.dumps(value)}` |" for name, value in options.items())
    return f"## Training options\n\n<details><summary>every option of the run (config.json)</summary>\n\n" \
           f"| option | value |\n|---|---|\n{rows}\n\n</details>"


def curve_rows(rows: list[dict], metric: str | None, limit: int = CURVE_ROWS) -> list[dict]:
    """At most `limit` validation rows, evenly spread, always keeping the first, the best and the last."""
    if len(rows) <= limit:
        return rows
    keep = {0, len(rows) - 1}
    if metric and any(metric in r for r in rows):
        scored = [i for i, r in enumerate(rows) if metric in r]
        pick = min if metric.endswith("loss") else max
        keep.add(pick(scored, key=lambda i: rows[i][metric]))
    spread = [round(i * (len(rows) - 1) / (limit - 1)) for i in range(limit)]
    for index in spread:
        if len(keep) >= limit:
            break
        keep.add(index)
    return [rows[i] for i in sorted(keep)]


def validation_section(rows: list[dict], metric: str | None, precision: str = "fp32") -> str:
    """The validation curve: a table of step and each figure, the change from step 0 to the best, and the precision
    the texts were encoded in."""
    if not rows:
        return ""
    names = [k for k in rows[0] if k not in ("step", "epoch")]
    table = [f"| step | {' | '.join(names)} |", "|---:|" + "---:|" * len(names)]
    for row in curve_rows(rows, metric):
        table.append(f"| {row['step']} | " + " | ".join(_number(row.get(n)) for n in names) + " |")
    summary = ""
    scored = [r for r in rows if metric and metric in r]
    if scored:
        pick = min if metric.endswith("loss") else max
        best = pick(scored, key=lambda r: r[metric])
        summary = (f"\n\n{metric} went from {_number(scored[0][metric])} at step {scored[0]['step']} to "
                   f"{_number(best[metric])} at its best (step {best['step']}); "
                   f"{_number(scored[-1][metric])} at the last validation (step {scored[-1]['step']}).")
    return "## Validation\n\n" + "\n".join(table) + summary + f"\n\nTexts encoded in {precision} for these figures."


def evaluation_section(entries: list[dict]) -> str:
    """Between the markers: one row per evaluation set and split, with the change against the reference model."""
    body = "No evaluation recorded yet: `ragtrain evaluate MODEL --eval-data DIR --update-card` adds one."
    if entries:
        names = [m for m in SHOWN_METRICS if any(m in e["metrics"] for e in entries)]
        table = [f"| evaluation set | split | queries | encoded in | {' | '.join(names)} | compared with |",
                 "|---|---|---:|---|" + "---:|" * len(names) + "---|"]
        for e in entries:
            cells = []
            for name in names:
                value, ref = e["metrics"].get(name), (e.get("reference_metrics") or {}).get(name)
                cells.append(_number(value) + (f" ({value - ref:+.4f})" if value is not None and ref is not None else ""))
            table.append(f"| {e['eval_data']} | {e['split']} | {e['queries']} | {e.get('precision') or ''} | "
                         f"{' | '.join(cells)} | {e.get('reference') or ''} |")
        body = "\n".join(table) + "\n\nIn brackets: the change against the model in the last column, measured in " \
                                  "the same run of `ragtrain evaluate`; 'encoded in': the precision of the embeddings " \
                                  "(evaluate --precision)."
    return f"## Evaluation results\n\n{BEGIN}\n{body}\n{END}"


def usage_section(card: CardData) -> str:
    st = (f"```python\nfrom sentence_transformers import SentenceTransformer\n\n"
          f"model = SentenceTransformer(\"{card.name}\")  # this folder's path, or its name on the Hub\n"
          f"queries = model.encode_query([\"how warm should sourdough proof?\"])  # adds the query prompt, if any\n"
          f"passages = model.encode_document([\"Sourdough proofs best at 24-26 C\"])\n"
          f"print(model.similarity(queries, passages))\n```")
    return f"## How to use it\n\nWith sentence-transformers:\n\n{st}\n\nWith transformers alone " \
           f"({card.pooling} pooling{', the linear head in 2_Dense/' if card.output_dim else ''}" \
           f"{', L2 normalisation' if card.normalize else ''}):\n\n```python\n{transformers_snippet(card)}```"


# Each pooling mode (encoder.pool, as sentence-transformers' Pooling computes it) as the card's recipe writes it.
_MASK = "mask = batch[\"attention_mask\"].unsqueeze(-1).float()\n"
POOLING_CODE = {
    "mean": _MASK + "emb = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # mean over real tokens",
    "cls": "emb = states[:, 0]  # the first ([CLS]) token",
    "last": "mask = batch[\"attention_mask\"]\n"
            "last = mask.size(1) - 1 - mask.flip(1).argmax(1)  # the last real token, left or right padding\n"
            "emb = states[torch.arange(states.size(0)), last]",
    "max": _MASK + "emb = states.masked_fill(mask == 0, float(\"-inf\")).max(1).values  # each dimension's largest "
                   "value over real tokens",
    "mean_sqrt_len": _MASK + "emb = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9).sqrt()  # the sum over real "
                             "tokens / sqrt(their count)",
    "weightedmean": _MASK + "weights = mask * torch.arange(1, mask.size(1) + 1).view(1, -1, 1)  # token i weighs i "
                            "(right padding)\nemb = (states * weights).sum(1) / weights.sum(1).clamp(min=1e-9)",
}


def transformers_snippet(card: CardData) -> str:
    """Python that embeds texts the way this model was trained to, with transformers and torch only."""
    pool = POOLING_CODE[card.pooling]
    lines = ["import torch", "from transformers import AutoModel, AutoTokenizer"]
    if card.output_dim:
        lines.append("from safetensors.torch import load_file")
    lines += ["", f"path = \"{card.name}\"", "tokenizer = AutoTokenizer.from_pretrained(path)",
              "model = AutoModel.from_pretrained(path).eval()",
              *(["tokenizer.padding_side = \"right\"  # positions count from each text's first token"]
                if card.pooling in ("last", "weightedmean") else [])]
    if card.output_dim:
        lines += ["head = load_file(f\"{path}/2_Dense/model.safetensors\")  # linear.weight, linear.bias"]
    prompt = f"{card.query_prompt!r} + " if card.query_prompt else ""
    if card.document_prompt:
        lines.append(f"# passages: put {card.document_prompt!r} before each, as training did")
    lines += [f"texts = [{prompt}\"how warm should sourdough proof?\"]  # a query",
              f"batch = tokenizer(texts, padding=True, truncation=True, max_length={card.max_seq_length}, "
              "return_tensors=\"pt\")",
              "with torch.no_grad():", "    states = model(**batch).last_hidden_state  # (texts, tokens, hidden)"]
    lines += ["    " + line for line in pool.splitlines()]
    if card.output_dim:
        lines.append("    emb = emb @ head[\"linear.weight\"].T + head.get(\"linear.bias\", 0)")
    if card.normalize:
        lines.append("    emb = torch.nn.functional.normalize(emb, dim=-1)")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------ what train knows
def run_data(train_data: Path, triples: int, val_triples: int | None, train_sha256: str | None = None,
             in_words: Callable[[dict], list[tuple[str, int]]] | None = None) -> dict:
    """The card's data table: the training file (and its sha256), its counts, and prepare-data's manifest when
    beside it, with whether the manifest lists this very file. `in_words`: the manifest's counts as (label, count)
    rows in the order to show them (data.counts.counts_in_words); default their keys."""
    data = {"training file": f"`{train_data.name}`", "training triples": f"{triples:,}"}
    if train_sha256:
        data["training file sha256"] = f"`{train_sha256}`"
    if val_triples is not None:
        data["validation triples"] = f"{val_triples:,}"
    manifest = train_data.parent / MANIFEST
    if manifest.is_file():
        data["prepare-data manifest sha256"] = f"`{hashlib.sha256(manifest.read_bytes()).hexdigest()}`"
        try:
            record = json.loads(manifest.read_text(encoding="utf-8"))
        except ValueError:
            record = {}
        record = record if isinstance(record, dict) else {}
        listed = (record.get("sha256") or {}).get(train_data.name) if isinstance(record.get("sha256"), dict) else None
        if train_sha256:
            data["training file in the manifest"] = ("yes, the same sha256" if listed == train_sha256 else
                                                     "no: not one of its outputs" if listed is None else
                                                     "no: changed since (its sha256 differs)")
        counts = record.get("counts", {})
        counts = {k: v for k, v in counts.items() if isinstance(v, int)} if isinstance(counts, dict) else {}
        rows = in_words(counts) if in_words else [(name.replace("_", " "), value) for name, value in counts.items()]
        for label, value in rows:
            data[f"prepare-data: {label}"] = f"{value:,}"
    return data


def base_model_license(model_dir: str) -> str | None:
    """The license a base model states: its card's front matter (README.md), else its config.json's 'license';
    for a Hub name, the files of its cached copy. None when nothing says (nothing is fetched)."""
    path = Path(model_dir)
    if not path.is_dir():
        from huggingface_hub import try_to_load_from_cache  # a Hub name: its cached card, if any

        try:
            cached = try_to_load_from_cache(model_dir, CARD)
        except ValueError:  # not a valid Hub name either
            cached = None
        path = Path(cached).parent if isinstance(cached, str) else path
    text = (path / CARD).read_text(encoding="utf-8", errors="replace") if (path / CARD).is_file() else ""
    if text.startswith("---\n") and "\n---" in text[4:]:
        try:
            meta = yaml.safe_load(text[4:text.index("\n---", 4)])
        except yaml.YAMLError:
            meta = None
        if isinstance(meta, dict) and isinstance(meta.get("license"), str):
            return meta["license"]
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return config.get("license") if isinstance(config, dict) and isinstance(config.get("license"), str) else None


def training_data_names(train_data: Path) -> list[str]:
    """What the triples were made from, by name, as prepare-data's manifest beside them records it: the BEIR
    folder's name, the pairs file's or dataset's, the document inputs'. [] without a readable manifest."""
    try:
        record = json.loads((train_data.parent / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    options = record.get("options", {}) if isinstance(record, dict) else {}
    options = options if isinstance(options, dict) else {}
    sources = [options.get("beir") or options.get("pairs")] if options.get("beir") or options.get("pairs") else []
    sources += record.get("inputs", []) if isinstance(record.get("inputs"), list) else []
    return list(dict.fromkeys(Path(str(source)).stem for source in sources if source))


def validation_rows(metrics_log: Path) -> list[dict]:
    """The validation rows of a run's metrics.jsonl (those without a training loss), in order."""
    if not metrics_log.is_file():
        return []
    rows = []
    for line in metrics_log.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a line a kill cut short
        if isinstance(row, dict) and "loss" not in row and "step" in row:
            rows.append(row)
    return rows


# -------------------------------------------------------------------------------------------- evaluate --update-card
def add_evaluation(model_dir: Path, entry: dict) -> None:
    """Record `entry` in the model's evaluation.json (replacing an earlier one of the same set, split and
    length) and redraw the card's evaluation section; a card without one gets it appended. Both writes atomic."""
    path = model_dir / EVALUATIONS
    entries = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
    key = (entry["eval_data"], entry["split"], entry.get("max_seq_length"))
    entries = [e for e in entries if (e["eval_data"], e["split"], e.get("max_seq_length")) != key] + [entry]
    atomic_write_json(path, entries)
    card_path = model_dir / CARD
    text = card_path.read_text(encoding="utf-8") if card_path.is_file() else ""
    section = evaluation_section(entries)
    if BEGIN in text and END in text:
        start, end = text.index(BEGIN), text.index(END) + len(END)
        heading = "## Evaluation results\n\n"
        new = text[:start] + section.removeprefix(heading) + text[end:]
    else:
        new = (text.rstrip("\n") + "\n\n" if text else "") + section + "\n"
    atomic_write_text(card_path, new)


def evaluation_entry(model_result: dict, reference: str | None, reference_result: dict | None, data: dict,
                     max_seq_length: int, output: Path | None) -> dict:
    """One evaluation as the card records it, from evaluate's results for this model (and the first model's)."""
    return {"eval_data": data["eval_data"], "split": data["split"], "queries": data["queries"],
            "corpus": data["corpus"], "max_seq_length": max_seq_length, "precision": model_result.get("precision"),
            "metrics": {k: v for k, v in model_result["metrics"].items() if isinstance(v, float) and math.isfinite(v)},
            "reference": reference, "reference_metrics": reference_result["metrics"] if reference_result else None,
            "results_file": str(output) if output else None}


def _number(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "" if value is None else str(value)
