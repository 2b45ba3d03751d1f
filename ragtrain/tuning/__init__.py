"""ragtrain tune's search space, its results table and best model, and the study's plots.
"""
