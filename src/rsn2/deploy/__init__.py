"""Shipping tasks: one task as a standalone ONNX model, and every task of a model behind one HTTP server."""

from rsn2.deploy.export import ExportReport, export_onnx, sample_inputs

__all__ = ["ExportReport", "export_onnx", "sample_inputs"]
