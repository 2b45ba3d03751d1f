"""Ranking a corpus for queries: BM25 (bm25), exact dense search in bounded memory (search), the fusion of both
(hybrid), the embeddings a search needs through the model's encode pair and the embedding cache (embedding, cache),
hard-negative mining (negatives), teacher scores for distillation (teacher) and the retrieval metrics.
"""
