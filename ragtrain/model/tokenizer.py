"""How texts reach a model beyond its vocabulary: lower-casing and the end-of-sequence token a last-token
embedder reads, both put into the tokenizer itself, so that every tokenisation (training's, once before the loop;
validation's; evaluate's; the miner's) and the saved tokenizer that sentence-transformers loads agree."""

from __future__ import annotations

PROBE = "a"  # a text to see what the tokenizer adds around any text


def prepare_tokenizer(tokenizer, lower_case: bool, append_eos: bool) -> None:
    """Lower-case in the tokenizer's normaliser (as sentence-transformers does for do_lower_case), and append the
    end-of-sequence token after every text where the tokenizer does not already end with it (Qwen3-Embedding and
    e5-mistral pool that token's state; a decoder tokenizer adds none by default). Changes `tokenizer` in place."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if lower_case:
        _lower_case(tokenizer, backend)
    if append_eos and not ends_with_eos(tokenizer):
        _append_eos(tokenizer, backend)


def ends_with_eos(tokenizer) -> bool:
    ids = tokenizer(PROBE)["input_ids"]
    return tokenizer.eos_token_id is not None and bool(ids) and ids[-1] == tokenizer.eos_token_id


def _lower_case(tokenizer, backend) -> None:
    from tokenizers import normalizers

    if backend is None:
        tokenizer.do_lower_case = True
        return
    current = backend.normalizer
    if current is not None and "Lowercase" in repr(current):
        return
    backend.normalizer = normalizers.Sequence([normalizers.Lowercase(), *([current] if current is not None else [])])


def _append_eos(tokenizer, backend) -> None:
    """One template: the special tokens the tokenizer puts around a text now (a BOS, say), then the EOS."""
    from tokenizers import processors

    from ragtrain.errors import UserError

    if tokenizer.eos_token_id is None or backend is None:
        raise UserError("last-token pooling on a decoder needs a fast tokenizer with an end-of-sequence token to "
                        "append; this tokenizer has none (set eos_token in its tokenizer_config.json)")
    around, bare = tokenizer(PROBE)["input_ids"], tokenizer(PROBE, add_special_tokens=False)["input_ids"]
    start = next((i for i in range(len(around) - len(bare) + 1) if around[i : i + len(bare)] == bare), 0)
    before = tokenizer.convert_ids_to_tokens(around[:start])
    after = tokenizer.convert_ids_to_tokens(around[start + len(bare):]) + [tokenizer.eos_token]
    ids = dict(zip(before + after, around[:start] + around[start + len(bare):] + [tokenizer.eos_token_id]))
    single = " ".join([*before, "$A", *after])
    pair = " ".join([*before, "$A", *after, "$B:1", *(f"{t}:1" for t in after)])
    backend.post_processor = processors.TemplateProcessing(single=single, pair=pair, special_tokens=list(ids.items()))
