"""Driving a stock OpenOOD v1.5 ``Evaluator`` with our net and postprocessors."""
from __future__ import annotations

import os
import tempfile

import numpy as np
import torch

from .features import extract_features
from .registry import register
from .runner import EvalResult


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


def evaluate_with_openood(net, pp, data_root: str, id_name: str = "imagenet", batch_size: int = 128,
                          num_workers: int = 2) -> EvalResult:
    """``Evaluator(net, id_name, data_root, postprocessor=pp).eval_ood()`` as an :class:`EvalResult`."""
    register()  # without OpenOOD, or with an incompatible one, this says how to fix it
    from openood.evaluation_api import Evaluator

    with tempfile.TemporaryDirectory() as config_root:
        evaluator = Evaluator(net, id_name=id_name, data_root=data_root,
                              config_root=os.path.join(config_root, "configs"),
                              preprocessor=net.preprocess, postprocessor=pp, batch_size=batch_size,
                              shuffle=False, num_workers=num_workers)
        prefill_id_predictions(evaluator)
        frame = evaluator.eval_ood(fsood=False, progress=True)
        scores = {"id": tuple(evaluator.scores["id"]["test"])}
        for split in ("near", "far"):
            scores.update({name: tuple(v) for name, v in evaluator.scores["ood"][split].items()})
    rows = {name: [float(v) for v in frame.loc[name].to_numpy(dtype=np.float64)] for name in frame.index}
    hyper = dict(zip(pp.args_dict, pp.get_hyperparam())) if pp.APS_mode else None
    return EvalResult(pp.name, rows, None, hyper, status=pp.status(), artifacts=pp.artifacts(),
                      scores=scores)
