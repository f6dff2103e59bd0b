"""Which hardware runs the work: ``accelerator=`` and ``devices=`` parsing."""

from __future__ import annotations

import torch

_ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")


class Accelerator:
    """Base class for the hardware a Trainer runs on."""

    name = "base"

    @staticmethod
    def is_available() -> bool:
        return False

    @staticmethod
    def auto_device_count() -> int:
        return 1

    def root_device(self, index: int) -> torch.device:
        return torch.device(self.name, index)

    def setup_device(self, device: torch.device) -> None:
        """Make ``device`` the current one (CUDA needs this before any work)."""


class CPUAccelerator(Accelerator):
    """The CPU."""

    name = "cpu"

    @staticmethod
    def is_available() -> bool:
        return True

    def root_device(self, index: int) -> torch.device:
        return torch.device("cpu")


class CUDAAccelerator(Accelerator):
    """NVIDIA GPUs through CUDA."""

    name = "cuda"

    @staticmethod
    def is_available() -> bool:
        return torch.cuda.is_available()

    @staticmethod
    def auto_device_count() -> int:
        return torch.cuda.device_count()

    def setup_device(self, device: torch.device) -> None:
        torch.cuda.set_device(device)


class MPSAccelerator(Accelerator):
    """Apple Silicon GPUs through Metal."""

    name = "mps"

    @staticmethod
    def is_available() -> bool:
        return hasattr(torch.backends, "mps") and torch.backends.mps.is_available()


_BY_NAME: dict[str, type[Accelerator]] = {"cpu": CPUAccelerator, "cuda": CUDAAccelerator,
                                           "gpu": CUDAAccelerator, "mps": MPSAccelerator}


def _select_accelerator(accelerator: str | Accelerator) -> Accelerator:
    """Turn ``accelerator=`` into an Accelerator, checking that the hardware is there."""
    if isinstance(accelerator, Accelerator):
        return accelerator
    if not isinstance(accelerator, str) or accelerator.lower() not in _ACCELERATORS:
        raise ValueError(f"Trainer(accelerator={accelerator!r}) is not supported; "
                         f"use one of {', '.join(repr(a) for a in _ACCELERATORS)} or an Accelerator instance.")
    name = accelerator.lower()
    if name == "auto":
        for cls in (CUDAAccelerator, MPSAccelerator):
            if cls.is_available():
                return cls()
        return CPUAccelerator()
    if name == "tpu":
        try:
            import torch_xla  # noqa: F401
        except ImportError:
            raise ValueError("Trainer(accelerator='tpu') needs torch_xla, which is not installed; "
                             "use accelerator='cpu', 'cuda' or 'auto'.") from None
        raise NotImplementedError("Trainer(accelerator='tpu') is not available yet in ember; "
                                  "use accelerator='cpu', 'cuda' or 'auto'.")
    cls = _BY_NAME[name]
    if not cls.is_available():
        raise ValueError(f"Trainer(accelerator={accelerator!r}) was requested but no {cls.name.upper()} device "
                         "is available on this machine; use accelerator='cpu' or 'auto'.")
    return cls()


def _parse_devices(devices: int | str | list[int] | tuple[int, ...], accelerator: Accelerator) -> list[int]:
    """Turn ``devices=`` (int, list, "auto", "0,1", "-1") into a list of device indices."""
    original = devices
    if isinstance(devices, str):
        text = devices.strip()
        if text == "auto":
            devices = 1 if accelerator.name == "cpu" else accelerator.auto_device_count()
        elif text == "-1":
            devices = -1
        elif "," in text:
            devices = [int(x) for x in text.split(",") if x.strip()]
        elif text.lstrip("-").isdigit():
            devices = int(text)
        else:
            raise ValueError(f"Trainer(devices={original!r}) is not understood; use an int, a list of "
                             "indices, 'auto', '-1' or a comma-separated string like '0,1'.")
    if isinstance(devices, bool) or not isinstance(devices, (int, list, tuple)):
        raise ValueError(f"Trainer(devices={original!r}) must be an int, a list of ints or a string; "
                         "for example devices=1, devices=[0] or devices='auto'.")
    available = accelerator.auto_device_count()
    if isinstance(devices, int):
        if devices == -1:
            devices = max(available, 1)
        if devices < 1:
            raise ValueError(f"Trainer(devices={original!r}) must be a positive number of devices, -1 or 'auto'.")
        if accelerator.name != "cpu" and devices > available:
            raise ValueError(f"Trainer(devices={original!r}) asks for {devices} {accelerator.name} devices but "
                             f"only {available} are available.")
        return list(range(devices)) if accelerator.name != "cpu" else [0] * devices
    indices = [int(i) for i in devices]
    if not indices:
        raise ValueError(f"Trainer(devices={original!r}) names no device; use e.g. devices=[0].")
    if accelerator.name != "cpu":
        missing = [i for i in indices if i >= available or i < 0]
        if missing:
            raise ValueError(f"Trainer(devices={original!r}) names {accelerator.name} device(s) {missing} but "
                             f"only indices 0..{available - 1} exist.")
    return indices
