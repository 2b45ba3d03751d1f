"""The options of every command, one frozen dataclass per command, each option's default and help written once; how
they are read from the command line and from a --config file; the defaults by data kind. Building or validating a
config never reads the disk.
"""
