"""arcnn: JPEG compression-artifact removal with AR-CNN and its relatives."""

__version__ = "0.1.0"
