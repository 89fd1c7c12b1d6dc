"""The one small rasterizer (torch, CPU and GPU) and the images made from it (masks, normal maps)."""
