"""The OpenOOD engine of ``openood-immuno eval``: a stock OpenOOD v1.5 ``Evaluator`` driven with
our net and postprocessor, its table returned as the builtin runner's :class:`EvalResult`."""
from __future__ import annotations

import os
import tempfile

import numpy as np

from openood_immuno.core.metrics import f1_at_threshold
from openood_immuno.data.features import extract_features
from openood_immuno.openood.bridge import prefill_id_predictions
from openood_immuno.openood.registry import register
from .runner import DECISION_COLUMNS, RESULT_COLUMNS, EvalResult, described, zero_shot_accuracy


def evaluate_with_openood(net, pp, data_root: str, id_name: str = "imagenet", batch_size: int = 128,
                          num_workers: int = 2) -> EvalResult:
    """``Evaluator(net, id_name, data_root, postprocessor=pp).eval_ood()`` as an :class:`EvalResult`.

    OpenOOD's FPR@95, AUROC, AUPR_IN and AUPR_OUT; ``ACC`` from the postprocessor's own ID test
    predictions (as in :func:`~openood_immuno.experiments.runner.evaluate`; OpenOOD's column, ``argmax
    net(x)``, is the same number when the postprocessor installs the net's adapter hook, and
    frozen CLIP's otherwise); ``ACC_zeroshot`` (frozen CLIP, from the cached ID test features)
    and, for a postprocessor that decides, ``ID_reject@tau`` (share of ID test images below its
    threshold) and ``F1@tau`` from OpenOOD's scores. The hook is removed afterwards.
    """
    register()  # without OpenOOD, or with an incompatible one, this says how to fix it
    from openood.evaluation_api import Evaluator

    try:
        with tempfile.TemporaryDirectory() as config_root:
            evaluator = Evaluator(net, id_name=id_name, data_root=data_root,
                                  config_root=os.path.join(config_root, "configs"),
                                  preprocessor=net.preprocess, postprocessor=pp, batch_size=batch_size,
                                  shuffle=False, num_workers=num_workers)
            prefill_id_predictions(evaluator)
            frame = evaluator.eval_ood(fsood=False, progress=True)
            scores = {"id": tuple(evaluator.scores["id"]["test"])}
            groups = {}
            for split in ("near", "far"):
                sets = evaluator.scores["ood"][split]
                scores.update({name: tuple(v) for name, v in sets.items()})
                groups[f"{split}ood"] = list(sets)
            test = extract_features(net, evaluator.dataloader_dict["id"]["test"], "test_imagenet")
    finally:
        clear = getattr(net, "clear_adapter", None)
        if clear is not None:
            clear()
    id_pred, id_conf, id_label = scores["id"]
    acc = 100 * float(np.mean(np.asarray(id_pred) == np.asarray(id_label)))  # the postprocessor's own
    acc_zeroshot = 100 * zero_shot_accuracy(net, test)
    rows = {name: [float(v) for v in frame.loc[name].to_numpy(dtype=np.float64)[:4]] + [acc, acc_zeroshot]
            for name in frame.index}
    threshold = pp.decision_threshold()
    columns = RESULT_COLUMNS
    if threshold is not None:
        f1 = {name: 100 * f1_at_threshold(np.concatenate([id_conf, conf]),
                                          np.concatenate([id_label, -np.ones_like(label)]), threshold)
              for name, (_, conf, label) in scores.items() if name != "id"}
        f1.update({group: float(np.mean([f1[n] for n in names])) for group, names in groups.items()})
        id_reject = 100 * float(np.mean(np.asarray(id_conf) < threshold))
        for name in rows:
            rows[name] += [id_reject, f1[name]]
        columns = RESULT_COLUMNS + DECISION_COLUMNS
    hyper = dict(zip(pp.args_dict, pp.get_hyperparam())) if pp.APS_mode else None
    return EvalResult(pp.name, rows, None, hyper, status=pp.status(), artifacts=pp.artifacts(),
                      scores=scores, columns=columns, **described(pp),
                      random_weights=bool(getattr(net, "random_weights", False)))
