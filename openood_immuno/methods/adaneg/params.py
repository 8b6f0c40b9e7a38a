"""Parameters of AdaNeg (the only place their defaults live): NegLabel's fields (the static
negatives and S_nl) plus the memory, gate, proxy and score settings. Defaults = the authors'
ImageNet run (YBZh/OpenOOD-VLM @ 804f331, ``scripts/ood/adaneg/imagenet.sh``, postprocessor
``ttapromptnoadagap``); docs/adaneg.md lists each choice."""
from __future__ import annotations

from dataclasses import dataclass

from openood_immuno.core.params import ParamError, param
from openood_immuno.methods.neglabel.params import NegLabelParams
from openood_immuno.scores.adaneg import COMBINES

CAPACITY_RULES = ("code", "full")


@dataclass(frozen=True)
class AdaNegParams(NegLabelParams):
    """AdaNeg = NegLabel (S_nl) + a test-time feature memory giving adaptive proxies (S_ada)."""

    SWEEP_EXCLUDE = ("n_neg_labels", "quantile")   # the bank's grids: tuned by neglabel's APS

    # the AdaNeg code's prompts ('nice' prompt for ID classes and nouns) and grouping (group_num 5)
    id_template: str = param("The nice {}.", "prompt of the ID class names", placeholder="{}")
    noun_template: str = param("The nice {}.", "prompt of the noun candidates", placeholder="{}")
    adj_template: str = param("This is a {} photo.", "prompt of the adjective candidates",
                              placeholder="{}")
    n_groups: int = param(5, "K groups of negatives in S_nl and S_ada (code: group_num)", low=1,
                          means=("k", "groups", "num_groups", "group_num"))
    # --- memory ---
    memory_length: int = param(10, "L of the code's memory (memleng): entries per slot after the text "
                               "feature", low=1, means=("memleng", "memory_size"))
    capacity_rule: str = param("code", "code: a slot caches memory_length - 1 test features (the code "
                               "writes from index 1 and stops at memory_length); full: memory_length",
                               choices=CAPACITY_RULES)
    threshold: float = param(0.5, "tau of the gate: cache as ID above tau + gap (1 - tau), as negative "
                             "below tau - gap tau (S_nl)", low=0, high=1, sweep=(0.4, 0.5, 0.6),
                             means=("thres", "tau"))
    gap: float = param(0.5, "g of the gate (code: gap)", low=0, high=1, sweep=(0.25, 0.5, 0.75))
    # --- proxies and score ---
    sample_adaptive: bool = param(True, "true: sample-adaptive proxies (attention over each slot, "
                                  "beta); false: task-adaptive proxies (slot mean) (code: samada)",
                                  means=("samada",))
    beta: float = param(5.0, "sharpness of w = exp(-beta (1 - cos)) (the run's 5.5, truncated by the "
                        "code's int())", low=0, sweep=(1.0, 5.0, 10.0))
    lam: float = param(0.1, "lambda: S = S_ada + lambda S_nl; also weights softmax(a) in the "
                       "prediction (code: lambdaval)", low=0, sweep=(0.05, 0.1, 0.5),
                       means=("lambda", "lambdaval", "lambda_val"))
    combine: str = param("combine", "combine: S_ada + lambda S_nl; adaonly; vanillaonly; multiply "
                         "(code: in_score)", choices=COMBINES, means=("in_score",))
    # --- protocol ---
    reset_each_list: bool = param(True, "every scored list is one stream from an empty memory; false: "
                                  "the memory carries over from list to list in call order")

    @property
    def capacity(self) -> int:
        """Test features one slot caches."""
        return self.memory_length - 1 if self.capacity_rule == "code" else self.memory_length

    def check(self) -> None:
        super().check()
        if self.capacity < 1:
            raise ParamError(f"memory_length {self.memory_length} with capacity_rule: code caches no "
                             "test feature (code: memory_length - 1): raise memory_length to >= 2 or "
                             "use capacity_rule: full")
