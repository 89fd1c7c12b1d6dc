"""The panel's state: one PropertyGroup on the window manager (``context.window_manager.hi3dgen``).

Modules that declare ``bpy.props`` annotations do not use ``from __future__ import annotations``: Blender
reads those annotations as objects at registration.
"""

from typing import Any

import bpy

from . import generation, presets

FALLBACK_ENGINES = (("relief", "Relief", "Weightless relief from the picture (always available)"),
                    ("hi3dgen", "Hi3DGen", "Full image-to-3D model (needs the weights)"))
SWITCHES = ("align", "refine", "texture")
"Engine switches the panel offers; each is sent only when the backend's engine declares it."
_engine_items: list[tuple[str, str, str]] = []  # Blender needs the strings of dynamic items kept alive


def engine_items(self: Any, context: Any) -> list[tuple[str, str, str]]:
    """Engines from the backend's handshake once known, else the two built-in ones."""
    hello = generation.last_hello()
    if hello is None or not hello.engines:
        items = list(FALLBACK_ENGINES)
    else:
        items = [(str(e["name"]), str(e.get("label") or e["name"]),
                  f"{e.get('description', '')} ({generation.engine_state(e)})") for e in hello.engines]
    _engine_items[:] = items
    return _engine_items


class HI3DGEN_PG_settings(bpy.types.PropertyGroup):
    source: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Source", default="FILE",
        items=[("FILE", "File", "An image file on disk"),
               ("IMAGE", "Image", "An image already loaded in Blender"),
               ("EMPTY", "Reference", "The image of the active reference-image empty")])
    image_path: bpy.props.StringProperty(name="Image", subtype="FILE_PATH")  # type: ignore[valid-type]
    mask_path: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Mask", subtype="FILE_PATH",
        description="Optional mask image (white or opaque = the object), used instead of the image's alpha "
                    "or the automatic estimate")
    image: bpy.props.PointerProperty(name="Image", type=bpy.types.Image)  # type: ignore[valid-type]
    use_selected_views: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Selected Empties as Views", default=False,
        description="Every selected reference-image empty is a picture of the same object, the active one "
                    "first: one mesh from all of them (hi3dgen multi-view)")
    engine: bpy.props.EnumProperty(name="Engine", items=engine_items)  # type: ignore[valid-type]
    seed: bpy.props.IntProperty(name="Seed", default=0, min=0)  # type: ignore[valid-type]
    # relief
    resolution: bpy.props.IntProperty(  # type: ignore[valid-type]
        name="Detail", default=256, min=16, max=1024, soft_min=64,
        description="Grid cells along the image's long side")
    depth: bpy.props.FloatProperty(name="Depth", default=0.5, min=0.0, max=4.0)  # type: ignore[valid-type]
    detail: bpy.props.FloatProperty(  # type: ignore[valid-type]
        name="Surface Detail", default=0.5, min=0.0, max=4.0,
        description="Shading detail added to inflated shapes")
    thickness: bpy.props.FloatProperty(name="Thickness", default=0.05, min=0.0, max=1.0)  # type: ignore[valid-type]
    detail_mode: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Detail From", default="shape",
        items=[("shape", "Shape", "Shading detail without the picture's texture (fur, print, noise)"),
               ("texture", "Texture", "Every luminance detail becomes relief")])
    faces: bpy.props.IntProperty(  # type: ignore[valid-type]
        name="Faces", default=40_000, min=0, max=20_000_000,
        description="Decimate the relief to about this many faces (0: the full grid mesh)")
    # hi3dgen
    preset: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Preset", default="official", items=list(presets.PRESETS),
        description="Speed/quality preset: it sets the steps and guidance left at their defaults (a changed "
                    "value overrides it) and, in the backend, the sampler and int8 on a CPU")
    ss_steps: bpy.props.IntProperty(name="Structure Steps", default=50, min=1, max=200)  # type: ignore[valid-type]
    ss_guidance: bpy.props.FloatProperty(  # type: ignore[valid-type]
        name="Structure Guidance", default=3.0, min=0.0, max=20.0)
    slat_steps: bpy.props.IntProperty(name="Latent Steps", default=6, min=1, max=200)  # type: ignore[valid-type]
    slat_guidance: bpy.props.FloatProperty(  # type: ignore[valid-type]
        name="Latent Guidance", default=3.0, min=0.0, max=20.0)
    extraction: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Extraction", default="marching_cubes",
        items=[("marching_cubes", "Marching Cubes", "As the release"),
               ("flexicubes", "FlexiCubes", "Sharper, as TRELLIS")])
    decimate_faces: bpy.props.IntProperty(  # type: ignore[valid-type]
        name="Decimate To", default=0, min=0, max=20_000_000, description="Target face count (0: keep all)")
    remove_floaters: bpy.props.BoolProperty(name="Remove Floaters", default=True)  # type: ignore[valid-type]
    memory: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Memory", default="auto",
        items=[("auto", "Auto", "The backend's setting (offload unless started with --memory resident)"),
               ("offload", "Offload", "Each stage's networks on the GPU only while it runs: the least memory"),
               ("resident", "Resident", "Every network stays on the GPU: faster, for cards with room for all")])
    # switches of newer backends (sent only when the engine declares them)
    align: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Align to Image", default=True,
        description="Estimate the picture's camera, so the result is placed over the reference image (or "
                    "gets a camera that sees it as the picture does)")
    refine: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Refine to Image", default=True,
        description="Move the surface so that, from the estimated view, it matches the predicted normals "
                    "and the outline (when the alignment is confident)")
    texture: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Texture", default=True,
        description="UV-unwrap the mesh and bake the picture and the normal map onto it")
    # output
    shading: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Shading", default="AUTO",
        items=[("AUTO", "Auto Smooth", "Smooth, with edges sharper than 30 degrees kept sharp"),
               ("SMOOTH", "Smooth", "Smooth shading everywhere"), ("FLAT", "Flat", "Flat shading"),
               ("NORMALS", "Backend Normals", "Custom normals sent by the backend")])
    with_material: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="With Material", default=False,
        description="Add a material with the mesh's normal texture (relief meshes: their UVs fit it)")
    with_color: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Use Image as Base Colour", default=True,
        description="In that material, the image itself gives the base colour (relief)")
    view_camera: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="View Camera", default=True,
        description="Make a camera for the estimated view, the picture as its background (from a reference "
                    "empty only for a perspective view, at the empty's viewpoint); it becomes the scene camera "
                    "only when the scene has none")
    show_log: bpy.props.BoolProperty(name="Show Log", default=False)  # type: ignore[valid-type]

    def param_values(self) -> dict[str, Any]:
        """Every engine parameter the panel offers; the job keeps those the chosen engine declares."""
        names = ("resolution", "depth", "detail", "thickness", "detail_mode", "faces", "preset", "ss_steps",
                 "ss_guidance", "slat_steps", "slat_guidance", "extraction", "decimate_faces", "remove_floaters",
                 "memory")
        rna = self.bl_rna.properties
        defaults = {name: rna[name].default for name in presets.GOVERNED}  # type: ignore[attr-defined]
        return presets.preset_params({name: getattr(self, name) for name in names}, defaults)

    def switch_values(self) -> dict[str, Any]:
        """The on/off switches newer engines declare; the job sends those the chosen engine lists."""
        return {name: bool(getattr(self, name)) for name in SWITCHES}


classes = (HI3DGEN_PG_settings,)


def register() -> None:
    bpy.types.WindowManager.hi3dgen = bpy.props.PointerProperty(type=HI3DGEN_PG_settings)  # type: ignore[attr-defined]


def unregister() -> None:
    del bpy.types.WindowManager.hi3dgen  # type: ignore[attr-defined]
