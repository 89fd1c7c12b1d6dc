"""UVs and texture baking for full-3D (hi3dgen) meshes: unwrap, find what the input view sees, bake the
input image as base colour and the predicted normal map as a tangent-space normal texture."""
