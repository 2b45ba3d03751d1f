"""Saving an Encoder as one model directory that loads three ways with the same embeddings: ragtrain's
load_encoder (ragtrain.json), transformers' AutoModel (the transformer and tokenizer) and sentence-transformers'
SentenceTransformer (modules.json, 1_Pooling/, N_Dense/ for the head, Normalize, its prompts and similarity)."""

from __future__ import annotations

import re
from pathlib import Path

from ragtrain.errors import UserError
from ragtrain.files.atomic import atomic_directory, atomic_write_json
from ragtrain.files.names import CARD, EVALUATIONS
from ragtrain.files.outputdir import files_under, is_run_directory, visible_entries
from ragtrain.model.encoder import Encoder
from ragtrain.model.lora import is_lora, merged_copy, save_adapter
from ragtrain.model.projection import write_dense_modules
from ragtrain.model.textspec import RAGTRAIN_CONFIG, ST_CONFIG, ST_POOLING_FLAGS, ST_TRANSFORMER_CONFIG


def save_encoder(encoder: Encoder, directory: Path, lora_save: str = "merged", card: str | None = None) -> None:
    """Write the model directory atomically (safetensors weights, its tokenizer, ragtrain's and sentence-transformers'
    configs from its settings, and `card` as its README.md, the model card). A LoRA-wrapped transformer is saved
    merged, or with lora_save="adapter" as its adapter alone."""
    with atomic_directory(directory, overwrite=True) as tmp:
        if card is not None:
            (tmp / CARD).write_text(card, encoding="utf-8")
        transformer = encoder.transformer
        if is_lora(transformer) and lora_save == "adapter":
            save_adapter(transformer, tmp)
        else:
            (merged_copy(transformer) if is_lora(transformer) else transformer).save_pretrained(tmp, safe_serialization=True)
        encoder.tokenizer.save_pretrained(tmp)
        settings = encoder.settings
        atomic_write_json(tmp / RAGTRAIN_CONFIG, {"pooling": settings.pooling, "normalize": settings.normalize,
                                                  "output_dim": encoder.output_dim, "max_seq_length": settings.max_length,
                                                  "query_prompt": settings.query_prompt,
                                                  "document_prompt": settings.document_prompt,
                                                  "matryoshka_dims": list(settings.matryoshka_dims)})
        _write_sentence_transformers_files(encoder, tmp)


# What a saved model directory may hold (save_encoder's files, the tokenizer's, evaluate --update-card's record):
# --overwrite replaces such a directory whole, so anything else in it is a file ragtrain did not write.
SAVED_MODEL_FILE = re.compile(
    r"(README\.md|config\.json|generation_config\.json|adapter_config\.json|special_tokens_map\.json|"
    r"added_tokens\.json|chat_template\.jinja|vocab\.(txt|json)|merges\.txt|tokenizer(_config)?\.json|"
    r"[^/]+\.safetensors(\.index\.json)?|[^/]+\.model|\d+_(Pooling|Dense|Normalize)/.+|"
    + "|".join(re.escape(name) for name in (RAGTRAIN_CONFIG, ST_CONFIG, ST_TRANSFORMER_CONFIG, "modules.json", EVALUATIONS))
    + ")")


def check_model_output(output: Path, overwrite: bool, option: str = "--output-dir") -> None:
    """A model is saved into a missing or empty directory, or with --overwrite over a model ragtrain saved
    (its ragtrain.json) holding only a saved model's files; never over a training run or a folder of other files."""
    if output.is_file():
        raise UserError(f"{option} {output} is a file; choose a directory")
    if not visible_entries(output):
        return
    if not overwrite:
        raise UserError(f"{option} {output} is not empty; pass --overwrite to replace an earlier model there, or "
                        "choose another folder")
    if is_run_directory(output):
        raise UserError(f"--overwrite refused: {output} is a training run (its config.json, metrics.jsonl or "
                        f"checkpoints/), which the model would replace whole; choose another {option}")
    if not (output / RAGTRAIN_CONFIG).is_file():
        raise UserError(f"--overwrite refused: {output} is not a model ragtrain saved (no {RAGTRAIN_CONFIG}), so "
                        f"ragtrain will not delete it; choose another {option}")
    foreign = [name for name in files_under(output) if not SAVED_MODEL_FILE.fullmatch(name)]
    if foreign:
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        raise UserError(f"--overwrite refused: {output} holds {foreign[0]}{more}, which is no file of a saved model "
                        f"(the whole folder is replaced); move it out or choose another {option}")


def _write_sentence_transformers_files(encoder: Encoder, directory: Path) -> None:
    """modules.json and each module's folder; the prompts that encode_query / encode_document prepend; the
    similarity that sentence-transformers scores with (dot for a model trained without normalisation)."""
    settings, hidden = encoder.settings, encoder.hidden_size
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    atomic_write_json(directory / "1_Pooling" / "config.json", {
        "word_embedding_dimension": hidden,
        **{flag: settings.pooling == mode for flag, mode in ST_POOLING_FLAGS.items()},
        "include_prompt": True,
    })
    if encoder.projection is not None:
        modules += write_dense_modules(encoder.projection, directory, first_index=2)
    if settings.normalize:
        n = len(modules)
        modules.append({"idx": n, "name": str(n), "path": f"{n}_Normalize", "type": "sentence_transformers.models.Normalize"})
        (directory / f"{n}_Normalize").mkdir()
    atomic_write_json(directory / "modules.json", modules)
    atomic_write_json(directory / ST_TRANSFORMER_CONFIG, {"max_seq_length": settings.max_length,
                                                          "do_lower_case": settings.lower_case})
    prompts = {name: prompt for name, prompt in (("query", settings.query_prompt), ("document", settings.document_prompt)) if prompt}
    config = {"model_type": "SentenceTransformer", "prompts": prompts, "default_prompt_name": None,
              "similarity_fn_name": "cosine" if settings.normalize else "dot"}
    if settings.matryoshka_dims:  # ragtrain's record; sentence-transformers' truncate_dim=N then keeps a trained prefix
        config["matryoshka_dims"] = list(settings.matryoshka_dims)
    atomic_write_json(directory / ST_CONFIG, config)
