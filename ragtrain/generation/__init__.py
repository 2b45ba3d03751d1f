"""Queries a generator writes: a local causal LM or an OpenAI-compatible server, the prompt, the cache of answers,
cleaning, and the round-trip filter.
"""
