"""Configs: options written as text parsed, checks that name the option and the fix, and JSON-ready copies."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragtrain.config.common import as_dict
from ragtrain.config.evaluate import EvaluateConfig, parse_k
from ragtrain.config.prepare import PrepareConfig, parse_range, parse_strategies
from ragtrain.config.train import TrainConfig
from ragtrain.errors import UserError


def test_cut_offs_are_sorted_and_each_kept_once():
    assert parse_k("10,1,5,10, ") == (1, 5, 10)
    with pytest.raises(UserError, match="--k must be comma-separated integers such as 1,5,10, got '1,ten'"):
        parse_k("1,ten")


def test_a_rank_range_is_first_and_last_inclusive():
    assert parse_range("10-100") == (10, 100) and parse_range("3:9") == (3, 9)
    for bad in ("ten", "1-2-3", "5"):
        with pytest.raises(UserError, match="--negative-range must look like 10-100"):
            parse_range(bad)


def test_query_strategies_keep_their_canonical_order_and_anything_unknown_is_none():
    assert parse_strategies("mix") == ("cloze", "crop", "heading")
    assert parse_strategies("heading, cloze") == ("cloze", "heading")
    assert parse_strategies("heading,magic") == () and parse_strategies(" , ") == ()


def test_a_check_names_the_option_and_the_fix(tmp_path, docs_dir, triples_file):
    with pytest.raises(UserError, match=r"--val-fraction \+ --test-fraction = 1 leaves no training data"):
        PrepareConfig((docs_dir,), tmp_path / "out", val_fraction=0.5, test_fraction=0.5).validate()
    with pytest.raises(UserError, match="--query-strategy must be mix or a comma-separated list of cloze, crop, heading"):
        PrepareConfig((docs_dir,), tmp_path / "out", query_strategy="magic").validate()
    with pytest.raises(UserError, match="leaves micro-batches below 2 triples; raise --batch-size"):
        TrainConfig(train_data=triples_file, batch_size=4, grad_accum_steps=3, output_dir=tmp_path / "run").validate()
    with pytest.raises(UserError, match="--metric val_loss needs --val-data"):
        TrainConfig(train_data=triples_file, metric="val_loss", output_dir=tmp_path / "run").validate()
    with pytest.raises(UserError, match="model 'bm25' is given twice"):
        EvaluateConfig(models=("bm25", "bm25"), eval_data=tmp_path).validate()


def test_the_metric_that_picks_best_follows_what_validation_has():
    assert TrainConfig(train_data=Path("t")).selection_metric is None
    assert TrainConfig(train_data=Path("t"), val_data=Path("v")).selection_metric == "val_loss"
    assert TrainConfig(train_data=Path("t"), val_data=Path("v"), eval_data=Path("e")).selection_metric == "ndcg@10"
    assert TrainConfig(train_data=Path("t"), eval_data=Path("e"), metric="recall@10").selection_metric == "recall@10"


def test_rates_default_to_the_learning_rate():
    config = TrainConfig(train_data=Path("t"), learning_rate=3e-5, head_learning_rate=1e-3)
    assert (config.base_lr, config.head_lr) == (3e-5, 1e-3)


def test_as_dict_writes_paths_as_text_and_tuples_as_lists():
    saved = as_dict(EvaluateConfig(models=("bm25",), eval_data=Path("eval"), k_values=(1, 10)))
    assert saved["models"] == ["bm25"] and saved["eval_data"] == "eval" and saved["k_values"] == [1, 10]
    assert saved["output"] is None and list(saved)[:3] == ["models", "eval_data", "split"]


@pytest.mark.parametrize("options, words", [
    ({"lora_target_modules": "query,value"}, "--lora-target-modules shapes LoRA adapters, which only --lora-rank N"),
    ({"lora_dropout": 0.1, "lora_save": "adapter"}, "--lora-dropout, --lora-save shape LoRA adapters"),
    ({"matryoshka_dims": (8, 16)}, "largest first, each once, such as 16,8; got 8,16"),  # as a --config list gives it
    ({"matryoshka_dims": (16, 16, 8)}, "such as 16,8; got 16,16,8"),
    ({"matryoshka_dims": (16, 0)}, "--matryoshka-dims must be positive, got 16,0"),
])
def test_train_options_that_would_be_ignored_or_misread_are_refused(options, words):
    with pytest.raises(UserError, match=words.replace("(", r"\(")):
        TrainConfig(train_data=Path("t.jsonl"), **options).validate()


def test_what_the_refused_train_options_become_valid_with():
    TrainConfig(train_data=Path("t.jsonl"), lora_rank=4, lora_target_modules="query", lora_save="adapter").validate()
    TrainConfig(train_data=Path("t.jsonl"), precision="fp16").validate()  # a CUDA device is the pre-flight's to see
    TrainConfig(train_data=Path("t.jsonl"), matryoshka_dims=(16, 8)).validate()


@pytest.mark.parametrize("options, flags", [
    ({"truncate_dim": 8}, "--truncate-dim applies"),
    ({"query_prompt": "q: ", "document_prompt": "d: "}, "--query-prompt, --document-prompt apply"),
    ({"use_cache": False, "update_card": True}, "--no-cache, --update-card apply"),
    ({"dtype": "bf16", "precision": "fp32", "batch_size": 8, "max_seq_length": 64}, "--max-seq-length, --dtype, "
     "--precision, --batch-size apply"),
])
def test_dense_options_with_bm25_alone_are_refused_and_accepted_beside_a_model(options, flags):
    with pytest.raises(UserError, match=f"{flags} to dense models, and only bm25 is evaluated"):
        EvaluateConfig(models=("bm25",), eval_data=Path("eval"), **options).validate()
    EvaluateConfig(models=("bm25", "some/model"), eval_data=Path("eval"), **options).validate()
