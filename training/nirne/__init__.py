"""The NiRNE trainer: noise-injected, dual-stream regression of the normal latent on the YOSO networks.

``config`` (TOML), ``networks`` (build / load / freeze), ``shapes`` (a generated data set with known normals),
``data`` (reading it), ``objective`` (noise injection and the loss), ``trainer`` (the staged run),
``export`` (the release folder) and ``evaluate`` (NE / SNE through the inference pipeline).
"""
