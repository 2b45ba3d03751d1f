"""The commands, each wired from the wings: prepare (documents, pairs or a BEIR folder to triples and an evaluation
set), train, evaluate, tune, merge and report, and preflight, the checks of the disk, packages and environment that
a command runs after its config validates and before any work. A command resolves what its config leaves to the data
(train's defaults by kind), builds its runtime once, and calls the wings; the logic lives in the wings.
"""
