"""prepare-data's manifest.json read back: what kind of triples a training file holds (labelled or label-free), which
decides train's defaults (config.datakinds)."""

from __future__ import annotations

import json
from pathlib import Path

from ragtrain.config.datakinds import LABEL_FREE, LABELLED, DataKind, data_kind_of
from ragtrain.files.names import MANIFEST


def read_data_kind(train_data: Path) -> DataKind:
    """The `data_kind` of the manifest.json beside a triples file (a manifest written before that field existed: by
    its options); without a readable manifest, no kind (the label-free set applies)."""
    manifest = Path(train_data).parent / MANIFEST
    try:
        content = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return DataKind(None, f"no readable {manifest}")
    if not isinstance(content, dict):
        return DataKind(None, f"{manifest} is not a prepare-data manifest")
    kind = content.get("data_kind")
    if kind not in (LABELLED, LABEL_FREE):
        kind = data_kind_of(content.get("options") if isinstance(content.get("options"), dict) else {})
    return DataKind(kind, str(manifest))
