"""The import path README documented before 0.2 (``openood_immuno.openood_bridge``), kept so
existing scripts run: the functions live in :mod:`openood_immuno.openood.bridge`."""
from openood_immuno.openood.bridge import prefill_id_predictions

__all__ = ["prefill_id_predictions"]
