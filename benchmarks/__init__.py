"""rsn2 benchmarks: ratios measured side by side in one run (``python -m benchmarks``)."""
