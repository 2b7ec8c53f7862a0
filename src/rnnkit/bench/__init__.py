"""Benchmarks: ``python -m rnnkit.bench layers`` (CPU/CUDA layer speed vs torch.nn) and
``python -m rnnkit.bench gpu`` (fused kernels vs cuDNN). Each prints a table."""
