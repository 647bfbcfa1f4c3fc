"""Readers of the datasets' standard file formats (no torchvision, nothing unpickled)."""
