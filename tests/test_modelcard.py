"""Model cards: the Hugging Face format (front matter), what they say about the run, the transformers recipe they
give (run here, it embeds exactly as ragtrain does), the validation curve they summarise, and evaluate --update-card
adding its results atomically without invalidating the embedding cache."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
import yaml

from ragtrain.commands.evaluate import evaluate
from ragtrain.commands.train import train
from ragtrain.config.train import TrainConfig
from ragtrain.data.counts import counts_in_words
from ragtrain.model.card import (
    BEGIN,
    END,
    CardData,
    add_evaluation,
    curve_rows,
    model_card,
    run_data,
    transformers_snippet,
    validation_rows,
)
from ragtrain.model.loading import load_encoder
from ragtrain.model.saving import save_encoder
from ragtrain.model.settings import TextOptions
from tests.conftest import evaluate_config, quiet_console, write_beir_folder, write_triples
from tests.test_decoder import build, by_hand


def card(**options) -> CardData:
    return CardData(**({"name": "runs/a/best", "base_model": "sentence-transformers/all-MiniLM-L6-v2", "pooling": "mean",
                        "normalize": True, "output_dim": None, "max_seq_length": 256} | options))


def front(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_the_front_matter_is_the_hugging_face_model_card_format():
    meta = front(model_card(card()))
    assert meta["library_name"] == "sentence-transformers" and meta["pipeline_tag"] == "sentence-similarity"
    assert meta["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert {"sentence-transformers", "sentence-similarity", "ragtrain"} <= set(meta["tags"])


def test_the_front_matter_carries_license_and_datasets_when_known():
    meta = front(model_card(card(license="apache-2.0", datasets=["scifact"])))
    assert meta["license"] == "apache-2.0" and meta["datasets"] == ["scifact"]
    assert "license" not in front(model_card(card())) and "datasets" not in front(model_card(card()))


def test_the_license_is_the_base_models_own_card_or_config_and_the_data_is_named_by_the_manifest(tmp_path):
    from ragtrain.model.card import base_model_license, training_data_names

    with_card, with_config, silent = (tmp_path / name for name in ("card", "config", "silent"))
    for folder in (with_card, with_config, silent):
        folder.mkdir()
    (with_card / "README.md").write_text("---\nlanguage: en\nlicense: mit\n---\n# a model\n")
    (with_config / "config.json").write_text(json.dumps({"model_type": "bert", "license": "cc-by-4.0"}))
    (silent / "README.md").write_text("# no front matter\n")
    assert [base_model_license(str(p)) for p in (with_card, with_config, silent)] == ["mit", "cc-by-4.0", None]
    assert base_model_license("no-such-org/no-such-model") is None  # nothing cached, nothing fetched
    data = tmp_path / "prepared"
    data.mkdir()
    (data / "manifest.json").write_text(json.dumps({"inputs": [], "options": {"beir": "../shared/data/scifact"}}))
    assert training_data_names(data / "train.jsonl") == ["scifact"]
    (data / "manifest.json").write_text(json.dumps({"inputs": ["data/sample", "notes.md"], "options": {}}))
    assert training_data_names(data / "train.jsonl") == ["sample", "notes"]
    assert training_data_names(tmp_path / "train.jsonl") == []  # no manifest: not known


def test_the_curve_keeps_first_best_and_last_and_thins_the_rest():
    rows = [{"step": 10 * i, "ndcg@10": 0.5 + 0.01 * i} for i in range(30)]
    rows[7]["ndcg@10"] = 0.99  # the best, at step 70
    kept = curve_rows(rows, "ndcg@10", limit=5)
    assert len(kept) == 5 and kept[0]["step"] == 0 and kept[-1]["step"] == 290 and {"step": 70, "ndcg@10": 0.99} in kept
    assert [r["step"] for r in curve_rows(rows, "val_loss", limit=4)] == [0, 100, 190, 290]  # no such metric: spread
    text = model_card(card(validation=rows, selection_metric="ndcg@10"))
    assert "ndcg@10 went from 0.5000 at step 0 to 0.9900 at its best (step 70); 0.7900 at the last validation (step 290)" in text
    loss_rows = [{"step": 0, "val_loss": 2.0}, {"step": 5, "val_loss": 1.5}, {"step": 10, "val_loss": 1.7}]
    assert "val_loss went from 2.0000 at step 0 to 1.5000 at its best (step 5)" in model_card(
        card(validation=loss_rows, selection_metric="val_loss"))


def test_run_data_counts_triples_and_hashes_the_manifest_beside_the_training_file(tmp_path):
    train_file = write_triples(tmp_path / "train.jsonl", count=6)
    assert run_data(train_file, 6, None) == {"training file": "`train.jsonl`", "training triples": "6"}
    (tmp_path / "manifest.json").write_text(json.dumps({"counts": {"train_triples": 1234, "queries_heading": 7}}))
    data = run_data(train_file, 1234, 56)
    assert data["prepare-data manifest sha256"] == f"`{hashlib.sha256((tmp_path / 'manifest.json').read_bytes()).hexdigest()}`"
    assert data["validation triples"] == "56" and data["prepare-data: train triples"] == "1,234"
    worded = run_data(train_file, 1234, 56, in_words=counts_in_words)  # as train writes it: in words, in flow order
    assert [k for k in worded if k.startswith("prepare-data: ")] == [
        "prepare-data: queries: a section heading finds its passage", "prepare-data: training triples (train.jsonl)"]
    # whether the manifest lists this very file: another file beside it, the same one, or one changed since
    digest = hashlib.sha256(train_file.read_bytes()).hexdigest()
    assert run_data(train_file, 6, None, digest)["training file in the manifest"] == "no: not one of its outputs"
    (tmp_path / "manifest.json").write_text(json.dumps({"sha256": {"train.jsonl": digest}}))
    assert run_data(train_file, 6, None, digest)["training file in the manifest"] == "yes, the same sha256"
    assert run_data(train_file, 6, None, "0" * 64)["training file in the manifest"] == "no: changed since (its sha256 differs)"


@pytest.mark.parametrize("pooling, output_dim, normalize", [("mean", None, True), ("cls", 8, False), ("last", 6, True),
                                                            ("max", None, False), ("mean_sqrt_len", 8, False),
                                                            ("weightedmean", None, True)])
def test_the_cards_transformers_recipe_embeds_as_ragtrain_does(tmp_path, tiny_model, pooling, output_dim, normalize):
    encoder = load_encoder(str(tiny_model), TextOptions(pooling=pooling, normalize=normalize, output_dim=output_dim))
    tokenizer = encoder.tokenizer
    saved = tmp_path / "model"
    save_encoder(encoder, saved)
    snippet = transformers_snippet(card(name=str(saved), pooling=pooling, output_dim=output_dim, normalize=normalize,
                                        max_seq_length=32, query_prompt="query: "))
    scope: dict = {}
    exec(snippet.replace('"]  # a query', '", "a second, longer query to pad the first"]'), scope)  # as pasted
    assert scope["texts"][0] == "query: how warm should sourdough proof?"
    encoder.eval()
    batch = tokenizer(scope["texts"], padding=True, truncation=True, max_length=32, return_tensors="pt")
    with torch.no_grad():
        expected = encoder.embed(batch["input_ids"], batch["attention_mask"])
    expected = torch.nn.functional.normalize(expected, dim=-1) if normalize else expected
    assert torch.allclose(scope["emb"], expected, atol=1e-5)


def test_the_cards_recipe_for_a_decoder_embedder_gives_each_texts_own_eos_state(tmp_path):
    """A decoder whose tokenizer pads on the left: the card's recipe pads right, so positions count from each
    text's first token, and pools the appended EOS: each text's embedding is that of the text alone."""
    encoder = load_encoder(str(build("qwen3", tmp_path / "qwen3")), TextOptions(pooling="last", normalize=True, output_dim=None))
    tokenizer = encoder.tokenizer
    tokenizer.padding_side = "left"
    saved = tmp_path / "model"
    save_encoder(encoder, saved)
    snippet = transformers_snippet(card(name=str(saved), pooling="last", max_seq_length=32, query_prompt="bread "))
    scope: dict = {}
    exec(snippet.replace('"how warm should sourdough proof?"]  # a query', '"the cat sat", "bread a planet in orbit"]'), scope)
    assert scope["texts"] == ["bread the cat sat", "bread a planet in orbit"]
    assert torch.allclose(scope["emb"], by_hand(tmp_path / "qwen3", scope["texts"]), atol=1e-5)


def test_update_card_replaces_the_same_evaluation_and_keeps_the_rest_of_the_card(tmp_path):
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    (model_dir / "README.md").write_text(model_card(card()))
    entry = {"eval_data": "eval", "split": "test", "queries": 3, "corpus": 5, "max_seq_length": 256, "precision": "bf16",
             "metrics": {"ndcg@10": 0.75, "recall@10": 0.5}, "reference": "base", "reference_metrics": {"ndcg@10": 0.5}}
    add_evaluation(model_dir, entry)
    add_evaluation(model_dir, entry | {"metrics": {"ndcg@10": 0.8, "recall@10": 0.5}})  # the same set again
    add_evaluation(model_dir, entry | {"split": "dev", "reference": None, "reference_metrics": None})
    text = (model_dir / "README.md").read_text()
    assert text.count(BEGIN) == text.count(END) == 1 and text.count("## Evaluation results") == 1
    assert "| evaluation set | split | queries | encoded in | ndcg@10 | recall@10 | compared with |" in text
    assert "| eval | test | 3 | bf16 | 0.8000 (+0.3000) | 0.5000 | base |" in text
    assert "| eval | dev | 3 | bf16 | 0.7500 | 0.5000 |  |" in text and "0.7500 (+0.2500)" not in text
    assert text.startswith(model_card(card()).split(BEGIN)[0]) and text.endswith(model_card(card()).split(END)[1])
    assert [e["split"] for e in json.loads((model_dir / "evaluation.json").read_text())] == ["test", "dev"]


@pytest.mark.slow
def test_a_run_writes_cards_and_evaluate_adds_its_results(tmp_path, tiny_model):
    data = tmp_path / "data"
    data.mkdir()
    triples = write_triples(data / "train.jsonl", count=12, negatives=1)
    (data / "manifest.json").write_text(json.dumps({"counts": {"train_triples": 12}, "inputs": ["docs/handbook"]}))
    beir = write_beir_folder(tmp_path / "eval", [("q1", "d1", 1), ("q2", "d2", 1), ("q3", "d3", 1)], split="val")
    cfg = TrainConfig(train_data=triples, eval_data=beir, model=str(tiny_model), output_dir=tmp_path / "run",
                      batch_size=4, max_seq_length=32, learning_rate=1e-3, device="cpu", epochs=2, eval_steps=2)
    train(cfg)
    logged = validation_rows(cfg.output_dir / "metrics.jsonl")
    assert [r["step"] for r in logged] == [0, 2, 3, 4, 6]  # every 2 steps and at the epochs' ends (3 steps each)
    for which in ("best", "final"):
        text = (cfg.output_dir / which / "README.md").read_text()
        assert front(text)["base_model"] == str(tiny_model) and front(text)["datasets"] == ["handbook"]
        assert f"# run/{which}\n" in text and f'SentenceTransformer("run/{which}")' in text  # its folders, not cwd's
        assert str(tmp_path) not in text.split("## Training data")[0]
        assert "Texts encoded in fp32 for these figures." in text
        assert "| training triples | 12 |" in text and "prepare-data manifest sha256" in text
        assert "| `epochs` | `2` |" in text and "SentenceTransformer(" in text and "AutoModel.from_pretrained" in text
        for row in logged:  # the whole curve, in both (best/'s card is redrawn at the end)
            figures = " | ".join(f"{value:.4f}" for name, value in row.items() if name not in ("step", "epoch"))
            assert f"| {row['step']} | {figures} |" in text
    state = json.loads((cfg.output_dir / "checkpoints" / "step-6" / "state.json").read_text())
    assert f"at step {state['best_step']}" in (cfg.output_dir / "best" / "README.md").read_text()
    assert "the model after the run's last step (6 of 6)" in (cfg.output_dir / "final" / "README.md").read_text()
    # evaluate --update-card: the trained model's card gets the figures and the change against the base
    options = dict(split="val", update_card=True, output=tmp_path / "r.json")
    results = evaluate(evaluate_config(beir, tmp_path, str(tiny_model), str(cfg.output_dir / "final"), **options),
                       quiet_console())
    text = (cfg.output_dir / "final" / "README.md").read_text()
    ndcg, base = (results["models"][m]["metrics"]["ndcg@10"] for m in (str(cfg.output_dir / "final"), str(tiny_model)))
    encoded = results["models"][str(cfg.output_dir / "final")]["precision"]  # --precision auto: this machine's
    assert f"| {beir} | val | 3 | {encoded} | {ndcg:.4f} ({ndcg - base:+.4f}) |" in text
    again = evaluate(evaluate_config(beir, tmp_path, str(cfg.output_dir / "final"), **options), quiet_console())
    assert again["models"][str(cfg.output_dir / "final")]["cache"] == "hit"  # the card is no part of the model's key


def test_update_card_with_no_model_ragtrain_saved_says_so_once(tmp_path, tiny_model, capsys):
    beir = write_beir_folder(tmp_path / "eval", [("q1", "d1", 1), ("q2", "d2", 1)], split="val")
    # a plain transformers model (no ragtrain.json) and BM25: neither has a ragtrain card
    evaluate(evaluate_config(beir, tmp_path, str(tiny_model), "bm25", split="val", update_card=True, device="cpu"),
             quiet_console())
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: --update-card: none of the models is one ragtrain saved, so no model card was "
                        "updated"]
