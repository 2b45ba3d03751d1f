"""The encoder and its one text contract (pooling, length, prompts, normalisation), loading and saving in the sentence-
transformers format, heads, LoRA, Matryoshka, the model card, and the device and precision a command computes in.
"""
