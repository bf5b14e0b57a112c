"""Config of the prep stage (owned by sectune.data): import, validate, clean, split, render."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from sectune.config.base import StrictModel

InputFormat = Literal["auto", "messages", "sharegpt", "alpaca", "prompt_completion", "qa"]
LengthPolicy = Literal["drop", "error", "truncate-prompt"]
Decontaminate = Literal["off", "report", "drop"]


class PrepConfig(StrictModel):
    """How ``sectune prep`` turns a file of Q&A into train/validation/test splits for one model."""

    model: str | None = Field(None, min_length=1)  # overrides the top-level model for this stage only
    # -- import
    input_format: InputFormat = "auto"  # JSONL/JSON row format; tables (xlsx/csv/parquet) are always Q&A columns
    # xlsx sheet name or 0-based index; None = the first sheet
    sheet: Annotated[str, Field(min_length=1)] | Annotated[int, Field(ge=0)] | None = None
    # 1-based row of the table header (xlsx/CSV); None = the first row, or the first of the first 20 rows that
    # holds the question and answer columns (title rows above the header are skipped)
    header_row: int | None = Field(None, ge=1)
    question_column: str = Field("Question", min_length=1)
    answer_column: str = Field("Answer", min_length=1)
    system_column: str | None = None  # a column holding a per-row system prompt
    system_prompt: str | None = None  # added to rows that have no system message
    # -- validate
    on_empty: Literal["error", "drop"] = "error"  # an empty question/answer cell or message
    max_chars: int = Field(20_000, gt=0)  # a longer message is an error unless truncate_long_messages
    truncate_long_messages: bool = False
    # -- clean and split
    dedup: bool = True  # drop exact and near duplicates
    near_dup_threshold: float = Field(0.85, gt=0, le=1)  # estimated Jaccard of byte 5-grams (data/dedup.py)
    minhash_perm: int = Field(128, ge=16)
    validation_size: float = Field(0.1, ge=0, lt=1)
    test_size: float = Field(0.1, ge=0, lt=1)
    stratify_by: str | None = Field(None, min_length=1)  # a meta field, e.g. domain_type
    # train rows against eval.benchmarks and the test split (13-gram overlap, MinHash near duplicates; see
    # data/contamination.py): report writes contamination.json, drop also removes the contaminating train rows
    decontaminate: Decontaminate = "report"
    # -- render
    max_length: int = Field(1024, gt=0)  # tokens, including the chat template's own
    length_policy: LengthPolicy = "drop"  # never cuts an answer: truncate-prompt shortens the question only
    export_prompt_completion: bool = True  # also write prompt_completion/<split>.jsonl (rendered text)

    @field_validator("decontaminate", mode="before")
    @classmethod
    def _yaml_off_is_off(cls, value: object) -> object:
        return "off" if value is False else value  # YAML reads a bare `off` as false

    @model_validator(mode="after")
    def _splits_leave_rows_to_train(self) -> PrepConfig:
        if self.validation_size + self.test_size >= 1:
            raise ValueError(
                f"validation_size + test_size is {self.validation_size + self.test_size:g}: nothing left to train on"
                " (keep the sum below 1, e.g. 0.1 each)"
            )
        return self
