"""DetailVerse-style data synthesis: procedural assets -> quality filters -> NoRLD labels -> dataset shards.

Imports ``backend``; ``backend`` and the add-on never import this package. Entry point:
``python -m synthesis run --config synthesis/configs/tiny.toml --out DIR``.
"""
