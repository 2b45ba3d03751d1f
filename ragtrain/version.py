"""ragtrain's version, in a module of its own: the package's __init__ runs commands, and what a model card or a
manifest stamps with the version must not import them."""

VERSION = "0.1.0"
