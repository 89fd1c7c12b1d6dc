"""The Blender side of synthesis: run by the bpy interpreter (.venv-blender) as a subprocess, never imported
by the rest of the package (which runs in the backend's venv)."""
