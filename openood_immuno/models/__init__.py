"""The OpenOOD-compatible CLIP net (:func:`~openood_immuno.models.clip_net.build_clip_net`) and the
local model configs it can build without downloading anything."""
