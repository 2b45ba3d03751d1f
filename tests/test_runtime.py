"""Device and precision: decided once, from the hardware and the options."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ragtrain.errors import UserError
from ragtrain.model.runtime import Runtime, evaluation_runtime, training_runtime


def test_auto_precision_is_bf16_exactly_where_the_cpu_computes_bf16_natively():
    """Checked against the kernel's CPU flags (an independent source), not against a patched probe."""
    import ragtrain.model.runtime as runtime
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        pytest.skip("no /proc/cpuinfo to compare with")
    native = bool(set(cpuinfo.read_text().split()) & {"avx512_bf16", "amx_bf16", "amx_tile"})
    cpu = torch.device("cpu")
    assert runtime.resolve_precision(cpu, "auto") == ("bf16" if native else "fp32")
    assert runtime.resolve_precision(cpu, "fp32") == "fp32"
    assert runtime.resolve_precision(cpu, "bf16") == "bf16"  # asked for: honoured, even if emulated
    with pytest.raises(UserError, match="fp16"):
        runtime.resolve_precision(cpu, "fp16")


def test_precision_means_what_training_and_its_validation_compute_in_as_for_evaluate():
    cpu = torch.device("cpu")
    bf16 = training_runtime(cpu, precision="bf16")
    assert (bf16.train_precision, bf16.encode_precision) == ("bf16", "bf16")
    plain = training_runtime(cpu, precision="fp32")  # no autocast anywhere, validation's encoding included
    assert (plain.train_precision, plain.encode_precision) == ("fp32", "fp32")
    auto = training_runtime(cpu, precision="auto")
    assert auto.train_precision == auto.encode_precision == evaluation_runtime("cpu", "auto").encode_precision
    with pytest.raises(UserError, match="--precision fp16 needs a CUDA device"):
        training_runtime(cpu, precision="fp16")


def test_autocast_follows_the_runtime_and_fp32_is_none():
    runtime = Runtime(torch.device("cpu"), train_precision="bf16")
    with runtime.train_autocast():
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with runtime.encode_autocast():
        assert not torch.is_autocast_enabled("cpu")


def test_only_fp16_gets_a_working_gradient_scaler():
    assert not Runtime(torch.device("cpu"), train_precision="bf16").grad_scaler().is_enabled()
    assert Runtime(torch.device("cpu"), train_precision="fp16").grad_scaler().is_enabled()


def test_evaluation_resolves_the_device_and_checks_the_precision_on_it():
    runtime = evaluation_runtime("cpu", "fp32")
    assert runtime.device == torch.device("cpu") and runtime.encode_precision == "fp32" and runtime.train_precision == "fp32"
    with pytest.raises(UserError, match="fp16"):
        evaluation_runtime("cpu", "fp16")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="--device cuda asked for but CUDA is not available"):
            evaluation_runtime("cuda", "auto")
