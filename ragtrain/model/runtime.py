"""Device and precision, decided once at the start of a command in one Runtime that the rest reads; the
device's random generator and memory."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from ragtrain.errors import UserError

TORCH_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter: allocations above the threshold are served by mmap
MMAP_THRESHOLD_BYTES = 4 << 20  # 4 MiB: activations go back to the OS when freed, small objects stay on the heap


@dataclass(frozen=True)
class Runtime:
    """Where a command computes and in what precision. Built once, when the command starts (training_runtime,
    evaluation_runtime); the training step, validation, evaluation and search read it and never decide again.

    train_precision: training's forward passes, and the validation loss, run under autocast in bf16 or fp16, or
    without autocast ("fp32"). encode_precision: what encoding texts for a search runs in (evaluate, validation's
    retrieval metrics, the dense miner). Pooling, normalisation, the loss and scores stay in fp32 either way.
    """

    device: torch.device
    train_precision: str = "fp32"
    encode_precision: str = "fp32"
    weights: str = "fp32"  # --dtype: the dtype the model's weights are loaded in (not autocast)

    @property
    def weights_dtype(self) -> torch.dtype | None:
        """What `from_pretrained(dtype=...)` gets: None for fp32, the checkpoint-independent default."""
        return TORCH_DTYPES.get(self.weights)

    def train_autocast(self):
        """The context training's forward passes run in."""
        return _autocast(self.device, self.train_precision)

    def encode_autocast(self):
        """The context encoding for a search runs in."""
        return _autocast(self.device, self.encode_precision)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A loss scaler for fp16 only: fp16 gradients underflow without one; bf16 has fp32's range and needs none.

        A disabled scaler is a no-op with the same interface, so the step code has one path.
        """
        on = self.train_precision == "fp16"
        return torch.amp.GradScaler(self.device.type if on else "cpu", enabled=on)


def training_runtime(device: torch.device, precision: str, dtype: str = "fp32") -> Runtime:
    """Training's runtime: its forward passes and validation's encoding both compute in `precision` (autocast;
    auto: bf16 where the hardware has it natively, else fp32), as evaluate's --precision means for encoding.
    `dtype`: the weights' own dtype (--dtype), checked on the device."""
    check_weights_dtype(device, dtype)
    resolved = resolve_precision(device, precision)
    return Runtime(device, resolved, resolved, dtype)


def evaluation_runtime(device_name: str, precision: str, dtype: str = "fp32", local_rank: int | None = None) -> Runtime:
    """evaluate's runtime: `device_name` resolved (under torchrun, `local_rank`'s own GPU), `precision` (auto: bf16
    where native, else fp32) checked on it."""
    device = resolve_device(device_name, local_rank)
    check_weights_dtype(device, dtype)
    return Runtime(device, encode_precision=resolve_precision(device, precision), weights=dtype)


def check_weights_dtype(device: torch.device, dtype: str) -> None:
    """bf16 weights only where the hardware computes bf16 (emulated, they are slower than fp32 and no smaller in
    what matters: activations); fp16 weights only on CUDA (CPU kernels lack or emulate fp16)."""
    if dtype == "bf16" and not native_bf16(device):
        where = "this GPU" if device.type == "cuda" else f"this {device.type.upper()}"
        raise UserError(f"--dtype bf16: {where} has no native bf16 (it would be emulated and slow); use --dtype fp32"
                        + (" or fp16" if device.type == "cuda" else ""))
    if dtype == "fp16" and device.type != "cuda":
        raise UserError(f"--dtype fp16 needs a CUDA device ({device.type} has no fast fp16 kernels); use --dtype fp32")


def resolve_device(name: str, local_rank: int | None = None) -> torch.device:
    """`auto` picks cuda, then mps, then cpu; an explicit device that is absent is a user error.

    Under torchrun (`local_rank` given) each process takes its own GPU, cuda:LOCAL_RANK.
    """
    if local_rank is not None:
        device = resolve_device(name)
        if device.type == "mps":
            raise UserError("several processes (torchrun) cannot share MPS; use --device cpu or CUDA GPUs")
        if device.type == "cuda" and local_rank >= torch.cuda.device_count():
            raise UserError(f"process with LOCAL_RANK {local_rank} has no GPU of its own ({torch.cuda.device_count()} "
                            "here); set torchrun --nproc-per-node to at most the number of GPUs")
        return torch.device("cuda", local_rank) if device.type == "cuda" else device
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda asked for but CUDA is not available; use --device cpu or auto")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError("--device mps asked for but MPS is not available; use --device cpu or auto")
    return torch.device(name)


def _autocast(device: torch.device, precision: str):
    """`torch.autocast` in bf16 or fp16; a no-op context for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=TORCH_DTYPES[precision])


def native_bf16(device: torch.device) -> bool:
    """Whether `device` multiplies bf16 matrices in hardware (AVX-512 BF16 or AMX on CPU; Ampere+ on CUDA),
    where bf16 runs about twice the fp32 rate. Elsewhere bf16 is emulated and slower than fp32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        cpu = torch.cpu
        return any(getattr(cpu, probe, lambda: False)() for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    return False


def resolve_precision(device: torch.device, precision: str) -> str:
    """What the forward passes compute in (--precision of train and evaluate): `auto` is bf16 where the hardware has
    it natively, else fp32; a precision asked for is checked on the device and honoured (bf16 even if emulated).

    Embeddings are pooled and compared, and the loss computed, in fp32 either way: autocast changes the matrix
    multiplications only.
    """
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise UserError(f"--precision fp16 needs a CUDA device ({device.type} has no fast fp16 kernels); use "
                        "--precision bf16 or fp32")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UserError("--precision bf16: this GPU does not support bf16; use --precision fp16 or fp32")
    if precision == "bf16" and device.type == "mps":
        raise UserError("--precision bf16 is not supported on MPS here; use --precision fp32")
    return precision


def device_rng_state(device: torch.device) -> torch.Tensor | None:
    """The random generator state of an accelerator (CUDA, MPS); None on CPU, whose state is torch.get_rng_state()."""
    if device.type == "cuda":
        return torch.cuda.get_rng_state(device)
    if device.type == "mps":
        return torch.mps.get_rng_state()
    return None


def set_device_rng_state(device: torch.device, state: torch.Tensor | None) -> None:
    """Put back what `device_rng_state(device)` returned; nothing to do on CPU (or for None)."""
    if state is None:
        return
    if device.type == "cuda":
        torch.cuda.set_rng_state(state, device)
    elif device.type == "mps":
        torch.mps.set_rng_state(state)


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory so far: allocated CUDA memory on a GPU, else the process's peak resident set size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def return_freed_memory_to_os(threshold_bytes: int = MMAP_THRESHOLD_BYTES) -> None:
    """Serve allocations above the threshold with mmap (glibc), so freed activations go back to the OS at once.

    glibc raises its mmap threshold after each large free, after which big tensors come from the heap and
    their freed pages stay in the process: peak RSS then exceeds the live tensors by ~0.5 GB on MiniLM.
    A fixed threshold turns that off. No-op where glibc is absent.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        if libc is not None and hasattr(libc, "mallopt"):
            libc.mallopt(M_MMAP_THRESHOLD, threshold_bytes)
    except OSError:
        pass
