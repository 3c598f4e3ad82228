"""Model families built from MONAI networks, and the on-disk model store."""
