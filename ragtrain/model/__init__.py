"""The encoder and its one text contract: how text becomes a vector (pooling, normalisation, max length, prompts,
lower-casing, Matryoshka dimensions) is resolved once from the model's own files and the flags (textspec, settings)
and held by the Encoder; every command embeds through encoding's encode_queries / encode_documents. Also loading and
saving in the sentence-transformers format, heads, LoRA, cross-encoders, merging weights, the model card, and the
device and precision a command computes in (runtime).
"""
