"""Every command's options: one frozen dataclass per command (prepare, train, evaluate, tune, merge, report) and what
they share (common), each option's default and help written once on its field (options, which the command line and
--config files both read through). validate() checks values and combinations and never reads the disk; train's
defaults by the kind of training data live in datakinds.
"""
