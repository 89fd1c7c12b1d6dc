"""Trainers and metrics for the Hi3DGen networks; imports ``backend`` (never the reverse).

``python -m training ss-flow --config CONFIG.toml --data DIR --out DIR`` trains the sparse-structure flow
(``trainer.py``); ``python -m training toy-data DIR`` writes a small analytic data set (``synthetic.py``).
"""
