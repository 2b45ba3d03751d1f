"""Queries a generator writes for passages: the generators (a local causal LM, or an OpenAI-compatible chat server with
timeouts and retries), the prompt, the append-only cache of answers and the cleaning rules (querygen), and prepare-
data's llm strategy with its round-trip filter (generated).
"""
