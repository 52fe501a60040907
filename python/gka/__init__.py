"""gka: the Gated KalmaNet (GKA) layer for PyTorch.

Ops (torch.ops.gka.*, with CPU, CUDA, Meta and Autograd kernels in C++) and their Python front ends:

    o, final_state = gka.chunk_gka(q, k, v, g, gk, alpha, output_final_state=True)
    o, final_state = gka.fused_recurrent_gka(q, k, v, g, gk, alpha, initial_state=final_state)
    o = gka.decode_pool_step_(q, k, v, pool, slots, g=g, gk=gk, alpha=alpha)   # serving, in place
    gka.naive_recurrent_gka(...)      # pure PyTorch per-token reference
    gka.nn.GatedKalmaNet(config)      # the full layer (spec §E)
"""
import os as _os

import torch as _torch

try:
    from ._build_info import TORCH_VERSION as _BUILT_TORCH_VERSION
except ImportError:  # pragma: no cover - a source tree without a build
    raise ImportError(
        "gka: the compiled extension is missing; install the package with `pip install .` "
        "from the libgka repository (it builds against the installed torch)"
    ) from None


def _torch_mismatch(built: str, running: str) -> bool:
    # The C++ ABI changes between torch releases; local build tags (+cu132 vs +cpu) do not matter.
    return built.split("+")[0] != running.split("+")[0]


if _torch_mismatch(_BUILT_TORCH_VERSION, _torch.__version__):
    raise ImportError(
        f"gka: the extension was built against torch {_BUILT_TORCH_VERSION} but torch {_torch.__version__} "
        "is installed; rebuild it against the installed torch: `pip install --force-reinstall --no-deps .` "
        "in the libgka repository"
    )

_torch.ops.load_library(_os.path.join(_os.path.dirname(__file__), "libgka_torch.so"))

from . import compat, nn  # noqa: E402
from .naive import naive_recurrent_gka  # noqa: E402
from .ops import StatePool, chunk_gka, decode_pool_step_, fused_recurrent_gka  # noqa: E402

__version__ = "0.1.0"
__all__ = [
    "StatePool",
    "chunk_gka",
    "compat",
    "decode_pool_step_",
    "fused_recurrent_gka",
    "naive_recurrent_gka",
    "nn",
]
