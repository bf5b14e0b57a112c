"""sectune train collates real rows with the trainer's collator and refuses one that untrains end-of-turn."""

import json

import pytest

from sectune.config import load_config
from sectune.errors import UserError
from sectune.train.run import collator_check, open_session

QA = [
    {"messages": [{"role": "user", "content": "What is a firewall?"}, {"role": "assistant", "content": "A filter."}]},
    {"messages": [{"role": "user", "content": "What is phishing?"}, {"role": "assistant", "content": "A lure."}]},
]


@pytest.fixture
def session(tmp_path, tiny_model_dir):
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    (dataset / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in QA))
    cfg = load_config(None, [f"model={tiny_model_dir}"])
    return open_session(cfg, dataset, tmp_path / "run", resume=False, overwrite=False)


def test_trl_collator_passes_and_a_pad_id_masking_collator_is_refused(session, tiny_model_dir):
    from transformers import AutoTokenizer, DataCollatorForLanguageModeling
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling as TrlCollator

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert tokenizer.pad_token == tokenizer.eos_token
    good = collator_check(session, TrlCollator(pad_token_id=tokenizer.pad_token_id), tokenizer, QA)
    assert good["ok"] and good["end_of_turn_trained_after_collation"] == good["end_of_turn_positions"] > 0
    with pytest.raises(UserError, match="end-of-turn"):
        collator_check(session, DataCollatorForLanguageModeling(tokenizer, mlm=False), tokenizer, QA)
