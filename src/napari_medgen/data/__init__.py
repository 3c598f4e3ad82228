"""data layer of napari-medgen (see DESIGN.md)."""
