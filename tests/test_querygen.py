"""The prompt, the cleaning rules, the append-only query cache and the generation loop around it."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from ragtrain.errors import UserError
from ragtrain.generation.querygen import (
    PROMPT_PASSAGE_WORDS,
    QueryCache,
    clean_outputs,
    default_prompt,
    drop_reason,
    generate_outputs,
    prompt_examples,
    read_prompt,
    render,
    sample_passages,
    strip_formatting,
)

PASSAGE = ("Vitamin D deficiency in children was measured over three winters in Oslo. Children with low serum levels "
           "had twice as many respiratory infections as children given daily supplements.")
EXAMPLES = prompt_examples(default_prompt())


@pytest.mark.parametrize("raw, cleaned", [
    ("1. Does vitamin D prevent infections?", "Does vitamin D prevent infections?"),
    ('"Does vitamin D prevent infections?"', "Does vitamin D prevent infections?"),
    ("Question: Does vitamin D prevent infections?\nAnswer: yes", "Does vitamin D prevent infections?"),
    ("**Q:** Does vitamin D prevent   infections?", "Does vitamin D prevent infections?"),
    ("\n\n- Does vitamin D prevent infections?", "Does vitamin D prevent infections?"),
    ("Quantum dots in children?", "Quantum dots in children?"),  # 'Q' starting a word is no label
])
def test_strip_formatting(raw, cleaned):
    assert strip_formatting(raw) == cleaned


@pytest.mark.parametrize("query, reason", [
    ("", "empty"),
    ("Vitamin D?", "too_short"),
    (" ".join(["vitamin"] * 33), "too_long"),
    ("Does the passage describe vitamin D in children?", "meta"),
    ("What does the above say about winters?", "meta"),
    ("What is the answer to this question?", "generic"),  # SmolLM2's answer to a zero-shot prompt
    ("Why do large moons always show the same face to children?", "from_examples"),
    ("Children with low serum levels had twice as many respiratory infections", "copied"),
    ("Does vitamin D deficiency cause respiratory infections in children?", None),
    ("Children with low serum levels: are they sicker in winter?", None),  # a short quoted phrase is fine
])
def test_drop_reason(query, reason):
    assert drop_reason(query, PASSAGE, EXAMPLES) == reason


def test_clean_outputs_counts_and_drops_repeats():
    counts, seen = Counter(), set()
    kept = clean_outputs(["1. Does vitamin D help children?", "What is the answer to this question?"], PASSAGE,
                         EXAMPLES, seen, counts)
    kept += clean_outputs(["Does vitamin D help children!"], PASSAGE, EXAMPLES, seen, counts)  # same words
    assert kept == ["Does vitamin D help children?"]
    assert counts == Counter(llm_dropped_generic=1, llm_dropped_repeated=1)


def test_render_fills_placeholders_and_cuts_long_passages():
    long_passage = " ".join(f"w{n}" for n in range(PROMPT_PASSAGE_WORDS + 20))
    messages = render(default_prompt(), "A title", long_passage)
    assert messages[:-1] == default_prompt()[:-1]
    last = messages[-1]["content"]
    assert "Title: A title" in last and f"w{PROMPT_PASSAGE_WORDS - 1}" in last and f"w{PROMPT_PASSAGE_WORDS} " not in last
    assert "{passage}" not in last


def test_read_prompt(tmp_path):
    text = tmp_path / "p.txt"
    text.write_text("Write a query for: {passage}")
    assert render(read_prompt(text), "", "a b c") == [{"role": "user", "content": "Write a query for: a b c"}]
    chat = tmp_path / "p.json"
    chat.write_text(json.dumps([{"role": "system", "content": "s"}, {"role": "user", "content": "{title}: {passage}"}]))
    assert render(read_prompt(chat), "T", "x")[1]["content"] == "T: x"
    text.write_text("Write a query.")
    with pytest.raises(UserError, match=r"has no \{passage\} placeholder"):
        read_prompt(text)
    chat.write_text(json.dumps({"role": "user"}))
    with pytest.raises(UserError, match="expected a JSON list"):
        read_prompt(chat)
    with pytest.raises(UserError, match="not found"):
        read_prompt(tmp_path / "none.txt")


class CountingGenerator:
    """Answers 'Does <first two words> matter?'; fails (like an unreachable server) once `fail_after` are done."""

    identity = "counting"
    batch_size = 2

    def __init__(self, fail_after: int | None = None):
        self.calls: list[int] = []
        self.fail_after = fail_after

    def generate(self, conversations):
        if self.fail_after is not None and sum(self.calls) >= self.fail_after:
            raise UserError("generator server could not be reached")
        self.calls.append(len(conversations))
        return [[f"Does {' '.join(c[-1]['content'].split()[3:5])} matter?"] for c in conversations]


PASSAGES = [("", f"topic{n} words here and more") for n in range(5)]


def test_generation_is_cached_and_a_failed_run_keeps_what_it_made(tmp_path):
    failing = CountingGenerator(fail_after=2)
    with pytest.raises(UserError):
        generate_outputs(PASSAGES, failing, default_prompt(), QueryCache(tmp_path, "counting"), Counter())
    assert failing.calls == [2]
    generator, counts = CountingGenerator(), Counter()
    outputs = generate_outputs(PASSAGES, generator, default_prompt(), QueryCache(tmp_path, "counting"), counts)
    assert generator.calls == [2, 1]  # the first batch came from the cache
    assert isinstance(counts.pop("llm_generation_ms"), int)  # the manifest's speed figure, with the prompts it timed
    assert counts == Counter(llm_prompts_cached=2, llm_prompts_generated=3)
    assert outputs[3] == ["Does topic3 words matter?"]
    again, counts = CountingGenerator(), Counter()
    assert generate_outputs(PASSAGES, again, default_prompt(), QueryCache(tmp_path, "counting"), counts) == outputs
    assert again.calls == [] and "llm_generation_ms" not in counts  # nothing generated, nothing timed
    assert generate_outputs(PASSAGES, again, default_prompt(), QueryCache(tmp_path, "other"), Counter()) == outputs
    assert again.calls == [2, 2, 1]  # another generator: another cache file


def test_a_torn_last_line_is_skipped_and_the_next_write_starts_a_new_line(tmp_path):
    cache = QueryCache(tmp_path, "g")
    cache.add([("k1", ["one"]), ("k2", ["two"])])
    with cache.path.open("ab") as handle:
        handle.write(b'{"key": "k3", "outp')  # killed mid-write
    reread = QueryCache(tmp_path, "g")
    assert reread.entries == {"k1": ["one"], "k2": ["two"]}
    reread.add([("k4", ["four"])])
    assert QueryCache(tmp_path, "g").entries == {"k1": ["one"], "k2": ["two"], "k4": ["four"]}


def test_sample_passages_keeps_a_smaller_sample_inside_a_larger_one():
    small, large = sample_passages(100, 10, 3), sample_passages(100, 30, 3)
    assert large[:10] == small and len(set(large)) == 30
    assert sample_passages(5, 0, 3) == list(range(5)) == sample_passages(5, 9, 3)


def test_examples_prompt_shows_the_users_queries_and_read_examples_checks_the_file(tmp_path):
    from ragtrain.generation.querygen import examples_prompt, prompt_examples, read_examples

    text = tmp_path / "examples.txt"
    text.write_text("\ufeffdoes vitamin d prevent colds\n\n  aspirin lowers stroke risk  \n")
    examples = read_examples(text)
    assert examples == ["does vitamin d prevent colds", "aspirin lowers stroke risk"]
    messages = examples_prompt(examples)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert "- does vitamin d prevent colds\n- aspirin lowers stroke risk" in messages[0]["content"]
    assert "{passage}" in messages[1]["content"]
    assert prompt_examples(messages, examples) == examples  # a query repeating one of them was copied
    rows = tmp_path / "examples.jsonl"
    rows.write_text('{"query": "first claim"}\n{"text": "second claim"}\n')
    assert read_examples(rows) == ["first claim", "second claim"]


@pytest.mark.parametrize("content, words", [
    ("", "holds 0 example queries; give 1 to 32"),
    ("\n".join(f"query {n}" for n in range(33)), "holds 33 example queries"),
    (b"\x00\x01binary", "is not a UTF-8 text file"),
])
def test_a_bad_examples_file_is_one_line(tmp_path, content, words):
    from ragtrain.generation.querygen import read_examples

    path = tmp_path / "examples.txt"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(UserError, match=words):
        read_examples(path)
    with pytest.raises(UserError, match="not found"):
        read_examples(tmp_path / "missing.txt")


def test_a_base_models_prompt_is_the_chat_as_text_ending_where_it_writes_the_query():
    from ragtrain.generation.querygen import completion_text, default_prompt, render

    text = completion_text(render(default_prompt(), "Tea", "Green tea holds catechins."))
    assert text.startswith("You write one short search question")
    assert "\nQuery: Why do large moons always show the same face to their planet?\n\n" in text
    assert text.endswith("Passage:\nTitle: Tea\nGreen tea holds catechins.\nQuery:")
