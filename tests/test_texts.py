"""Texts as the model reads them: lower-casing and the appended end-of-sequence token live in the tokenizer
itself, so every tokenisation and the saved tokenizer agree."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from ragtrain.errors import UserError
from ragtrain.model.tokenizer import ends_with_eos, prepare_tokenizer

VOCAB = ["<pad>", "<unk>", "<s>", "</s>", "the", "cat", "sat", "a"]


def tokenizer(bos: bool = False, eos: str | None = "</s>") -> PreTrainedTokenizerFast:
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(VOCAB)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    if bos:  # Llama-style: a BOS before every text, no EOS
        backend.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 2)])
    specials = {"pad_token": "<pad>", "unk_token": "<unk>", "bos_token": "<s>"} | ({"eos_token": eos} if eos else {})
    return PreTrainedTokenizerFast(tokenizer_object=backend, **specials)


@pytest.mark.parametrize("bos, expected", [(False, [4, 5, 3]), (True, [2, 4, 5, 3])])
def test_the_eos_is_appended_once_after_what_the_tokenizer_puts_first(bos, expected):
    tok = tokenizer(bos)
    assert not ends_with_eos(tok)
    prepare_tokenizer(tok, lower_case=False, append_eos=True)
    assert tok("the cat")["input_ids"] == expected and ends_with_eos(tok)
    prepare_tokenizer(tok, lower_case=False, append_eos=True)  # already ends with it: nothing added
    assert tok("the cat")["input_ids"] == expected


def test_lower_casing_is_in_the_normaliser_and_saved_with_the_tokenizer(tmp_path):
    tok = tokenizer()
    assert tok("THE Cat")["input_ids"] == [1, 1]
    prepare_tokenizer(tok, lower_case=True, append_eos=False)
    assert tok("THE Cat")["input_ids"] == tok("the cat")["input_ids"] == [4, 5]
    tok.save_pretrained(tmp_path)
    assert PreTrainedTokenizerFast.from_pretrained(tmp_path)("Sat A")["input_ids"] == [6, 7]


def test_a_tokenizer_without_an_eos_token_is_one_line():
    with pytest.raises(UserError, match="has none"):
        prepare_tokenizer(tokenizer(eos=None), lower_case=False, append_eos=True)
