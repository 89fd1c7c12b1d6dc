"""Reconstruction-level refinement: move the mesh so its aligned view matches the normal map and the mask."""
