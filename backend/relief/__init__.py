"""The weightless relief engine's parts: mask, normals, integration, closed relief mesh."""
