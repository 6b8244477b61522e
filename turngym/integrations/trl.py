"""TurnGym envs in TRL's `GRPOTrainer`: text envs through `rollout_func`, tool envs through `environment_factory`.

Text envs (any registered id): `EnvRollout(env_id)` is a `rollout_func` that plays whole episodes with
TurnGym's rollout engine, the trainer's model generating each action (or TRL's vLLM engine when
`use_vllm=True`), and returns each episode as one TRL sample: the first prompt (instructions as the
system message, the first observation as the user message), then every action and observation, with
the observations masked from the loss (`env_mask`). `episode_reward` hands the episode's total reward
to TRL as its reward. Tool envs (`turngym.ToolEnv`): `tool_environment(env_id)` is an
`environment_factory` class whose methods are the env's tools; every call goes through the env's
`step`, and `get_reward` is the env's reward. `prompt_dataset(env_id, ...)` makes TRL's prompt dataset
for either path from the env's train tasks or seeds.

TRL's own code this follows (trl 1.16.0, installed): `trl/trainer/grpo_trainer.py`,
`GRPOTrainer.__init__` (how `environment_factory` classes become tools and `get_reward` a reward
column), `GRPOTrainer._generate` (what `rollout_func` receives and returns; `env_mask` becomes
`tool_mask`), `GRPOTrainer._generate_and_score_completions` (`reset(**row)`, extra keys to the reward
functions), `GRPOTrainer._get_tool_suffix_ids` (the tokens between two generations) and
`GRPOTrainer._generate_single_turn` (generation under `unwrap_model_for_generation`).
"""

from __future__ import annotations

import contextlib
import inspect
import typing
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from turngym.agents.hf import HFAgent
from turngym.agents.sampling import Generation, SamplingConfig, cut_at_stop, stream_seed
from turngym.core import SPLITS
from turngym.engine.rollout import rollout
from turngym.errors import ConfigError, TurnGymError, require
from turngym.registry import make
from turngym.tool_env import ToolCall, ToolEnv
from turngym.types import Conversation, Message, Trajectory

if TYPE_CHECKING:
    import datasets

EPISODE_KEY = "episode"
"""The key of the system message of a `prompt_dataset` prompt that names its episode (`seed`, `split`,
`task_id`, `env_id`): `rollout_func` receives only the prompts' messages, not the dataset's other
columns, so the episode travels inside the prompt (chat templates ignore the extra key)."""

EPISODE_OVER = "The episode is over: no more tool calls are read."
SUBMIT_HINT = "Call the tools to find the answer, then give your final answer with the `submit` tool."


# --------------------------------------------------------------------------- the prompt dataset


def prompt_dataset(
    env_id: str,
    num_prompts: int | None = None,
    *,
    split: str = "train",
    seed: int = 0,
    env_kwargs: dict[str, Any] | None = None,
) -> datasets.Dataset:
    """TRL's prompt dataset for `env_id`: one row per episode start, with the columns `prompt`
    (conversational), `seed`, `task_id`, `split` and `env_id`.

    Episode i resets with seed `seed + i` and, where the env lists the tasks of `split`, the i-th of
    them (all of them when `num_prompts` is None); an env with procedural tasks needs `num_prompts`.
    For a text env the prompt is what TurnGym's rollout shows at turn 0 (the instructions as the
    system message, the first observation as the user message) and its system message carries the
    episode under `EPISODE_KEY` for `EnvRollout`. For a tool env (`ToolEnv`) the user message is empty:
    TRL appends what `reset(**row)` returns (the first observation) to it."""
    datasets_module = require("datasets", "data", "prompt_dataset")
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; valid splits: {list(SPLITS)}")
    if num_prompts is not None and num_prompts < 1:
        raise ConfigError(f"num_prompts must be >= 1, got {num_prompts}")
    env = make(env_id, **(env_kwargs or {}))
    try:
        listed = env.unwrapped.task_ids(split)
        if listed is None and num_prompts is None:
            raise ConfigError(
                f"{env_id} has procedural tasks (no task list): pass num_prompts= (episodes by seed)"
            )
        count = len(listed) if num_prompts is None else num_prompts
        task_ids = [listed[i % len(listed)] for i in range(count)] if listed else [None] * count
        rows = []
        for i, task_id in enumerate(task_ids):
            episode = {"env_id": env_id, "seed": seed + i, "task_id": task_id, "split": split}
            if isinstance(env.unwrapped, ToolEnv):
                system = tool_instructions(env.unwrapped)
                first_observation = ""
            else:
                options = {"split": split} if task_id is None else {"split": split, "task_id": task_id}
                first_observation, _ = env.reset(seed=seed + i, options=options)
                system = env.get_wrapper_attr("instructions")
            prompt = [
                {"role": "system", "content": system, EPISODE_KEY: episode},
                {"role": "user", "content": first_observation},
            ]
            rows.append({"prompt": prompt, **episode})
    finally:
        env.close()
    return datasets_module.Dataset.from_list(rows)


# --------------------------------------------------------------------------- text envs: rollout_func


@dataclass
class PackedEpisode:
    """One episode as one TRL sample: `prompt_ids` (turn 0's prompt) then `completion_ids`, every
    action's sampled tokens and the template's tokens of each later observation; `env_mask` is 1 on
    the policy's tokens and 0 on the env's, `logprobs` the sampler's (0.0 on the env's tokens)."""

    prompt_ids: list[int]
    completion_ids: list[int] = field(default_factory=list)
    env_mask: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)

    @property
    def context(self) -> list[int]:
        """Everything the policy conditions its next action on."""
        return self.prompt_ids + self.completion_ids

    def add(
        self, token_ids: Sequence[int], from_policy: bool, logprobs: Sequence[float] | None = None
    ) -> None:
        self.completion_ids.extend(token_ids)
        self.env_mask.extend([int(from_policy)] * len(token_ids))
        self.logprobs.extend(logprobs if logprobs is not None else [0.0] * len(token_ids))


class TrainerPolicy(HFAgent):
    """The model TRL trains, as a TurnGym agent whose context is its own sampled tokens.

    Turn 0's prompt is the conversation rendered by the chat template. After that the context is the
    previous context, the action's sampled tokens, and the template's tokens for the next observation
    (a user message) and the assistant prefix: token in, token out, as TRL's tool loop does
    (`GRPOTrainer._tool_call_loop`), so the tokens TRL scores are the tokens the policy saw and drew,
    never a re-tokenization of the decoded text. The messages are the ones TurnGym's rollout builds.

    Generates with transformers (TurnGym's batched decoding with a KV prefix cache) or, when the
    trainer has `use_vllm=True`, with TRL's vLLM engine (`trainer.vllm_generation.generate`)."""

    def __init__(self, trainer: Any, model: Any, sampling: SamplingConfig, seed: int) -> None:
        super().__init__(model, trainer.processing_class, sampling, name="trl", seed=seed)
        self.trainer = trainer
        # TRL renders every prompt with these (e.g. Qwen3's `enable_thinking`): so does the rollout
        self.template_kwargs = dict(getattr(trainer, "chat_template_kwargs", None) or {})
        self.episodes: dict[int, PackedEpisode] = {}
        self._contexts: deque[list[int]] = deque()
        self._turn_ends = _eos_through_assistant(self.tokenizer, self.template_kwargs)
        # TRL's engine is collective in server mode and under tensor parallelism: play in lock step
        vllm_mode = getattr(trainer, "vllm_mode", None)
        processes = trainer.accelerator.num_processes
        self.lockstep = getattr(trainer, "use_vllm", False) and (
            (vllm_mode == "server" and processes > 1)
            or getattr(trainer.args, "vllm_tensor_parallel_size", 1) > 1
        )

    def _render(self, messages: list[dict[str, str]]) -> list[int]:
        text = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False, **self.template_kwargs
        )
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def prompt_ids(self, conversation: Conversation) -> list[int]:
        # `HFAgent.generate` asks for each conversation's prompt in order: hand it the packed contexts
        if self._contexts:
            return self._contexts.popleft()
        return super().prompt_ids(conversation)

    def generate(
        self,
        conversations: Sequence[Conversation],
        sampling: SamplingConfig | None = None,
        *,
        streams: Sequence[tuple] | None = None,
    ) -> list[Generation]:
        if streams is None:
            raise TurnGymError(
                "TrainerPolicy plays inside turngym.rollout, which names each episode's stream"
            )
        # the rollout names each row (seed, episode index, env seed, turn): the index finds its episode
        indices = [stream[1] for stream in streams]
        contexts = [self._context(conversation, index) for conversation, index in zip(conversations, indices)]
        if getattr(self.trainer, "use_vllm", False):
            generations = self._vllm_generate(contexts)
        else:
            self._contexts = deque(contexts)
            try:
                generations = super().generate(conversations, sampling, streams=streams)
            finally:
                left = len(self._contexts)
                self._contexts.clear()
            if left:
                raise TurnGymError(
                    f"HFAgent.generate asked for {len(contexts) - left} of {len(contexts)} prompts"
                )
        for index, generation in zip(indices, generations):
            self.episodes[index].add(generation.token_ids, True, generation.logprobs)
        return generations

    def _context(self, conversation: Conversation, index: int) -> list[int]:
        """The token ids the policy answers `conversation` (episode `index`) with."""
        episode = self.episodes.get(index)
        if episode is None:
            if len(conversation) != 2:
                raise TurnGymError(f"episode {index} starts with {len(conversation)} messages, expected 2")
            episode = self.episodes[index] = PackedEpisode(self._render(list(conversation)))
        else:
            observation = conversation[-1]
            if observation["role"] != "user":
                raise TurnGymError(f"episode {index}: the last message is {observation['role']}, not user")
            ended = bool(episode.completion_ids) and episode.completion_ids[-1] == self.tokenizer.eos_token_id
            # an action cut by a stop string or the token limit: the template closes the turn with EOS
            closing = [] if ended else [self.tokenizer.eos_token_id]
            episode.add(closing + self._observation_ids(observation["content"]), False)
        if len(episode.context) > self.max_context_tokens:
            raise TurnGymError(
                f"episode {index} needs {len(episode.context)} context tokens, over the model's "
                f"{self.max_context_tokens} (its window less max_new_tokens): lower max_turns"
            )
        return episode.context

    def _observation_ids(self, observation: str) -> list[int]:
        """The template's tokens after an assistant turn's EOS for a user message and the assistant
        prefix (`GRPOTrainer._get_tool_suffix_ids`, with a user message instead of a tool result).
        Cut after the assistant's EOS rather than after a rendering of the exchange alone: templates
        that rewrite a past assistant turn (Qwen3 drops its empty think block) change only what comes
        before that EOS, and the policy's context keeps the tokens it sampled anyway."""
        full = self._render([*_DUMMY_TURN, {"role": "user", "content": observation}])
        ends = [i for i, token in enumerate(full) if token == self.tokenizer.eos_token_id]
        return full[ends[self._turn_ends - 1] + 1 :]

    def _vllm_generate(self, contexts: list[list[int]]) -> list[Generation]:
        """One vLLM call for all live episodes, through TRL's engine (it samples at TRL's
        temperature/top_p/top_k, at most `max_completion_length` tokens an action, and its weights
        were synced by `GRPOTrainer._generate` before `rollout_func`)."""
        if self.lockstep:
            completion_ids, logprobs = self._lockstep_round(contexts)
        else:
            _, completion_ids, logprobs, _ = self.trainer.vllm_generation.generate(
                prompts=contexts, images=None, num_generations=1
            )
        generations = []
        for ids, token_logprobs in zip(completion_ids, logprobs):
            ids = _cut_tokens_at_stop(list(ids), self.sampling.stop, self.tokenizer)
            kept = [lp[0] for lp in token_logprobs[: len(ids)]]  # the sampled token's log-prob
            text = cut_at_stop(self.tokenizer.decode(ids, skip_special_tokens=True), self.sampling.stop)
            generations.append(Generation(text, ids, kept))
        return generations

    def _lockstep_round(self, contexts: list[list[int]]) -> tuple[list, list]:
        """One engine call that every process joins with the same number of prompts.

        TRL's engine is collective in server mode (`VLLMGeneration.generate` gathers every process's
        prompts, the main process asks the server, each process takes the slice at its index times
        its prompt count) and under tensor parallelism (the group gathers its prompts): every
        process must call it as often as the others, with as many prompts. Episodes end at different
        turns on different processes, so each round starts by gathering (prompts, still playing)
        from all: a process pads its prompts to the largest count with a one-token filler, and one
        that has finished its episodes keeps joining rounds (`finish_lockstep`) until none plays."""
        import torch

        accelerator = self.trainer.accelerator
        state = torch.tensor([len(contexts), int(bool(contexts))], device=accelerator.device)
        counts = accelerator.gather(state).view(-1, 2)  # (processes, 2)
        if not counts[:, 1].any():
            return [], []
        filler = [self.tokenizer.eos_token_id]
        padded = contexts + [filler] * (int(counts[:, 0].max()) - len(contexts))
        _, completion_ids, logprobs, _ = self.trainer.vllm_generation.generate(
            prompts=padded, images=None, num_generations=1
        )
        return completion_ids[: len(contexts)], logprobs[: len(contexts)]

    def finish_lockstep(self) -> None:
        """Join the other processes' engine rounds until every process has finished its episodes."""
        while self.lockstep and self._idle_round():
            pass

    def _idle_round(self) -> bool:
        """One round with no prompts of this process's own: False once no process plays."""
        import torch

        accelerator = self.trainer.accelerator
        counts = accelerator.gather(torch.tensor([0, 0], device=accelerator.device)).view(-1, 2)
        if not counts[:, 1].any():
            return False
        filler = [self.tokenizer.eos_token_id]
        self.trainer.vllm_generation.generate(
            prompts=[filler] * int(counts[:, 0].max()), images=None, num_generations=1
        )
        return True


_DUMMY_TURN = ({"role": "user", "content": "dummy"}, {"role": "assistant", "content": "dummy"})


def _eos_through_assistant(tokenizer: Any, template_kwargs: dict[str, Any]) -> int:
    """How many EOS tokens a rendered user/assistant exchange has up to the assistant's end, the
    last of them ending the assistant's turn (the tokens after it are the next message's)."""
    text = tokenizer.apply_chat_template(
        list(_DUMMY_TURN), add_generation_prompt=False, tokenize=False, **template_kwargs
    )
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    content = tokenizer(_DUMMY_TURN[1]["content"], add_special_tokens=False)["input_ids"]
    tail = ids[len(ids) - len(content) - 2 :]
    if tokenizer.eos_token_id not in ids or tokenizer.eos_token_id not in tail:
        raise ConfigError(
            f"the chat template does not end an assistant turn with the EOS token {tokenizer.eos_token!r}, "
            "so an action's end cannot be found: use a template that does (e.g. qwen3, llama3.1)"
        )
    return ids.count(tokenizer.eos_token_id)


def _cut_tokens_at_stop(ids: list[int], stop: Sequence[str], tokenizer: Any) -> list[int]:
    """`ids` up to and including the token that completes a stop string (vLLM without `stop`
    samples past it; TurnGym's decoder stops there)."""
    stops = [s for s in stop if s]
    if not stops:
        return ids
    for end in range(1, len(ids) + 1):
        text = tokenizer.decode(ids[:end], skip_special_tokens=True)
        if any(s in text for s in stops):
            return ids[:end]
    return ids


class EnvRollout:
    """A `rollout_func` for TRL's `GRPOTrainer` that plays TurnGym episodes of `env_id`.

    Give it `prompt_dataset(env_id)` as the train dataset and `episode_reward` as a reward function:

        trainer = GRPOTrainer(model, reward_funcs=episode_reward, train_dataset=prompt_dataset(env_id),
                              rollout_func=EnvRollout(env_id), args=GRPOConfig(...))

    Each call plays one episode per prompt (TRL repeats each prompt `num_generations` times, so a
    group is that many episodes of one task and seed) with `turngym.rollout`, all of them batched,
    and returns per episode `prompt_ids`, `completion_ids`, `logprobs` (vLLM's, or None: TRL then
    computes the old log-probs itself), `env_mask`, and the reward functions' extra keys
    `episode_reward` (the trajectory's total reward), `success` and `num_turns`.

    `max_new_tokens` caps each action (default: TRL's `max_completion_length`); `stop` strings end
    an action early (default none: an action ends with EOS, as the chat template renders it).
    `max_turns`, `env_kwargs`, `env_workers` and `env_backend` are `turngym.rollout`'s. The
    trajectories of the last call are kept in `last_trajectories`."""

    def __init__(
        self,
        env_id: str,
        *,
        max_turns: int | None = None,
        max_new_tokens: int | None = None,
        stop: Sequence[str] = (),
        env_kwargs: dict[str, Any] | None = None,
        env_workers: int = 0,
        env_backend: str | None = None,
    ) -> None:
        env = make(env_id, **(env_kwargs or {}))
        try:
            if isinstance(env.unwrapped, ToolEnv):
                raise ConfigError(
                    f"{env_id} is a tool env: train it through environment_factory=tool_environment({env_id!r}), "
                    "which renders its tools with the chat template"
                )
        finally:
            env.close()
        if max_new_tokens is not None and max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        self.env_id = env_id
        self.max_turns = max_turns
        self.max_new_tokens = max_new_tokens
        self.stop = tuple(stop)
        self.env_kwargs = dict(env_kwargs or {})
        self.env_workers = env_workers
        self.env_backend = env_backend
        self.last_trajectories: list[Trajectory] = []
        self._calls = 0

    def __call__(self, prompts: list[Conversation], trainer: Any) -> dict[str, list]:
        episodes = [self._episode_of(prompt) for prompt in prompts]
        splits = sorted({e.get("split") or "train" for e in episodes})
        if len(splits) > 1:
            raise ConfigError(f"one rollout plays one split; the prompts mix {splits}")
        _check_trainer(trainer)
        sampling = SamplingConfig(
            temperature=trainer.temperature,
            top_p=trainer.top_p,
            max_new_tokens=self.max_new_tokens or trainer.max_completion_length,
            stop=self.stop,
        )
        # a new sampling stream every call and rank: the rollout seeds each episode's sampler from it
        seed = stream_seed(
            trainer.args.seed, trainer.state.global_step, trainer.accelerator.process_index, self._calls
        )
        self._calls += 1
        use_vllm = getattr(trainer, "use_vllm", False)
        # vLLM holds its own copy of the weights: the trainer's model only lends its config then
        generation = contextlib.nullcontext(trainer.model) if use_vllm else _model_for_generation(trainer)
        with generation as model:
            policy = TrainerPolicy(trainer, model, sampling, seed)
            trajectories = rollout(
                self.env_id,
                policy,
                seeds=[e["seed"] for e in episodes],
                task_ids=[e["task_id"] for e in episodes],
                seed=seed,
                split=splits[0],
                batch_size=len(prompts),
                max_turns=self.max_turns,
                env_kwargs=self.env_kwargs,
                env_workers=self.env_workers,
                backend=self.env_backend,
            )
            policy.finish_lockstep()
        self.last_trajectories = trajectories
        packed = [policy.episodes[i] for i in range(len(trajectories))]
        return {
            "prompt_ids": [p.prompt_ids for p in packed],
            "completion_ids": [p.completion_ids for p in packed],
            "logprobs": [p.logprobs for p in packed] if use_vllm else None,
            "env_mask": [p.env_mask for p in packed],
            "episode_reward": [float(t.total_reward) for t in trajectories],
            "success": [bool(t.success) for t in trajectories],
            "num_turns": [t.num_turns for t in trajectories],
        }

    def _episode_of(self, prompt: Sequence[Message]) -> dict[str, Any]:
        episode = next(
            (m.get(EPISODE_KEY) for m in prompt if isinstance(m, dict) and m.get(EPISODE_KEY)), None
        )
        if episode is None:
            raise ConfigError(
                "a prompt names no episode: build the train dataset with "
                f"turngym.integrations.trl.prompt_dataset({self.env_id!r})"
            )
        if episode.get("env_id") not in (None, self.env_id):
            raise ConfigError(f"a prompt of {episode['env_id']} reached the rollout of {self.env_id}")
        return episode


def _check_trainer(trainer: Any) -> None:
    """Refuse TRL settings the transformers path would get wrong: sampling options TurnGym's decoder
    does not apply (TRL's vLLM engine applies them all), and sharded models whose every forward
    pass is collective (FSDP; DeepSpeed ZeRO-3 without `ds3_gather_for_generation`), which
    transformers' `generate` keeps in step across processes (`synced_gpus`) and TurnGym's
    turn-by-turn decoding does not."""
    if getattr(trainer, "use_vllm", False):
        return
    distributed = getattr(trainer, "_dist", None)
    if distributed is not None and trainer.accelerator.num_processes > 1:
        if distributed.is_fsdp:
            raise ConfigError(
                "EnvRollout cannot generate with an FSDP-sharded model on several processes: use "
                "use_vllm=True, or DDP / DeepSpeed ZeRO-2/3"
            )
        if distributed.is_zero3 and not trainer.args.ds3_gather_for_generation:
            raise ConfigError(
                "EnvRollout under DeepSpeed ZeRO-3 needs ds3_gather_for_generation=True (the default), "
                "or use_vllm=True"
            )
    ignored = {
        "top_k": (trainer.top_k, (0, None)),
        "min_p": (trainer.min_p, (None, 0.0)),
        "repetition_penalty": (trainer.repetition_penalty, (1.0,)),
    }
    set_keys = [f"{k}={v}" for k, (v, defaults) in ignored.items() if v not in defaults]
    if set_keys:
        raise ConfigError(
            f"EnvRollout samples with temperature and top_p only; unset {', '.join(set_keys)} (or use_vllm=True)"
        )


@contextlib.contextmanager
def _model_for_generation(trainer: Any):
    """The trainer's model ready to generate, as `GRPOTrainer._generate_single_turn` gets it:
    DeepSpeed ZeRO-3 parameters gathered, FSDP parameters summoned."""
    from trl.models import unwrap_model_for_generation

    distributed = getattr(trainer, "_dist", None)
    summon = (
        distributed.summon_full_params(trainer.model_wrapped, recurse=False)
        if distributed is not None
        else contextlib.nullcontext()
    )
    with (
        unwrap_model_for_generation(
            trainer.model_wrapped,
            trainer.accelerator,
            gather_deepspeed3_params=trainer.args.ds3_gather_for_generation,
        ) as model,
        summon,
    ):
        yield model


def episode_reward(completions: list[Any], episode_reward: list[float], **kwargs: Any) -> list[float]:
    """TRL reward function: the total reward of each completion's TurnGym episode (`EnvRollout`'s
    `episode_reward` key)."""
    if len(episode_reward) != len(completions):
        raise TurnGymError(f"{len(completions)} completions but {len(episode_reward)} episode rewards")
    return [float(r) for r in episode_reward]


# --------------------------------------------------------------------------- tool envs: environment_factory


def tool_instructions(env: ToolEnv) -> str:
    """The system message of a tool env under TRL: the env's description and how to answer (the chat
    template lists the tools itself, from the methods' docstrings)."""
    return f"{env.description}\n\n{SUBMIT_HINT}"


class ToolEnvironment:
    """Base of the classes `tool_environment` makes: one TurnGym tool env per instance. TRL calls
    `reset(**row)` before each rollout, the tool methods the model calls, then `get_reward()`."""

    env_id: typing.ClassVar[str]
    env_kwargs: typing.ClassVar[dict[str, Any]]

    def __init__(self) -> None:
        self._env = make(self.env_id, **self.env_kwargs)
        self._done = True
        self.rewards: list[float] = []
        self.actions: list[str] = []

    def reset(self, **row: Any) -> str:
        """Start the row's episode (`seed`, `task_id` and `split` columns, as `prompt_dataset` writes
        them) and return its first observation (TRL appends it to the user message)."""
        task_id = row.get("task_id")
        options: dict[str, Any] = {"split": row.get("split", "train")}
        if task_id is not None:
            options["task_id"] = task_id
        observation, _ = self._env.reset(seed=row.get("seed"), options=options)
        self._done = False
        self.rewards, self.actions = [], []
        return observation

    def get_reward(self) -> float:
        """The episode's total reward so far (a `ToolEnv` pays 1 for a correct final answer)."""
        return float(sum(self.rewards))

    def _call(self, name: str, arguments: dict[str, Any]) -> str:
        """One tool call as one env step: the env parses, validates and counts it as its own actions."""
        if self._done:
            return EPISODE_OVER
        action = ToolCall(name, arguments).to_action()
        observation, reward, terminated, truncated, _ = self._env.step(action)
        self.actions.append(action)
        self.rewards.append(float(reward))
        self._done = bool(terminated or truncated)
        return observation


def tool_environment(env_id: str, **env_kwargs: Any) -> type[ToolEnvironment]:
    """An `environment_factory` for TRL's `GRPOTrainer`: a class whose public methods are the tools
    of the tool env `env_id` (the `submit` tool included) with their signatures and docstrings, so
    TRL renders them into the chat template and calls them."""
    env = make(env_id, **env_kwargs)
    try:
        base = env.unwrapped
        if not isinstance(base, ToolEnv):
            raise ConfigError(
                f"{env_id} is not a tool env (turngym.ToolEnv): train it through rollout_func=EnvRollout({env_id!r})"
            )
        functions = base.tool_functions()
    finally:
        env.close()
    reserved = sorted(set(functions) & {"reset", "get_reward"})
    if reserved:
        raise ConfigError(
            f"{env_id}'s tools {reserved} clash with TRL's environment methods reset/get_reward"
        )
    namespace: dict[str, Any] = {"env_id": env_id, "env_kwargs": dict(env_kwargs)}
    namespace.update({name: _tool_method(name, function) for name, function in functions.items()})
    namespace["__doc__"] = f"{env_id} for TRL's environment_factory: tools {sorted(functions)}."
    return type(f"{type(base).__name__}Environment", (ToolEnvironment,), namespace)


def _tool_method(name: str, function: Callable[..., Any]) -> Callable[..., str]:
    """A method that sends `name(**arguments)` to the env, with the tool's signature, resolved type
    hints and docstring (transformers' `get_json_schema` builds the schema TRL renders from these)."""

    def method(self: ToolEnvironment, **arguments: Any) -> str:
        return self._call(name, arguments)

    signature = inspect.signature(function)
    self_parameter = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    method.__signature__ = signature.replace(parameters=[self_parameter, *signature.parameters.values()])
    method.__annotations__ = typing.get_type_hints(function)
    method.__doc__ = inspect.getdoc(function)
    method.__name__ = method.__qualname__ = name
    return method


# --------------------------------------------------------------------------- a tiny model for tests


QWEN3_SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>",
    "<tool_response>", "</tool_response>", "<think>", "</think>",
)  # fmt: skip


def save_tiny_qwen(texts: Sequence[str], folder: str | Path, seed: int = 0, hidden_size: int = 32) -> str:
    """Save a random one-block Llama with a word-level tokenizer over `texts` that uses Qwen3's
    special tokens and chat template (`trl.chat_template_utils.qwen3_chat_template`, which TRL knows:
    it parses tool calls from it) as a local HF folder, and return its path: a stand-in for a
    pretrained chat model in tests and `--tiny` examples (seconds on CPU, nothing downloaded)."""
    chat_templates = require("trl.chat_template_utils", "trl", "save_tiny_qwen")
    from turngym.agents.tiny import save_random_llama, word_tokenizer

    def build(corpus: Sequence[str]) -> Any:
        tokenizer = word_tokenizer(corpus)
        tokenizer.add_special_tokens(
            {
                "eos_token": "<|im_end|>",
                "pad_token": "<|endoftext|>",
                "additional_special_tokens": list(QWEN3_SPECIAL_TOKENS),
            }
        )
        tokenizer.chat_template = chat_templates.qwen3_chat_template
        return tokenizer

    # the template's own words (roles, the tools preamble) join the vocabulary: render once to find them
    sample_tool = {"type": "function", "function": {"name": "tool", "description": "d", "parameters": {}}}
    markup = build(["x"]).apply_chat_template(
        [
            {"role": "system", "content": "x"},
            {"role": "user", "content": "x"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {"type": "function", "function": sample_tool["function"] | {"arguments": {"a": 1}}}
                ],
            },
            {"role": "tool", "name": "tool", "content": "x"},
        ],
        tools=[sample_tool],
        tokenize=False,
        add_generation_prompt=True,
    )
    tokenizer = build([markup, *texts])
    return save_random_llama(tokenizer, folder, seed, hidden_size, layers=1, max_positions=2048)
