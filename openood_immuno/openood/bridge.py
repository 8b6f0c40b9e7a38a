"""What a stock OpenOOD v1.5 ``Evaluator`` needs from us beyond the postprocessor: the ID
predictions of its ACC column served from cached features (its own pass calls ``Tensor.cuda``)."""
from __future__ import annotations

import torch

from openood_immuno.data.features import extract_features


def prefill_id_predictions(evaluator) -> None:
    """Fill ``evaluator.scores['id_preds'/'id_labels']`` from cached features.

    OpenOOD's ``Evaluator._classifier_inference`` (used for the ACC column) moves every
    batch with ``Tensor.cuda``; on a machine without a GPU it fails. The same predictions,
    ``argmax_c logit_c`` of ``net(x)`` (through the net's adapter hook when one is installed:
    ``net.classify_features``), come from the cached ID test features at no backbone cost.
    """
    net = evaluator.net
    fs = extract_features(net, evaluator.dataloader_dict["id"]["test"], "test_imagenet")
    classify = getattr(net, "classify_features", None)
    logits = (classify(fs.features)[0] if classify is not None
              else fs.features.to(net.device) @ net.class_text_features.T)
    evaluator.scores["id_preds"] = torch.argmax(logits, 1).cpu().numpy().astype(int)
    evaluator.scores["id_labels"] = fs.labels.numpy().astype(int)
