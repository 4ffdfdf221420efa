"""The device and precision choices, by name: the one list the command line and the app offer.

No torch here, so that building the command line's parser stays fast;
:mod:`explorer.infer.device` turns the names into torch devices and dtypes.
"""

from __future__ import annotations

DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda", "mps")
DEVICE_LABELS: dict[str, str] = {"auto": "Automatic (GPU if there is one)", "cpu": "CPU", "cuda": "CUDA GPU",
                                 "mps": "Apple GPU (MPS)"}
DEVICE_HELP = "auto: CUDA, then MPS, then the CPU (default auto). A GPU out of memory falls back to the CPU."

PRECISION_NAMES: tuple[str, ...] = ("fp32", "bf16", "fp16")
PRECISION_HELP = "autocast precision (default fp32); bf16 also on the CPU, fp16 on a GPU only"
