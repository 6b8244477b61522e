"""`TinyAgent`: a small GPT-2 built from a config with a word-level tokenizer from an env's vocabulary.

It is an `HFAgent` (a transformers model + tokenizer), so it shares every code path with real models;
it only adds a constructor that needs no download and trains from scratch on CPU in minutes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from turngym.agents.hf import PLAIN_CHAT_TEMPLATE, HFAgent
from turngym.agents.sampling import SamplingConfig
from turngym.agents.scripted import random_action
from turngym.errors import ConfigError, TurnGymError, require
from turngym.registry import make

SPECIAL_TOKENS = ("<pad>", "<unk>", "<eos>", "<|system|>", "<|user|>", "<|assistant|>")
# Words keep their leading space ("▁red" vs "red"), so decode(encode(text)) == text for known words.
_WORD_PATTERN = r"▁?[^\W_]+|▁?[^\w▁]|▁"


@dataclass
class TinyConfig:
    """Size of the tiny policy and where its vocabulary comes from."""

    n_layer: int = 4
    """Transformer blocks."""
    n_embd: int = 128
    """Hidden size."""
    n_head: int = 4
    """Attention heads."""
    n_positions: int = 512
    """Context window in tokens (prompts are truncated to fit, keeping the system prompt)."""
    vocab_episodes: int = 64
    """Train-split episodes (of the expert, and as many of random play) whose text builds the vocabulary."""
    seed: int = 0
    """Seeds the weight initialisation and sampling."""


def word_tokenizer(texts: Iterable[str]) -> Any:
    """A `PreTrainedTokenizerFast` with one token per word (space-prefixed) or punctuation mark seen in `texts`."""
    tokenizers = require("tokenizers", "hf", "TinyAgent")
    transformers = require("transformers", "hf", "TinyAgent")
    pre_tokenizer = tokenizers.pre_tokenizers.Sequence(
        [
            tokenizers.pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=False),
            tokenizers.pre_tokenizers.Split(tokenizers.Regex(_WORD_PATTERN), behavior="isolated"),
        ]
    )
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    chat_markup = "\n"  # the chat template's own text
    for text in [chat_markup, *texts]:
        for word, _ in pre_tokenizer.pre_tokenize_str(text):
            vocab.setdefault(word, len(vocab))
    model = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<unk>"))
    model.pre_tokenizer = pre_tokenizer
    model.decoder = tokenizers.decoders.Metaspace(replacement="▁", prepend_scheme="never", split=False)
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=model,
        pad_token="<pad>",
        unk_token="<unk>",
        eos_token="<eos>",
        additional_special_tokens=list(SPECIAL_TOKENS[3:]),
    )
    # role markers are whole tokens, so the plain template costs two tokens per message
    tokenizer.chat_template = PLAIN_CHAT_TEMPLATE
    return tokenizer


# Reset seeds of the vocabulary's episodes: 10_000, 10_001, ... (unchanged since the vocabulary was
# collected through `turngym.rollout(..., seed=10_000)`, so token ids and the demo's numbers stay).
VOCAB_FIRST_SEED = 10_000


def env_texts(env_id: str, episodes: int, **env_kwargs: Any) -> list[str]:
    """The text a policy meets in `env_id`, in the order it builds the vocabulary (token ids follow
    first appearance): of `episodes` train-split episodes played by the env's expert, then of as many
    played by uniform random admissible actions (`RandomAgent`'s rule: it reaches the feedback of
    failures that the expert never sees), the instructions, observations, actions and admissible
    actions after each step.

    The env is stepped directly: building a model runs no rollout engine or agent."""
    env = make(env_id, **env_kwargs)
    try:
        turn_limit = env.spec.max_episode_steps if env.spec is not None else None
        if turn_limit is None:
            raise ConfigError(
                f"{env_id} has no turn limit: register it with max_episode_steps (TinyAgent's vocabulary "
                "plays episodes to their end), or build the agent with TinyAgent.from_texts"
            )
        texts: list[str] = []
        for by_expert in (True, False):
            for index in range(episodes):
                texts.extend(_episode_texts(env, env_id, VOCAB_FIRST_SEED + index, turn_limit, by_expert))
        return texts
    finally:
        env.close()


def _episode_texts(env: Any, env_id: str, seed: int, turn_limit: int, by_expert: bool) -> list[str]:
    """One episode's text: instructions, observations (the final one included), actions, and the
    admissible actions listed after each step. The expert plays it, or `RandomAgent`'s rule (seed 0)."""
    observation, reset_info = env.reset(seed=seed, options={"split": "train"})
    observations, actions, admissible = [observation], [], []
    info = reset_info
    for turn in range(turn_limit):
        if by_expert:
            action = env.unwrapped.expert_action()
            if action is None:
                raise TurnGymError(
                    f"{env_id} has no scripted expert (expert_action() is None), whose episodes "
                    "TinyAgent.from_env reads for its vocabulary: build the agent with TinyAgent.from_texts"
                )
        else:
            task_id = reset_info.get("task_id", "")
            action = random_action(
                env, info, observation, seed=0, episode_seed=seed, task_id=task_id, turn=turn
            )
        observation, _, terminated, truncated, info = env.step(action)
        actions.append(action)
        observations.append(observation)
        admissible.extend(info.get("admissible_actions") or [])
        if terminated or truncated:
            break
    return [env.get_wrapper_attr("instructions"), *observations, *actions, *admissible]


class TinyAgent(HFAgent):
    """A from-scratch GPT-2 policy for CPU training (see `TinyConfig`)."""

    @classmethod
    def from_env(
        cls,
        env_id: str,
        config: TinyConfig | None = None,
        sampling: SamplingConfig | None = None,
        *,
        env_kwargs: dict[str, Any] | None = None,
        name: str = "tiny",
    ) -> TinyAgent:
        """Build the tokenizer from `env_id`'s text and a randomly initialised model."""
        config = config or TinyConfig()
        return cls.from_texts(
            env_texts(env_id, config.vocab_episodes, **(env_kwargs or {})), config, sampling, name=name
        )

    @classmethod
    def from_texts(
        cls,
        texts: Iterable[str],
        config: TinyConfig | None = None,
        sampling: SamplingConfig | None = None,
        *,
        name: str = "tiny",
    ) -> TinyAgent:
        torch = require("torch", "hf", "TinyAgent")
        transformers = require("transformers", "hf", "TinyAgent")
        config = config or TinyConfig()
        tokenizer = word_tokenizer(texts)
        torch.manual_seed(config.seed)
        model_config = gpt2_config(
            tokenizer, config.n_positions, config.n_embd, config.n_layer, config.n_head
        )
        model = transformers.GPT2LMHeadModel(model_config)
        return cls(model, tokenizer, sampling, name=name, seed=config.seed)


def gpt2_config(tokenizer: Any, n_positions: int, n_embd: int, n_layer: int, n_head: int) -> Any:
    """A GPT-2 config from scratch over `tokenizer` (TinyAgent's policy, the ArCHer/PPO `own` critic)."""
    transformers = require("transformers", "hf", "TinyAgent")
    return transformers.GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        # the tokenizer's ids, not GPT-2's 50256 (outside this vocabulary)
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        # no dropout: RL compares log-probs of the same actions across passes (ratios, KL)
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )


def save_tiny_llama(
    env_id: str, folder: str | Path, seed: int = 0, hidden_size: int = 32, layers: int = 1
) -> str:
    """Save a random Llama (`layers` blocks of `hidden_size`; 1 x 32 by default) with a word-level
    tokenizer over `env_id`'s text as a local HF folder and return its path: a stand-in for a
    pretrained model (`model=`, `--model`, LoRA on `q_proj`/`v_proj`) where tests and `--tiny`
    examples need one in seconds."""
    tokenizer = word_tokenizer(env_texts(env_id, 8))
    return save_random_llama(tokenizer, folder, seed, hidden_size, layers, max_positions=512)


def save_random_llama(
    tokenizer: Any, folder: str | Path, seed: int, hidden_size: int, layers: int, max_positions: int
) -> str:
    """Save a random Llama sized to `tokenizer` (2 heads, `layers` blocks of `hidden_size`, weights
    from `seed`) and the tokenizer as a local HF folder; return its path."""
    torch = require("torch", "hf", "a random Llama")
    transformers = require("transformers", "hf", "a random Llama")
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    transformers.LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)
