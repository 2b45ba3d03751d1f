"""Data, from files to batches: readers and documents (files to passages), splits by group, label-free queries,
labelled inputs (pairs and BEIR folders), evaluation sets, what prepare-data writes (prepared) and reads back
(manifest), and training triples, tokenised once and cut into batches with the false-negative mask (triples).
"""
