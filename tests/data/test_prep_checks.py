"""The data guards can fire: each catches its failure with a message naming the fix."""

from __future__ import annotations

import json

import pytest

from sectune.data.checks import (
    check_bos,
    check_collator,
    check_end_of_turn,
    check_lengths,
    check_masks,
    check_template,
    run_checks,
)
from sectune.data.render import TokenizedRow, tokenize_for_training
from sectune.errors import UserError

ROWS = [
    {
        "messages": [
            {"role": "user", "content": "What is a firewall?"},
            {"role": "assistant", "content": "A firewall filters traffic."},
        ]
    },
    {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "How do I reset my password?"},
            {"role": "assistant", "content": "Open the account settings and choose reset."},
            {"role": "user", "content": "Thanks!"},
            {"role": "assistant", "content": "You are welcome."},
        ]
    },
]
NO_MARKERS = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
)
EOT_OUTSIDE = (
    "{% for m in messages %}{% if m['role'] == 'assistant' %}{{ '<|im_start|>assistant\\n' }}"
    "{% generation %}{{ m['content'] }}{% endgeneration %}{{ '<|im_end|>\\n' }}"
    "{% else %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endif %}{% endfor %}"
)


@pytest.fixture
def smol(family_tokenizer):
    import copy

    return copy.deepcopy(family_tokenizer("smollm2"))


def test_good_dataset_passes_every_check(smol):
    checks = run_checks(smol, ROWS, max_length=512, family="smollm2")
    assert checks.ok, checks.problems
    assert checks.end_of_turn.assistant_turns == 3 == checks.end_of_turn.turns_ending_trained
    assert 0 < checks.masks.trained_fraction_min <= checks.masks.trained_fraction_max < 1
    json.dumps(checks.to_dict())  # goes into summary.json as is


def test_template_without_generation_markers_is_caught(smol):
    smol.chat_template = NO_MARKERS
    result = check_template(smol, "smollm2")
    assert not result.ok and "no {% generation %} markers" in result.problem and "fix:" in result.problem
    checks = run_checks(smol, ROWS, max_length=512, family="smollm2")
    assert not checks.ok
    with pytest.raises(UserError, match="generation"):
        checks.raise_if_failed()


def test_model_folder_whose_template_lacks_markers_is_refused(tmp_path, smol):
    """A non-registry model folder brings its own template: refused when it cannot mask."""
    from sectune.data.render import load_prep_tokenizer

    smol.chat_template = NO_MARKERS
    smol.save_pretrained(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(UserError, match=r"generation %\} markers.*fix: wrap each assistant answer"):
        load_prep_tokenizer(str(tmp_path))


def test_end_of_turn_outside_the_markers_is_caught(smol):
    smol.chat_template = EOT_OUTSIDE
    assert not check_template(smol, "smollm2").ok
    tokenized = [tokenize_for_training(smol, row["messages"]) for row in ROWS]
    result = check_end_of_turn(smol, ROWS, tokenized, "smollm2")
    assert not result.ok
    assert result.rows_with_untrained_end == [0, 1]
    assert "never learn to stop" in result.problem and "<|im_end|>" in result.problem


def test_rows_training_nothing_or_everything_are_caught():
    rows = [TokenizedRow([1, 2, 3], [0, 1, 1], ""), TokenizedRow([1, 2], [0, 0], ""), TokenizedRow([4], [1], "")]
    result = check_masks(rows)
    assert not result.ok
    assert (result.rows_zero_trained, result.rows_all_trained) == ([1], [2])
    assert check_masks(rows, allow_untrained=True).ok


def test_double_bos_is_caught(family_tokenizer):
    import copy

    llama = copy.deepcopy(family_tokenizer("llama3"))
    good = [tokenize_for_training(llama, row["messages"]) for row in ROWS]
    assert check_bos(llama, good).ok
    llama.chat_template = "{{ bos_token }}" + llama.chat_template
    bad = [tokenize_for_training(llama, row["messages"]) for row in ROWS]
    result = check_bos(llama, bad)
    assert not result.ok and result.rows_with_wrong_bos == [0, 1]


def test_answers_exceeding_max_length_are_caught_under_error_policy(smol):
    lengths = [len(tokenize_for_training(smol, row["messages"]).input_ids) for row in ROWS]
    result = check_lengths(lengths, max_length=min(lengths), policy="error")
    assert not result.ok and "exceed max_length" in result.problem and "answers are never cut" in result.problem
    assert result.stats["over_max_length"] == 1
    assert check_lengths(lengths, max_length=min(lengths), policy="drop").ok


def test_collator_masking_every_pad_id_is_caught_when_pad_is_eos(smol):
    """transformers' collator labels every pad id -100: with pad == eos it untrains every <|im_end|>."""
    from transformers import DataCollatorForLanguageModeling

    assert smol.pad_token == smol.eos_token
    result = check_collator(DataCollatorForLanguageModeling(smol, mlm=False), smol, ROWS, family="smollm2")
    assert not result.ok
    assert result.end_of_turn_trained_after_collation == 0 and result.end_of_turn_positions == 3
    assert "never by pad token id" in result.problem


def test_trl_collator_masks_padding_by_position(smol):
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    result = check_collator(DataCollatorForLanguageModeling(pad_token_id=smol.pad_token_id), smol, ROWS, "smollm2")
    assert result.ok, result.problem
    assert result.end_of_turn_trained_after_collation == 3 and result.padding_positions_trained == 0
    assert result.prompt_positions_trained == 0


def test_collator_ignoring_the_assistant_labels_is_caught(family_tokenizer):
    """With pad != eos the end-of-turn survives, but a collator that relabels every token trains the prompts."""
    import copy

    from transformers import DataCollatorForLanguageModeling

    gemma = copy.deepcopy(family_tokenizer("gemma"))  # pad <pad>, end of turn <end_of_turn>
    result = check_collator(DataCollatorForLanguageModeling(gemma, mlm=False), gemma, ROWS, family="gemma")
    assert result.end_of_turn_trained_after_collation == result.end_of_turn_positions == 3
    assert not result.ok and result.prompt_positions_trained > 0
    assert "ignores the assistant-only labels" in result.problem
