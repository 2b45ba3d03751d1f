"""Ranking a corpus: BM25, exact dense search, hybrid fusion, hard-negative mining, teacher scores, the retrieval
metrics and the embedding cache.
"""
