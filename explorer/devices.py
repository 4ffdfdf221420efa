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
# The same three as element types (what a network is converted to for a profile, as the cost model
# names them), and the short names read for them.
DTYPE_NAMES: tuple[str, ...] = ("float32", "bfloat16", "float16")
DTYPE_ALIASES: dict[str, str] = dict(zip(PRECISION_NAMES, DTYPE_NAMES))
PRECISION_HELP = "autocast precision (default fp32); bf16 also on the CPU, fp16 on a GPU only"
