"""Config of the train stage (owned by sectune.train).

Defaults are the fastest variant measured on a 2-core CPU (ENVIRONMENT.md, docs/train.md): bf16 autocast
where the hardware has it, padding-free batches, no gradient checkpointing unless the memory plan needs it.
The LoRA numbers are the seed project's recipe (r16, alpha 32, dropout 0.05 on q/k/v/o, lr 2e-4).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from sectune.config.base import StrictModel
from sectune.config.hosted import Backend, HostedConfig

PositiveInt = Annotated[int, Field(ge=1)]

Method = Literal["full", "lora", "qlora", "qlora-8bit"]
Tracker = Literal["tensorboard", "mlflow", "wandb"]
Precision = Literal["auto", "bf16", "fp16", "fp32"]
# transformers.SchedulerType's values, written out so that a config loads without importing transformers
# (tests/train/test_configs.py compares both lists, so they cannot drift apart).
LrScheduler = Literal[
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
    "reduce_lr_on_plateau",
    "cosine_with_min_lr",
    "cosine_warmup_with_min_lr",
    "warmup_stable_decay",
    "greedy",
]
# transformers.training_args.OptimizerNames' values (same test). Some need extra packages or a GPU.
Optimizer = Literal[
    "adamw_torch",
    "adamw_torch_fused",
    "adamw_torch_xla",
    "adamw_torch_npu_fused",
    "adafactor",
    "adamw_anyprecision",
    "adamw_torch_4bit",
    "adamw_torch_8bit",
    "ademamix",
    "sgd",
    "adagrad",
    "adamw_bnb_8bit",
    "adamw_8bit",
    "ademamix_8bit",
    "lion_8bit",
    "lion_32bit",
    "paged_adamw_32bit",
    "paged_adamw_8bit",
    "paged_ademamix_32bit",
    "paged_ademamix_8bit",
    "paged_lion_32bit",
    "paged_lion_8bit",
    "rmsprop",
    "rmsprop_bnb",
    "rmsprop_bnb_8bit",
    "rmsprop_bnb_32bit",
    "galore_adamw",
    "galore_adamw_8bit",
    "galore_adafactor",
    "galore_adamw_layerwise",
    "galore_adamw_8bit_layerwise",
    "galore_adafactor_layerwise",
    "lomo",
    "adalomo",
    "grokadamw",
    "schedule_free_radam",
    "schedule_free_adamw",
    "schedule_free_sgd",
    "apollo_adamw",
    "apollo_adamw_layerwise",
    "stable_adamw",
]


class LoraConfig(StrictModel):
    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    # "registry": the model's ModelSpec.lora_targets (q/k/v/o for most); "all-linear": every linear layer.
    target_modules: (
        Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)] | Literal["registry", "all-linear"]
    ) = "registry"
    use_dora: bool = False  # weight-decomposed LoRA (slower, sometimes better at low rank)
    use_rslora: bool = False  # rank-stabilised scaling alpha/sqrt(r) instead of alpha/r


class StopCheckConfig(StrictModel):
    """After training: does the model end its answers on its own within max_new_tokens?"""

    enabled: bool = True
    prompts: int = Field(4, ge=1)  # held-out prompts (test split, else validation)
    max_new_tokens: int = Field(128, ge=1)
    warn_below: float = Field(0.5, ge=0.0, le=1.0)  # warn when the stop rate is below this


class TrainConfig(StrictModel):
    backend: Backend = "local"  # where to train: this machine, or a hosted service (docs/train.md, Hosted training)
    hosted: HostedConfig = Field(default_factory=HostedConfig)  # settings of a hosted backend
    method: Method = "lora"
    model: str | None = Field(None, min_length=1)  # overrides the top-level `model` for this stage only
    lora: LoraConfig = Field(default_factory=LoraConfig)
    learning_rate: float = Field(2e-4, gt=0)
    epochs: float = Field(3, gt=0)
    max_steps: int = Field(-1, ge=-1)  # -1: train.epochs decide; >= 1 overrides epochs (0 is refused)
    # auto: 1 row per step on CPU, 4 on GPU; grad_accum auto makes 8 rows per update. On CPU (SmolLM2, seed data)
    # one row per step vs 4 gave LoRA 1.17x, QLoRA 1.8x, full 1.0x the tokens/s at 0.7x / 0.67x / 0.84x the peak.
    batch_size: PositiveInt | Literal["auto"] = "auto"  # per device
    grad_accum: PositiveInt | Literal["auto"] = "auto"  # effective batch = batch_size × grad_accum × devices
    warmup_ratio: float = Field(0.03, ge=0.0, lt=1.0)
    lr_scheduler: LrScheduler = "cosine"
    weight_decay: float = Field(0.0, ge=0.0)
    max_grad_norm: float = Field(1.0, ge=0.0)  # 0: no clipping
    optimizer: Optimizer = "adamw_torch"  # any transformers optim name (e.g. paged_adamw_8bit on GPU)
    # Truncation length. None: no truncation (rows longer than prep.max_length are refused by the data checks),
    # which also lets padding-free batching work (trl needs max_length=None for it without packing).
    max_length: int | None = Field(None, ge=1)
    assistant_only_loss: bool = True  # loss on assistant turns only (template needs {% generation %} markers)
    allow_untrained_rows: bool = False  # True: rows with 0 % trained tokens are a warning, not an error
    padding_free: bool = True  # flatten each batch into one sequence: no compute spent on padding
    packing: bool = False  # pack rows into max_length blocks (needs max_length)
    packing_strategy: Literal["bfd", "bfd_split", "wrapped"] = "bfd"
    precision: Precision = "auto"  # auto: bf16 where the hardware has it
    gradient_checkpointing: bool | Literal["auto"] = "auto"  # auto: only when the memory plan says it is needed
    logging_steps: int = Field(5, ge=1)
    save_steps: int = Field(50, ge=1)  # checkpoint every N optimizer steps (for --resume)
    save_total_limit: int = Field(2, ge=1)
    keep_checkpoints: bool = False  # False: checkpoints are deleted once the run finished
    eval_steps: int | None = Field(None, ge=1)  # None: evaluate on the validation split every save_steps
    early_stopping_patience: int | None = Field(3, ge=1)  # evaluations without improvement; None: off
    report_to: list[Tracker] = Field(
        default_factory=list
    )  # tracking backends, all local: tensorboard, mlflow (file store), wandb (offline)
    dataloader_workers: int = Field(0, ge=0)
    stop_check: StopCheckConfig = Field(default_factory=StopCheckConfig)

    @field_validator("max_steps")
    @classmethod
    def _max_steps_is_not_zero(cls, value: int) -> int:
        if value == 0:  # transformers would read 0 as "no limit" and train every epoch
            raise ValueError("must be -1 (train for train.epochs) or at least 1")
        return value

    @model_validator(mode="after")
    def _batching_fits_the_truncation_length(self) -> TrainConfig:
        """Refused here, not after the model loads: trl needs max_length=None for padding-free batches, and a
        block length for packing."""
        if self.packing and self.max_length is None:
            raise ValueError("train.packing needs a block length: set train.max_length (e.g. 1024)")
        if self.padding_free and not self.packing and self.max_length is not None:
            raise ValueError(
                "train.padding_free batches need train.max_length=null (trl does not truncate them): "
                "set train.max_length=null (prep already bounds lengths) or train.padding_free=false"
            )
        return self
