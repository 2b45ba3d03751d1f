"""prepare-data --query-strategy llm end to end: a chat-completions server on 127.0.0.1 (or the tiny random Llama)
writes the queries; cleaning, the round-trip filter, generated evaluation queries, the cache, and the errors."""

from __future__ import annotations

import json
import re

import pytest
from chat_server import ChatServer
from conftest import TOPICS, file_bytes, jsonl_rows, prepare_config, user_error

from ragtrain.commands.prepare import prepare
from ragtrain.errors import UserError

GENERIC = "What is the answer to this question?"


def topic_question(messages, body) -> str:
    """A question made of words of the passage shown (after 'Title: ...'); generic for every 'Detail 1' passage."""
    passage = messages[-1]["content"].split("\n", 2)[-1]
    if "Detail 1." in passage:
        return GENERIC
    words = re.findall(r"[a-z]+", passage.lower())
    return f"1. Does the {words[1]} {words[2]} {words[4]} matter?"


def llm_config(docs_dir, out, url, cache, **options):
    options = {"query_strategy": "llm", "negatives": 1} | options
    return prepare_config([docs_dir], out, generator_url=url, generator_model="echo", generator_cache_dir=cache,
                          generator_batch_size=4, **options)


def test_generated_queries_are_cleaned_filtered_and_held_out(docs_dir, tmp_path):
    with ChatServer(topic_question) as server:
        summary = prepare(llm_config(docs_dir, tmp_path / "out", server.url, tmp_path / "cache"))
    counts = summary.counts
    prompts = counts["llm_prompts_generated"]
    assert prompts == len(server.bodies) == counts["passages"]  # one greedy query per passage
    assert counts["llm_dropped_generic"] > 0  # the 'Detail 1' passages
    kept = counts["llm_queries_cleaned"] - counts["llm_dropped_round_trip"]
    assert counts["queries_llm"] == kept > 0
    train = jsonl_rows(tmp_path / "out" / "train.jsonl")
    queries = [json.loads(line)["text"] for line in (tmp_path / "out" / "eval" / "queries.jsonl").read_text().splitlines()]
    assert all(r["query"].startswith("Does the ") and r["query"].endswith("matter?") for r in train)  # '1. ' stripped
    assert queries and all(q.startswith("Does the ") for q in queries)  # held-out documents got generated queries
    assert len(train) + counts["val_triples"] + counts["eval_queries_test"] == kept
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["counts"]["llm_dropped_generic"] == counts["llm_dropped_generic"]


def test_a_rerun_generates_nothing_even_with_the_server_gone(docs_dir, tmp_path):
    with ChatServer(topic_question) as server:
        first = prepare(llm_config(docs_dir, tmp_path / "a", server.url, tmp_path / "cache"))
    url = server.url  # nothing listens there now
    again = prepare(llm_config(docs_dir, tmp_path / "b", url, tmp_path / "cache"))
    assert again.counts["llm_prompts_generated"] == 0
    assert again.counts["llm_prompts_cached"] == first.counts["llm_prompts_generated"]
    outputs = file_bytes(tmp_path / "a")
    assert outputs.pop("manifest.json") != file_bytes(tmp_path / "b").pop("manifest.json")  # counts: cached, not generated
    assert {k: v for k, v in file_bytes(tmp_path / "b").items() if k != "manifest.json"} == outputs


def test_round_trip_drops_a_query_that_finds_another_passage(docs_dir, tmp_path):
    def off_topic(messages, body):  # every 'astronomy' passage gets a question about baking (one word of its own
        passage = messages[-1]["content"]  # keeps it from being dropped as generic before the round trip)
        return "Does yeast dough rise in a planet oven?" if "orbit" in passage else topic_question(messages, body)

    with ChatServer(off_topic) as server:
        kept = prepare(llm_config(docs_dir, tmp_path / "keep", server.url, tmp_path / "c1", filter="none")).counts
        filtered = prepare(llm_config(docs_dir, tmp_path / "drop", server.url, tmp_path / "c2", filter_rank=1)).counts
    assert kept["llm_dropped_round_trip"] == 0
    assert filtered["llm_dropped_round_trip"] >= 1  # the astronomy passages' baking question (its repeats: cleaned)
    assert filtered["queries_llm"] < kept["queries_llm"]
    train = jsonl_rows(tmp_path / "drop" / "train.jsonl")
    assert not any("yeast" in r["query"] and "orbit" in r["positive"] for r in train)


def test_training_documents_only_without_generated_eval_queries(docs_dir, tmp_path):
    with ChatServer(topic_question) as server:
        counts = prepare(llm_config(docs_dir, tmp_path / "out", server.url, tmp_path / "cache",
                                    query_strategy="llm,crop", generate_eval_queries=False,
                                    generator_max_passages=5)).counts
    assert len(server.bodies) == 5 and counts["llm_prompts_generated"] == 5
    queries = (tmp_path / "out" / "eval" / "queries.jsonl").read_text()
    assert "Does the" not in queries and counts["eval_queries_val"] > 0  # held-out queries are crops only


def test_a_server_failing_mid_run_is_one_line_and_keeps_the_cache(docs_dir, tmp_path):
    answered = []

    def then_refuse(messages, body):
        answered.append(1)
        if len(answered) >= 4:
            server.status = 400  # every later request is refused
        return topic_question(messages, body)

    with ChatServer(then_refuse) as server:
        line = user_error(["prepare-data", str(docs_dir), "-o", str(tmp_path / "out"), "--query-strategy", "llm",
                           "--generator-url", server.url, "--generator-model", "m", "--generator-cache-dir",
                           str(tmp_path / "cache"), "--generator-batch-size", "4", "--generator-concurrency", "1"])
    assert "refused the request: HTTP 400" in line
    assert not (tmp_path / "out").exists()
    cached = (next((tmp_path / "cache").glob("*.jsonl"))).read_text().splitlines()
    assert len(cached) == 4  # the first batch of four


def test_replies_without_text_are_counted_and_asked_again_on_a_rerun(docs_dir, tmp_path):
    """A reply whose content is a number (or a list, or missing) was a traceback in cleaning; now each is counted
    (llm_unusable_replies), left out of the cache, and the run goes on with the others."""

    def every_third_a_number(messages, body):
        return 3 if "Detail 2." in messages[-1]["content"] else topic_question(messages, body)

    with ChatServer(every_third_a_number) as server:
        counts = prepare(llm_config(docs_dir, tmp_path / "a", server.url, tmp_path / "cache")).counts
    numbers = sum("Detail 2." in body["messages"][-1]["content"] for body in server.bodies)
    assert numbers > 0 and counts["llm_unusable_replies"] == numbers
    assert counts["queries_llm"] > 0
    with ChatServer(topic_question) as server:  # the rerun asks for those alone
        again = prepare(llm_config(docs_dir, tmp_path / "b", server.url, tmp_path / "cache")).counts
    assert again["llm_prompts_generated"] == len(server.bodies) == numbers and again["llm_unusable_replies"] == 0


def test_a_server_that_never_gives_text_is_one_line(docs_dir, tmp_path):
    legacy = {"choices": [{"text": "a completions API's reply"}]}  # no message.content
    with ChatServer(topic_question, reply=legacy) as server:
        line = user_error(["prepare-data", str(docs_dir), "-o", str(tmp_path / "out"), "--query-strategy", "llm",
                           "--generator-url", server.url, "--generator-model", "m", "--generator-cache-dir",
                           str(tmp_path / "cache"), "--generator-batch-size", "4"])
    assert "gave no usable reply to any of the first 4 prompts" in line
    assert "no choices[0].message.content" in line and not (tmp_path / "out").exists()


def test_a_generator_whose_queries_are_all_dropped_says_so(docs_dir, tmp_path):
    """Empty generated queries were reported as 'the documents are too few or too short'."""
    with ChatServer(lambda messages, body: "") as server, pytest.raises(UserError) as error:
        prepare(llm_config(docs_dir, tmp_path / "out", server.url, tmp_path / "cache"))
    line = str(error.value)
    assert f"no query survived (generated: dropped empty {len(server.bodies)})" in line and "too few" not in line


def test_a_prompt_file_that_is_not_text_is_one_line(docs_dir, tmp_path):
    prompt = tmp_path / "prompt.txt"
    prompt.write_bytes(b"\x93\xff\x00{passage}")
    line = user_error(["prepare-data", str(docs_dir), "-o", str(tmp_path / "out"), "--query-strategy", "llm",
                       "--generator-url", "http://127.0.0.1:9/v1", "--generator-model", "m", "--generator-prompt",
                       str(prompt)])
    assert f"--generator-prompt {prompt} is not a UTF-8 text file" in line


def test_a_gguf_file_that_is_not_gguf_is_one_line_before_any_work(docs_dir, tmp_path):
    (tmp_path / "model.gguf").write_text("a text file renamed")
    line = user_error(["prepare-data", str(docs_dir), "-o", str(tmp_path / "out"), "--query-strategy", "llm",
                       "--generator", str(tmp_path / "model.gguf")])
    assert f"generator {tmp_path / 'model.gguf'} is not a GGUF file" in line


def test_a_local_tiny_model_writes_through_prepare(docs_dir, tmp_path, tiny_lm):
    config = prepare_config([docs_dir], tmp_path / "out", query_strategy="llm,heading", generator=str(tiny_lm),
                            generator_cache_dir=tmp_path / "cache", max_new_tokens=4, generator_max_passages=3,
                            negatives=1)
    counts = prepare(config).counts
    assert counts["llm_prompts_generated"] == 3
    dropped = sum(v for k, v in counts.items() if k.startswith("llm_dropped_"))
    assert counts["llm_queries_cleaned"] + dropped - counts["llm_dropped_round_trip"] == 3


@pytest.mark.parametrize("args, message", [
    (["--query-strategy", "llm"], "needs a generator: pass --generator PATH_OR_NAME or --generator-url URL"),
    (["--query-strategy", "llm", "--generator", "./no/such/model"], "generator ./no/such/model not found"),
    (["--query-strategy", "llm", "--generator-url", "http://127.0.0.1:9/v1"], "--generator-url needs --generator-model"),
    (["--generator", "x"], "--generator is used only by --query-strategy llm"),
    (["--query-strategy", "llm", "--generator-url", "http://x/v1", "--generator-model", "m", "--queries-per-passage",
      "2"], "needs sampling; set --generator-temperature"),
    (["--filter", "cosine"], "--filter must be bm25, dense, hybrid or none"),
    (["--query-strategy", "llm", "--generator-url", "127.0.0.1:8000/v1", "--generator-model", "m"],
     "--generator-url must be an http:// or https:// URL with a host"),
    (["--query-strategy", "llm", "--generator-url", "localhost:8000", "--generator-model", "m"],
     "--generator-url must be an http:// or https:// URL"),
    (["--query-strategy", "llm", "--generator-url", "http://127.0.0.1:port/v1", "--generator-model", "m"],
     "--generator-url must be an http:// or https:// URL"),
    (["--query-strategy", "llm", "--generator-url", "http://x/v1", "--generator-model", "m", "--generator-api-key-env",
      "RAGTRAIN_TEST_UNSET_KEY"], "--generator-api-key-env names RAGTRAIN_TEST_UNSET_KEY, which is not set"),
])
def test_option_errors_are_one_line(docs_dir, tmp_path, args, message):
    assert message in user_error(["prepare-data", str(docs_dir), "-o", str(tmp_path / "out"), *args])


def test_a_prompt_without_the_placeholder_is_one_line(docs_dir, tmp_path):
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("Write a question.")
    line = user_error(["prepare-data", str(docs_dir), "-o", str(tmp_path / "out"), "--query-strategy", "llm",
                       "--generator-url", "http://127.0.0.1:9/v1", "--generator-model", "m", "--generator-prompt",
                       str(prompt)])
    assert "has no {passage} placeholder" in line


def test_a_gguf_file_without_the_gguf_package_names_the_extra(docs_dir, tmp_path, monkeypatch):
    import importlib.util

    from ragtrain.generation import generator

    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    real = importlib.util.find_spec
    monkeypatch.setattr(generator.importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real(name, *a))
    line = user_error(["prepare-data", str(docs_dir), "-o", str(tmp_path / "out"), "--query-strategy", "llm",
                       "--generator", str(tmp_path / "m.gguf")])
    assert "install with pip install 'ragtrain[generate]'" in line


assert TOPICS  # the documents the tests write (conftest.write_documents)


def test_the_users_example_queries_lead_the_prompt_and_a_copied_one_is_dropped(docs_dir, tmp_path):
    examples = tmp_path / "examples.txt"
    examples.write_text("Does yeast need sugar to raise dough?\n\nDoes a planet orbit the sun?\n")

    def copy_an_example(messages, body):  # the astronomy passages get an example back, the others their own question
        return "Does a planet orbit the sun?" if "orbit" in messages[-1]["content"] else topic_question(messages, body)

    with ChatServer(copy_an_example) as server:
        counts = prepare(llm_config(docs_dir, tmp_path / "out", server.url, tmp_path / "cache",
                                    generator_examples=examples)).counts
    system = server.bodies[0]["messages"][0]
    assert system["role"] == "system"
    assert "- Does yeast need sugar to raise dough?\n- Does a planet orbit the sun?" in system["content"]
    assert [m["role"] for m in server.bodies[0]["messages"]] == ["system", "user"]  # no built-in examples
    copied = sum("orbit" in body["messages"][-1]["content"] for body in server.bodies)
    assert copied > 0 and counts["llm_dropped_from_examples"] == copied


def test_the_hybrid_round_trip_ranks_by_bm25_and_the_dense_model_fused(tiny_model):
    """Weight 1 ranks as BM25 does, weight 0 as the dense model does, and prepare-data's --filter hybrid loads the
    model and runs it."""
    import torch

    from ragtrain.generation.generated import top_passages
    from ragtrain.model.loading import load_encoder
    from ragtrain.model.runtime import Runtime
    from ragtrain.retrieval.cache import EmbeddingCache
    from ragtrain.retrieval.embedding import Embedder

    texts = list(TOPICS.values())
    queries = ["when does bread dough rise", "which moon orbits a planet", "fish in the river water"]
    dense = Embedder(load_encoder(str(tiny_model)), str(tiny_model), Runtime(torch.device("cpu")), EmbeddingCache(None))
    assert top_passages(texts, queries, 1, dense, hybrid_weight=1.0) == top_passages(texts, queries, 1, None) == [
        {0}, {1}, {3}]
    assert top_passages(texts, queries, 2, dense, hybrid_weight=0.0) == top_passages(texts, queries, 2, dense)
