"""Image data: benchmark list tables (torch-free), list reading and validation, decoding, CLIP
feature extraction with its content-keyed cache, and extraction sharded over ranks. The class-name
resources (``*_classes.*``) and published results live beside these modules."""
