"""Device and precision: decided once, from the hardware and the options."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ragtrain.errors import UserError
from ragtrain.model.runtime import Runtime, evaluation_runtime, inference_precision, training_runtime


def test_auto_precision_is_bf16_exactly_where_the_cpu_computes_bf16_natively():
    """Checked against the kernel's CPU flags (an independent source), not against a patched probe."""
    import ragtrain.model.runtime as runtime
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


def test_training_decides_autocast_and_validations_encoding_once():
    cpu = torch.device("cpu")
    mixed = training_runtime(cpu, mixed_precision=True, precision="bf16")
    assert (mixed.train_precision, mixed.encode_precision) == ("bf16", "bf16")
    plain = training_runtime(cpu, mixed_precision=False, precision="fp16")  # --precision alone changes nothing
    assert (plain.train_precision, plain.encode_precision) == ("fp32", inference_precision(cpu, "auto"))
    with pytest.raises(UserError, match="fp16 mixed precision is not supported on CPU"):
        training_runtime(cpu, mixed_precision=True, precision="fp16")


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
