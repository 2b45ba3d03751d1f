"""The one text contract: how a model turns text into a vector, resolved once when the model loads and held by its
Encoder alone.

A command says what its flags asked for in a TextOptions (None: not asked). `resolve_settings` puts each flag over
what the model's own files say (textspec.read_spec), then the defaults, and caps the length at what the model can
read: the result is the model's TextSettings (pooling, normalisation, max length, prompts, lower-casing, Matryoshka
dimensions, and where each came from). Training, validation, evaluate, the dense miner, the round-trip filter and the
teacher all embed through encoding.encode_queries / encode_documents, which read those settings and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

from ragtrain.errors import UserError
from ragtrain.messages import warn
from ragtrain.model.matryoshka import matryoshka_dims
from ragtrain.model.textspec import DEFAULT, ModelSpec

DEFAULT_MAX_LENGTH = 256  # tokens per text when neither a flag nor the model's files say


@dataclass(frozen=True)
class TextOptions:
    """What a command's flags ask of the model; None (or ()) where a flag was not given."""

    pooling: str | None = None
    normalize: bool | None = None
    max_length: int | None = None  # --max-seq-length
    query_prompt: str | None = None
    document_prompt: str | None = None
    matryoshka_dims: tuple[int, ...] = ()
    output_dim: int | None = None  # --output-dim: a linear head of this size on the pooled state


@dataclass(frozen=True)
class TextSettings:
    """How this model turns text into a vector, beyond its weights; `sources` says where each setting came from."""

    pooling: str = "mean"
    normalize: bool = True  # L2-normalised embeddings, scored by cosine; False: raw vectors, dot product
    max_length: int = DEFAULT_MAX_LENGTH  # tokens kept per text, within the model's limit
    query_prompt: str = ""
    document_prompt: str = ""
    lower_case: bool = False
    matryoshka_dims: tuple[int, ...] = ()  # prefixes trained to work on their own (largest first), or ()
    sources: tuple[tuple[str, str], ...] = ()  # (setting, file or flag) for the settings not at their default

    @property
    def similarity(self) -> str:
        return "cosine" if self.normalize else "dot"

    def source(self, name: str) -> str:
        return dict(self.sources).get(name, DEFAULT)


def resolve_settings(spec: ModelSpec, options: TextOptions, model: str, length_limit: int, embedding_size: int,
                     warn_cap: bool = True) -> TextSettings:
    """The model's settings: each flag over its files (`spec`), then the defaults; the length capped at
    `length_limit` (its position embeddings and tokenizer), with one warning when a flag asked for more; the
    Matryoshka dimensions completed with the whole `embedding_size`. A prompt flag that contradicts the model's
    own prompt is a UserError: the model was trained with its prompt, and a second one would silently change it."""
    for flag, own, given in (("--query-prompt", spec.query_prompt, options.query_prompt),
                             ("--document-prompt", spec.document_prompt, options.document_prompt)):
        if given is not None and own and given != own:
            raise UserError(f"{flag} {given!r} differs from the prompt model {model} defines ({own!r}); drop the flag "
                            "to use the model's own prompt")
    sources = dict(spec.sources)
    flags = {"pooling": (options.pooling, "--pooling"), "normalize": (options.normalize, "--normalize"),
             "max_seq_length": (options.max_length, "--max-seq-length"),
             "query_prompt": (options.query_prompt, "--query-prompt"),
             "document_prompt": (options.document_prompt, "--document-prompt"),
             "matryoshka_dims": (options.matryoshka_dims or None, "--matryoshka-dims")}
    values = {name: getattr(spec, name) for name in flags}
    for name, (value, flag) in flags.items():
        if value is not None:
            values[name], sources[name] = value, flag
    length = values["max_seq_length"] or DEFAULT_MAX_LENGTH
    if length > length_limit:
        if warn_cap and options.max_length is not None:
            warn(f"--max-seq-length {length} is above model {model}'s limit of {length_limit} tokens; using "
                 f"{length_limit}")
        length, sources["max_seq_length"] = length_limit, f"{sources.get('max_seq_length', DEFAULT)}, capped at the model's limit"
    return TextSettings(values["pooling"], values["normalize"], length, values["query_prompt"],
                        values["document_prompt"], spec.do_lower_case,
                        matryoshka_dims(values["matryoshka_dims"], embedding_size, model),
                        tuple(sources.items()))


def describe(settings: TextSettings, model: str, extra: str = "") -> str:
    """One line: what a command uses for `model` and where each setting came from."""
    def quoted(text: str) -> str:
        return repr(text) if text else "none"

    parts = [f"pooling {settings.pooling} ({settings.source('pooling')})",
             f"{settings.similarity} ({settings.source('normalize')})",
             f"max length {settings.max_length} ({settings.source('max_seq_length')})",
             f"query prompt {quoted(settings.query_prompt)} ({settings.source('query_prompt')})",
             f"document prompt {quoted(settings.document_prompt)} ({settings.source('document_prompt')})"]
    if settings.lower_case:
        parts.append(f"lower-cased ({settings.source('do_lower_case')})")
    if settings.matryoshka_dims:
        parts.append(f"matryoshka dims {','.join(map(str, settings.matryoshka_dims))} "
                     f"({settings.source('matryoshka_dims')})")
    return f"model {model}: " + ", ".join(parts) + (f", {extra}" if extra else "")
