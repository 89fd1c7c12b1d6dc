"""End-to-end pipelines built from the model, sampling and mesh layers."""
