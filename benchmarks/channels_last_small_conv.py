"""Does PyTorch's channels_last backward of a 1x1 stride-2 convolution survive on this CPU?

    python -m benchmarks.channels_last_small_conv

Runs, each in a fresh process (a crash must not take this one down), one forward and backward of
``conv2d(x, w, stride=2)`` with ``x`` of shape ``(32, C_in, 32, 32)`` in channels_last and a 1x1
kernel, for several channel counts, and prints per case ``ok``, ``crashed`` (the process died,
e.g. glibc's "free(): invalid next size") or ``hung`` (no answer within the timeout). Plain
PyTorch only: nothing of rsn2 runs. The result goes in docs/own-model.md, "Not supported yet".
"""

from __future__ import annotations

import subprocess
import sys

from rsn2.devices import cpu_name

CASE = """
import torch
torch.set_num_threads(1)
x = torch.rand(32, {cin}, 32, 32).to(memory_format=torch.channels_last).requires_grad_()
w = torch.rand({cout}, {cin}, 1, 1).requires_grad_()
out = torch.nn.functional.conv2d(x, w, stride=2)
(out * torch.randn_like(out)).sum().backward()
print("ok")
"""

CHANNELS = ((1, 8), (3, 8), (4, 8), (7, 8), (8, 16), (16, 32), (20, 40))


def run_case(cin: int, cout: int, timeout: float = 60.0) -> str:
    """``ok``, ``crashed`` or ``hung`` for one channel count."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", CASE.format(cin=cin, cout=cout)], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return "hung"
    return "ok" if done.returncode == 0 and done.stdout.strip() == "ok" else "crashed"


def main() -> None:
    import torch

    print(f"torch {torch.__version__} on {cpu_name()}")
    print("| C_in -> C_out | 1x1 stride-2 conv, channels_last, backward |")
    print("|---|---|")
    for cin, cout in CHANNELS:
        print(f"| {cin} -> {cout} | {run_case(cin, cout)} |", flush=True)


if __name__ == "__main__":
    main()
