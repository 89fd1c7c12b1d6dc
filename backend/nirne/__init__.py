"""NiRNE / YOSO one-step normal estimator (image -> camera-space normal map) on diffusers model classes."""
