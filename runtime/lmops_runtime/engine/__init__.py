"""Inference for a loaded model: text generation with batching backends, classification and embedding."""
