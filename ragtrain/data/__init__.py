"""Documents, readers, splits, label-free queries, labelled inputs (pairs, BEIR), evaluation sets, and training
triples: read, tokenised once and cut into batches.
"""
