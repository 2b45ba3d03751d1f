"""Device and precision: decided once, from the hardware and the options."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ragtrain.errors import UserError


def test_auto_precision_is_bf16_exactly_where_the_cpu_computes_bf16_natively():
    """Checked against the kernel's CPU flags (an independent source), not against a patched probe."""
    import ragtrain.runtime as runtime
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        pytest.skip("no /proc/cpuinfo to compare with")
    native = bool(set(cpuinfo.read_text().split()) & {"avx512_bf16", "amx_bf16", "amx_tile"})
    cpu = torch.device("cpu")
    assert runtime.inference_precision(cpu, "auto") == ("bf16" if native else "fp32")
    assert runtime.inference_precision(cpu, "fp32") == "fp32"
    assert runtime.inference_precision(cpu, "bf16") == "bf16"  # asked for: honoured, even if emulated
    with pytest.raises(UserError, match="fp16"):
        runtime.inference_precision(cpu, "fp16")
