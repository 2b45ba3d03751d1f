"""Files on disk: JSON and JSONL read with line numbers, crash-safe writes (a temporary name, then a rename), where an
output may go and what --overwrite may replace, the run lock, and disk errors told in one line.
"""
