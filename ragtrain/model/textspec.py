"""What a model's own files say about turning text into a vector (settings.resolve_settings puts the flags over it).

A sentence-transformers model ships its pooling (1_Pooling/config.json), Dense layers and normalisation
(modules.json), max_seq_length and do_lower_case (sentence_bert_config.json), similarity function and prompts
(config_sentence_transformers.json); a ragtrain save adds ragtrain.json. Fine-tuning bge with mean pooling, or e5
without its "query: " prompt, trains and measures a model its authors never shipped, so train, the dense miner,
validation and evaluate all read one ModelSpec from here, and each says in one line what it used and where from.
A plain transformers directory keeps ragtrain's defaults (mean pooling, cosine; last-token for a decoder).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ragtrain.errors import UserError

RAGTRAIN_CONFIG = "ragtrain.json"
ST_CONFIG = "config_sentence_transformers.json"
ST_TRANSFORMER_CONFIG = "sentence_bert_config.json"
# sentence-transformers' pooling keys (both the 6.x `pooling_mode` names and the older pooling_mode_* flags)
ST_POOLING_NAMES = {"cls": "cls", "mean": "mean", "max": "max", "mean_sqrt_len_tokens": "mean_sqrt_len",
                    "weightedmean": "weightedmean", "lasttoken": "last"}
ST_POOLING_FLAGS = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean", "pooling_mode_max_tokens": "max",
                    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len",
                    "pooling_mode_weightedmean_tokens": "weightedmean", "pooling_mode_lasttoken": "last"}
POOLINGS = tuple(ST_POOLING_NAMES.values())  # what ragtrain computes (encoder.pool)
QUERY_PROMPT_NAMES = ("query",)  # what sentence-transformers' encode_query picks when no prompt is given
DOCUMENT_PROMPT_NAMES = ("document", "passage", "corpus")  # encode_document's picks, in its order
SUPPORTED_MODULES = ("Transformer", "Pooling", "Dense", "Normalize")
DEFAULT = "default"
NO_LENGTH_LIMIT = 1_000_000  # a tokenizer without a limit reports a huge stand-in (int(1e30))


@dataclass(frozen=True)
class ModelSpec:
    """How texts become embeddings, beyond the weights: each value with where it came from (`sources`)."""

    pooling: str = "mean"
    normalize: bool = True  # L2-normalised embeddings, scored by cosine; False: raw vectors, dot product
    max_seq_length: int | None = None  # None: the command's own default
    do_lower_case: bool = False
    query_prompt: str = ""
    document_prompt: str = ""
    matryoshka_dims: tuple[int, ...] = ()  # prefixes trained to work on their own (largest first)
    sources: tuple[tuple[str, str], ...] = ()  # (setting, file or flag) for the settings not at their default

    @property
    def similarity(self) -> str:
        return "cosine" if self.normalize else "dot"

    def source(self, name: str) -> str:
        return dict(self.sources).get(name, DEFAULT)


def read_spec(directory: Path | None, decoder: bool = False) -> ModelSpec:
    """The spec a model directory's files give (sentence-transformers', then ragtrain's over them); the defaults
    for a directory without them or for None (a name with no local copy). A decoder defaults to last-token pooling.
    Files that cannot be read, or name what ragtrain does not compute, are a UserError."""
    values: dict = {"pooling": "last"} if decoder else {}
    sources: dict[str, str] = {"pooling": "default for a decoder"} if decoder else {}
    if directory is not None and directory.is_dir():
        try:
            _read_st_files(directory, values, sources)
            _read_ragtrain_file(directory, values, sources)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise UserError(f"model directory {directory}: its sentence-transformers or ragtrain files cannot be read "
                            f"({type(exc).__name__}: {exc}); save the model again or remove the broken files") from None
    return ModelSpec(**values, sources=tuple(sources.items()))


def _read_st_files(directory: Path, values: dict, sources: dict) -> None:
    modules_file = directory / "modules.json"
    kinds: list[str] = []
    if modules_file.is_file():
        for module in _json(modules_file):
            kind = module["type"].rsplit(".", 1)[-1]
            if kind not in SUPPORTED_MODULES:
                raise UserError(f"model {directory}: modules.json names a {module['type']} module, which ragtrain does "
                                f"not compute (it supports {', '.join(SUPPORTED_MODULES)}); pass another model")
            kinds.append(kind)
            if kind == "Pooling":
                _set(values, sources, "pooling", _pooling(directory / module["path"] / "config.json"),
                     f"{module['path']}/config.json")
    transformer_file = directory / ST_TRANSFORMER_CONFIG
    if transformer_file.is_file():
        saved = _json(transformer_file)
        if saved.get("max_seq_length"):
            _set(values, sources, "max_seq_length", int(saved["max_seq_length"]), ST_TRANSFORMER_CONFIG)
        if saved.get("do_lower_case"):
            _set(values, sources, "do_lower_case", True, ST_TRANSFORMER_CONFIG)
    tokenizer_file = directory / "tokenizer_config.json"
    if kinds and "max_seq_length" not in values and tokenizer_file.is_file():  # sentence-transformers 6 keeps it here
        limit = _json(tokenizer_file).get("model_max_length")
        if isinstance(limit, int) and 0 < limit < NO_LENGTH_LIMIT:
            _set(values, sources, "max_seq_length", limit, "tokenizer_config.json")
    st_file = directory / ST_CONFIG
    saved = _json(st_file) if st_file.is_file() else {}
    similarity = saved.get("similarity_fn_name")
    if similarity not in (None, "cosine", "dot", "dot_product"):
        raise UserError(f"model {directory}: {ST_CONFIG} names the similarity {similarity!r}; ragtrain scores by "
                        "cosine or dot product only, pass another model")
    if "Normalize" in kinds:
        _set(values, sources, "normalize", True, "modules.json Normalize")
    elif similarity in ("dot", "dot_product"):
        _set(values, sources, "normalize", False, f"{ST_CONFIG} similarity dot")
    elif kinds:  # sentence-transformers scores by cosine unless the model says otherwise
        _set(values, sources, "normalize", True, f"{ST_CONFIG} similarity cosine" if similarity else
             "sentence-transformers' default cosine")
    _read_prompts(saved, values, sources)
    if saved.get("matryoshka_dims"):
        _set(values, sources, "matryoshka_dims", tuple(int(d) for d in saved["matryoshka_dims"]), ST_CONFIG)


def _read_prompts(saved: dict, values: dict, sources: dict) -> None:
    """The query and document prompts as sentence-transformers' encode_query / encode_document pick them; a model
    whose only prompt is its default_prompt_name's (both sides get it in sentence-transformers) gives it to both."""
    prompts = {k: v for k, v in (saved.get("prompts") or {}).items() if isinstance(v, str)}
    default = prompts.get(saved.get("default_prompt_name") or "", "")
    query = next((prompts[n] for n in QUERY_PROMPT_NAMES if n in prompts), default)
    document = next((prompts[n] for n in DOCUMENT_PROMPT_NAMES if n in prompts), default)
    if query:
        _set(values, sources, "query_prompt", query, ST_CONFIG)
    if document:
        _set(values, sources, "document_prompt", document, ST_CONFIG)


def _read_ragtrain_file(directory: Path, values: dict, sources: dict) -> None:
    """ragtrain.json decides pooling and normalisation of ragtrain's own saves (older ones wrote no similarity)."""
    path = directory / RAGTRAIN_CONFIG
    if not path.is_file():
        return
    saved = _json(path)
    for name in ("pooling", "normalize"):
        if name in saved:
            _set(values, sources, name, saved[name], RAGTRAIN_CONFIG)
    if saved.get("matryoshka_dims"):
        _set(values, sources, "matryoshka_dims", tuple(int(d) for d in saved["matryoshka_dims"]), RAGTRAIN_CONFIG)


def _pooling(path: Path) -> str:
    """The one pooling mode a Pooling config names; several at once, or prompt tokens left out, is a UserError."""
    config = _json(path)
    mode = config.get("pooling_mode")
    modes = ([mode] if isinstance(mode, str) else list(mode)) if mode else [k for k in ST_POOLING_FLAGS if config.get(k)]
    names = [ST_POOLING_NAMES.get(m, ST_POOLING_FLAGS.get(m, m)) for m in modes]
    if len(names) != 1 or names[0] not in POOLINGS:
        raise UserError(f"{path} names the pooling {' + '.join(modes) or 'none'}, which ragtrain does not compute (it "
                        f"computes one of {', '.join(POOLINGS)}); pass --pooling MODE to train with one of those")
    if config.get("include_prompt") is False:
        raise UserError(f"{path} leaves prompt tokens out of the pooling (include_prompt false), which ragtrain does "
                        "not do; pass another model")
    return names[0]


def _json(path: Path) -> dict | list:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"model file {path} cannot be read ({type(exc).__name__}: {exc}); save the model again or "
                        "remove the broken file") from None


def _set(values: dict, sources: dict, name: str, value, source: str) -> None:
    values[name] = value
    sources[name] = source
