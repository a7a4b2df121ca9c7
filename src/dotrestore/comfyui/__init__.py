"""A ComfyUI node pack: *Load DOT operator*, *DOT apply* and *DOT fit*.

Install: make a folder ``ComfyUI/custom_nodes/dotrestore_nodes`` whose ``__init__.py`` reads
``from dotrestore.comfyui import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS``, with
dotrestore installed in ComfyUI's Python. Nothing from ComfyUI is imported here.
"""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
