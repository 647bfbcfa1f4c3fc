"""rsn2 benchmarks: ratios measured side by side in one run (``python -m benchmarks``).

An entry point of its own, so it makes rsn2's process settings (:func:`rsn2.process.configure_process`)
before anything here imports torch or Numba.
"""

from rsn2.process import configure_process

configure_process()
