"""Files on disk, below every other wing: JSON and JSONL read with line numbers (jsonfiles), crash-safe writes under a
temporary name then renamed (atomic), the names of everything ragtrain writes (names), where an output may go and
what --overwrite may replace (outputdir), one run per directory (runlock), and full or read-only disks told in one
line (diskerrors).
"""
