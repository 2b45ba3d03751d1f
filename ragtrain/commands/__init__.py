"""What each command does, wired from the wings: prepare-data, train, evaluate, tune, merge and report. A command reads
its config, runs its pre-flight checks and calls the wings; it holds no logic of its own.
"""
