"""Parameters of ANTS (the only place their defaults live): NegLabel's fields (S_base) plus the
MLLM, mining, bank and fusion settings. Defaults follow the authors' code (ZhuWenjie98/ANTS)
where paper and code differ; docs/ants.md lists each choice."""
from __future__ import annotations

from dataclasses import dataclass

from openood_immuno.llm.cost import FAILURE_BUDGET_S, GIVE_UP_AFTER
from openood_immuno.methods.neglabel.params import NegLabelParams
from openood_immuno.core.params import ParamError, param

MODES = ("ada", "far_only", "near_only")
COUNT_OVER = ("all", "mined")
ENS_POLICIES = ("code", "fifo")
THRESHOLD_RULES = ("code", "paper")
SCORE_GROUPINGS = ("code", "paper_ungrouped")
MINING = ("adaptive", "fixed", "off")
ENS_SELECTIONS = ("code", "paper")


@dataclass(frozen=True)
class ANTSParams(NegLabelParams):
    """ANTS = NegLabel (S_base) + MLLM-built ENS / VSNL negative banks + adaptive fusion."""

    SWEEP_EXCLUDE = ("n_neg_labels", "quantile", "n_groups")   # S_base's grids: tuned by neglabel's APS

    mode: str = param("ada", "ada = lambda S_ens + (1 - lambda) S_vsnl; far_only = S_ens; "
                      "near_only = S_vsnl", choices=MODES)
    # --- MLLM ---
    mllm: str = param("hf:Qwen/Qwen2-VL-2B-Instruct", "hf:NAME_OR_PATH | openai:MODEL@URL | "
                      "scripted (tests) | none", nonempty=True)
    mllm_strict: bool = param(False, "false: an MLLM that cannot load -> ERROR log, NegLabel scores "
                              "(degraded); true: raise")
    mllm_batch_size: int = param(16, "images or prompts per MLLM call", low=1)
    mllm_device: str = param("auto", "auto = cuda if available, else a torch device", nonempty=True)
    mllm_dtype: str = param("auto", "auto = bfloat16 on cuda, float32 on cpu",
                            choices=("auto", "float32", "float16", "bfloat16"))
    mllm_api_key_env: str = param("OPENAI_API_KEY", "environment variable holding the openai: API key")
    mllm_timeout_s: float = param(60.0, "timeout of one openai: request, seconds", low=0, low_open=True)
    mllm_give_up_after: int = param(GIVE_UP_AFTER, "give the MLLM up after this many calls in a row "
                                    "without any answer (later requests are skipped)", low=1)
    mllm_failure_budget_s: float = param(FAILURE_BUDGET_S, "give the MLLM up after this many seconds "
                                         "spent in calls without any answer", low=0, low_open=True)
    ens_prompt: str = param("Describe this image in fewer than eight words. Do not include the class "
                            "name {class_name}.", "ENS question for a mined image; {class_name} (the "
                            "predicted class) may be left out, as the authors' Qwen prompt does",
                            nonempty=True)
    ens_max_new_tokens: int = param(30, "token budget of an ENS answer (authors' LLaVA path 30, "
                                    "Qwen path 10)", low=1)
    vsnl_prompt: str = param("Give five different class names that share visual features with "
                             "{class_name}, excluding {class_name}. Put each numbered class on a "
                             "separate line.", "VSNL question for an active class",
                             placeholder="{class_name}")
    vsnl_max_new_tokens: int = param(100, "token budget of a VSNL answer (authors' LLaVA path 100, "
                                     "Qwen path 50)", low=1)
    mllm_image_size: int = param(0, "0: images reach the MLLM as read (its processor resizes: the "
                                 "authors' LLaVA path); > 0: resized to N x N, bilinear, first "
                                 "(the authors' Qwen path: 56)", low=0)
    mllm_min_pixels: int = param(0, "hf: Qwen2-VL-style processors: the fewest pixels an image is "
                                 "scaled up to (0: the checkpoint's setting; the authors' Qwen "
                                 "path: 200704 = 256*28*28)", low=0)
    mllm_max_pixels: int = param(0, "hf: Qwen2-VL-style processors: the most pixels (0: the "
                                 "checkpoint's setting; the authors' Qwen path: 1003520 = "
                                 "1280*28*28)", low=0)
    vsnl_names_per_class: int = param(5, "similar names kept per class", low=1)
    vsnl_template: str = param("the nice {}", "prompt of the VSNL names (class names: like the ID "
                               "prompt)", placeholder="{}")
    min_bank_fill: float = param(0.5, "a run is degraded when a bank its mode reads gets usable "
                                 "answers for fewer than this fraction of what was asked (ENS: images "
                                 "described; VSNL: names asked), or ends a stream empty", low=0, high=1)
    # --- negative-image mining ---
    mining: str = param("adaptive", "adaptive: S_base < threshold, the threshold recomputed at each "
                        "ENS update (threshold_rule); fixed: S_base < init_threshold throughout "
                        "(Eq. 5 alone); off: every image is a negative (Table 3 rows without NIM)",
                        choices=MINING)
    init_threshold: float = param(0.8, "initial mining threshold on S_base", low=0, high=1,
                                  sweep=(0.6, 0.8, 0.9))
    eta: float = param(0.5, "percentile of the scores below the histogram jump", low=0, high=1,
                       sweep=(0.3, 0.5, 0.7))
    hist_bins: int = param(10, "bins of the score histogram on [0, 1]", low=2)
    mine_min_cache: int = param(200, "ENS update when more than this many mined images are cached",
                                low=0)
    ens_max_updates: int = param(20, "ENS updates per stream (code: ens_stop_step)", low=0)
    threshold_rule: str = param("code", "code: eta-percentile below the histogram jump; paper: Eq. 5-6, "
                                "the largest of the ceil(eta n) lowest scores below init_threshold",
                                choices=THRESHOLD_RULES)
    ens_selection: str = param("code", "code: one sentence per mined image; paper: Eq. 7, M = "
                               "ens_sentences per update (random M if more, else the images "
                               "prompted again)", choices=ENS_SELECTIONS)
    ens_sentences: int = param(10_000, "M of Eq. 7: sentences per ENS update with ens_selection: "
                               "paper", low=1)
    ens_seed: int = param(0, "seed of Eq. 7's random selection (one generator per stream)", low=0)
    # --- banks ---
    ens_bank_size: int = param(10_000, "rows kept in the ENS bank", low=1)
    ens_bank_policy: str = param("code", "code: new rows in front, last N kept (newest cut when full); "
                                 "fifo: oldest dropped", choices=ENS_POLICIES)
    vsnl_start_batch: int = param(10, "first batch with a VSNL update", low=1)
    vsnl_interval: int = param(40, "batches between VSNL updates", low=1)
    vsnl_count_over: str = param("all", "classes counted over all predictions (code) or mined images "
                                 "(paper)", choices=COUNT_OVER)
    vsnl_top_k: int = param(40, "classes asked per VSNL update (code); 0 = ceil(vsnl_delta * C)",
                            low=0, sweep=(20, 40, 80))
    vsnl_delta: float = param(0.08, "the paper's delta (80 of 1000 classes), used when vsnl_top_k = 0",
                              low=0, high=1, low_open=True)
    group_size: int = param(100, "ANTS-code group size of S_ens / S_vsnl", low=1, sweep=(50, 100, 200))
    score_grouping: str = param("code", "code: S_ens / S_vsnl grouped by group_size; paper_ungrouped: "
                                "Eq. 8 / 13, one softmax over [ID ; whole bank]",
                                choices=SCORE_GROUPINGS)
    # --- adaptive lambda = F(mean S_ens, mean S_vsnl) ---
    lambda_means: str = param("all", "means over every stream sample (code) or mined negatives (paper)",
                              choices=COUNT_OVER, sweep=("all", "mined"))
    lambda_balanced: bool = param(True, "code: means of scores grouped by C, VSNL bank repeated")
    vsnl_balance_repeats: int = param(10, "VSNL bank repeats in the balanced means", low=1)
    # --- protocol ---
    reset_each_list: bool = param(True, "every scored list is one stream from empty memory; false: "
                                  "memory carries over from list to list")

    BACKEND = ("mllm", "mllm_strict", "mllm_batch_size", "mllm_device", "mllm_dtype",
               "mllm_api_key_env", "mllm_timeout_s", "mllm_give_up_after", "mllm_failure_budget_s",
               "mllm_image_size", "mllm_min_pixels", "mllm_max_pixels")
    """The parameters the MLLM backend depends on (a change reloads it)."""

    def check(self) -> None:
        super().check()
        try:
            self.ens_prompt.format(class_name="tench")
        except (IndexError, KeyError, ValueError):
            raise ParamError(f"ens_prompt must be a text whose only field is {{class_name}} (or none), "
                             f"got {self.ens_prompt!r}") from None
        if self.mllm.strip().lower() not in ("none", "scripted") and ":" not in self.mllm:
            raise ParamError(f"mllm must be hf:NAME_OR_PATH, openai:MODEL@URL, scripted "
                             f"or none, got {self.mllm!r}")
        low, high = self.mllm_min_pixels, self.mllm_max_pixels
        if (low or high) and not self.mllm.strip().lower().startswith("hf:"):
            raise ParamError(f"mllm_min_pixels / mllm_max_pixels set the processor of an hf: model; "
                             f"mllm {self.mllm!r} has none: set them to 0")
        if low and high and low > high:
            raise ParamError(f"mllm_min_pixels must be <= mllm_max_pixels, got {low} > {high}")
        if self.threshold_rule == "paper" and self.eta == 0:
            raise ParamError("eta must be in (0, 1] with threshold_rule: paper (Eq. 6 keeps a "
                             "proportion eta of the candidates), got 0: raise eta or use "
                             "threshold_rule: code")
