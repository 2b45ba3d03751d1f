"""ragtrain tune's parts: the search space (space), the Optuna study in its storage with its first trial at train's
defaults and its trials counted across processes (study), the results table and best model (results), and the plots
of a study (studyplots).
"""
