"""View alignment: the camera of the input view, from the mesh, the mask and the normal map."""
