"""TurnGym envs in TRL's GRPOTrainer (`turngym.integrations.trl`): the env's reward is TRL's reward,
observations are masked from the loss, tool envs' tools are TRL's tools."""

from __future__ import annotations

import os
from types import SimpleNamespace
from typing import Any

import pytest

import turngym
from turngym import TextEnv, parse_reset_options
from turngym.errors import ConfigError

pytest.importorskip("trl")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import GRPOConfig, GRPOTrainer

from turngym.integrations.trl import (
    EPISODE_OVER,
    EnvRollout,
    episode_reward,
    prompt_dataset,
    save_tiny_qwen,
    tool_environment,
)
from turngym.tool_env import function_schema

WORDS = "test/Words-v0"


class WordsEnv(TextEnv):
    """Three turns; each pays the number of words of the reply (at most 3) over 3: a random model's
    episodes get different rewards, so a reward that did not reach TRL would show."""

    @property
    def instructions(self) -> str:
        return "Say a few words every turn."

    def task_ids(self, split: str = "train") -> list[str]:
        return ["words"]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        parse_reset_options(options)
        self.turn = 0
        return "Turn zero: speak.", {"task": "speak", "task_id": "words"}

    def step(self, action: str):
        self.turn += 1
        reward = min(len(str(action).split()), 3) / 3
        done = self.turn == 3
        return (
            f"Turn {self.turn}: heard you, speak again.",
            reward,
            done,
            False,
            {"valid_action": True, "success": done},
        )


turngym.register(WORDS, WordsEnv, max_episode_steps=3, listed=False)


def tiny_model(tmp_path, texts):
    folder = save_tiny_qwen(texts, tmp_path / "model")
    return AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)


def grpo_config(tmp_path, **overrides) -> GRPOConfig:
    settings = dict(
        output_dir=str(tmp_path / "grpo"),
        max_steps=2,
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=6,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=True,
        bf16=False,
        seed=0,
    )
    return GRPOConfig(**(settings | overrides))


def test_text_env_episodes_reach_trl_with_their_reward_and_observations_masked(tmp_path):
    model, tokenizer = tiny_model(
        tmp_path, ["Say a few words every turn.", "Turn zero: speak.", "Turn 1 2 3: heard you, speak again."]
    )
    rollout_func = EnvRollout(WORDS, max_new_tokens=6)
    played, scored = [], []
    original_rollout = rollout_func.__call__

    class Recording(EnvRollout):
        def __call__(self, prompts, trainer):
            output = original_rollout(prompts, trainer)
            played.append((list(self.last_trajectories), output))
            return output

    rollout_func.__class__ = Recording
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=episode_reward,
        args=grpo_config(tmp_path),
        train_dataset=prompt_dataset(WORDS, 8),
        processing_class=tokenizer,
        rollout_func=rollout_func,
    )
    score = trainer._generate_and_score_completions

    def recording_score(inputs):
        result = score(inputs)
        scored.append(result)
        return result

    trainer._generate_and_score_completions = recording_score
    trainer.train()

    logs = [log for log in trainer.state.log_history if "rewards/episode_reward/mean" in log]
    assert len(logs) == len(played) == len(scored) == 2
    all_rewards = []
    for log, (trajectories, output), result in zip(logs, played, scored):
        rewards = [t.total_reward for t in trajectories]
        all_rewards += rewards
        assert log["rewards/episode_reward/mean"] == pytest.approx(sum(rewards) / len(rewards))
        for trajectory, prompt_ids, completion_ids, env_mask in zip(
            trajectories, output["prompt_ids"], output["completion_ids"], output["env_mask"]
        ):
            assert trajectory.num_turns == 3
            # the first prompt is the conversation TurnGym's rollout starts with
            first = tokenizer.apply_chat_template(
                trajectory.to_messages()[:2], add_generation_prompt=True, tokenize=False
            )
            assert tokenizer.decode(prompt_ids) == first
            # the policy's tokens are the actions it sampled; the env's tokens hold the observations
            policy = [t for t, m in zip(completion_ids, env_mask) if m == 1]
            env = tokenizer.decode([t for t, m in zip(completion_ids, env_mask) if m == 0])
            assert policy == [token for turn in trajectory.turns for token in turn.action_tokens]
            assert env.count("heard you, speak again.") == 2  # the observations after turns 1 and 2
        # TRL trains on exactly the policy's tokens: its tool_mask is our env_mask
        tool_mask = result["tool_mask"]
        for row, env_mask in enumerate(output["env_mask"]):
            assert tool_mask[row, : len(env_mask)].tolist() == env_mask
    assert len(set(all_rewards)) > 1, "all episodes got one reward: the check above could not fail"


def test_prompt_dataset_rows_and_errors():
    rows = prompt_dataset("turngym/KeyDoor-v0", 3, seed=5)
    assert rows["seed"] == [5, 6, 7]
    env = turngym.make("turngym/KeyDoor-v0")
    observation, _ = env.reset(seed=6, options={"split": "train", "task_id": rows["task_id"][1]})
    assert rows[1]["prompt"][0]["content"] == env.get_wrapper_attr("instructions")
    assert rows[1]["prompt"][1]["content"] == observation
    with pytest.raises(ConfigError, match="unknown split"):
        prompt_dataset("turngym/KeyDoor-v0", 3, split="dev")
    with pytest.raises(ConfigError, match="tool env"):
        EnvRollout("turngym/Calc-v0")
    with pytest.raises(ConfigError, match="not a tool env"):
        tool_environment("turngym/KeyDoor-v0")
    with pytest.raises(ConfigError, match="names no episode"):
        EnvRollout(WORDS)._episode_of([{"role": "user", "content": "hi"}])


def test_tool_environment_steps_the_env():
    Calc = tool_environment("turngym/Calc-v0")
    row = prompt_dataset("turngym/Calc-v0", 1)[0]
    calc = Calc()
    observation = calc.reset(**row)
    env = turngym.make("turngym/Calc-v0")
    expected, _ = env.reset(seed=row["seed"], options={"split": "train", "task_id": row["task_id"]})
    assert observation == expected
    # the tools have the env's schemas (TRL renders them from the methods)
    from transformers.utils import get_json_schema

    for name, function in env.unwrapped.tool_functions().items():
        schema = get_json_schema(getattr(calc, name))
        schema["function"].pop("return")  # transformers adds the return type; TurnGym's schemas leave it out
        assert schema == function_schema(function, name)
    gold = env.unwrapped.task.answer
    assert (
        calc.calculate(expression="2 + 3")
        == env.step('{"name": "calculate", "arguments": {"expression": "2 + 3"}}')[0]
    )
    assert calc.get_reward() == 0.0
    assert calc.submit(answer=str(gold)).startswith("Your answer is correct")
    assert calc.get_reward() == 1.0
    assert calc.calculate(expression="1") == EPISODE_OVER


def test_tool_env_trains_through_environment_factory_with_the_env_reward(tmp_path):
    """A tiny model taught to submit the first task's answer as a Qwen3 tool call, then 2 GRPO steps:
    TRL calls `submit`, the env checks it, and the env's reward is TRL's reward column."""
    import torch

    Calc = tool_environment("turngym/Calc-v0")
    dataset = prompt_dataset("turngym/Calc-v0", 1)
    calc = Calc()
    observation = calc.reset(**dataset[0])
    answer = next(
        t.answer
        for t in turngym.make("turngym/Calc-v0").unwrapped.task_table()[0]
        if t.task_id == dataset[0]["task_id"]
    )
    call = f'<tool_call>\n{{"name": "submit", "arguments": {{"answer": "{answer}"}}}}\n</tool_call>'
    prompt = [{"role": m["role"], "content": m["content"]} for m in dataset[0]["prompt"]]
    prompt[-1]["content"] += observation
    tools = [getattr(calc, name) for name in ("calculate", "submit")]
    model, tokenizer = tiny_model(
        tmp_path,
        [prompt[0]["content"], observation, call, str(calc.calculate.__doc__), str(calc.submit.__doc__)],
    )
    text = tokenizer.apply_chat_template(prompt, tools=tools, add_generation_prompt=True, tokenize=False)
    prompt_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    target = tokenizer(call, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert tokenizer.unk_token_id not in target
    ids = torch.tensor([prompt_ids + target])
    labels = torch.tensor([[-100] * len(prompt_ids) + target])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-2)
    for _ in range(300):  # until the call is memorised: 50 fixed steps left a loss of 0.2 on some CPUs
        loss = model(input_ids=ids, labels=labels).loss
        if loss.item() < 0.01:
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.01, loss.item()

    trainer = GRPOTrainer(
        model=model,
        args=grpo_config(tmp_path, max_completion_length=128, learning_rate=1e-4),
        train_dataset=dataset,
        processing_class=tokenizer,
        environment_factory=Calc,
    )
    assert sorted(tool.__name__ for tool in trainer.tools) == ["calculate", "submit"]
    score, env_rewards, scored = trainer._generate_and_score_completions, [], []

    def recording_score(inputs):
        result = score(inputs)
        env_rewards.append([environment.get_reward() for environment in trainer.environments])
        scored.append(result)
        return result

    trainer._generate_and_score_completions = recording_score
    trainer.train()
    logs = [log for log in trainer.state.log_history if "rewards/CalcEnvEnvironment/mean" in log]
    assert len(logs) == len(env_rewards) == 2
    for log, rewards in zip(logs, env_rewards):
        assert log["rewards/CalcEnvEnvironment/mean"] == pytest.approx(sum(rewards) / len(rewards))
    assert any(r == 1.0 for rewards in env_rewards for r in rewards), (
        "no episode was solved: the check could not fail"
    )
    # the env's answer to `submit` came back as a tool message, masked from the loss
    assert any((result["tool_mask"] == 0).any() for result in scored)


class FakeVLLMGeneration:
    """TRL's `VLLMGeneration.generate` as `EnvRollout` calls it, answering every prompt with `reply`
    (token ids) and one log-prob per token; it records the prompts it was sent."""

    def __init__(self, reply: list[int]) -> None:
        self.reply, self.prompts = reply, []

    def generate(self, prompts, images, num_generations, profiler=None):
        assert images is None and num_generations == 1
        self.prompts.append([list(p) for p in prompts])
        logprobs = [[[-0.1 * (i + 1)] for i in range(len(self.reply))] for _ in prompts]
        return prompts, [list(self.reply) for _ in prompts], logprobs, None


def fake_trainer(model, tokenizer, **overrides):
    """The attributes of a `GRPOTrainer` that `EnvRollout` reads."""

    settings = dict(
        processing_class=tokenizer,
        model=model,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        min_p=None,
        repetition_penalty=1.0,
        max_completion_length=8,
        use_vllm=True,
        vllm_mode="colocate",
        args=SimpleNamespace(seed=0, vllm_tensor_parallel_size=1),
        state=SimpleNamespace(global_step=0),
        accelerator=SimpleNamespace(process_index=0, num_processes=1),
    )
    return SimpleNamespace(**(settings | overrides))


def test_vllm_mode_generates_with_trls_engine_and_cuts_actions_at_stop(tmp_path):
    model, tokenizer = tiny_model(
        tmp_path,
        [
            "Say a few words every turn.",
            "Turn zero: speak.",
            "Turn 1 2: heard you, speak again.",
            "hello there friend",
        ],
    )
    hello = tokenizer("hello there", add_special_tokens=False)["input_ids"]
    newline = tokenizer("\n", add_special_tokens=False)["input_ids"]
    vllm = FakeVLLMGeneration(hello + newline + tokenizer("friend", add_special_tokens=False)["input_ids"])
    trainer = fake_trainer(model, tokenizer, vllm_generation=vllm)
    prompts = [row["prompt"] for row in prompt_dataset(WORDS, 2)]
    output = EnvRollout(WORDS, stop=("\n",))(prompts, trainer)

    assert len(vllm.prompts) == 3  # one engine call per turn for both episodes
    action = (
        hello + newline
    )  # vLLM samples past the stop string; the action ends with the token that completed it
    for row, (completion, mask, logprobs) in enumerate(
        zip(output["completion_ids"], output["env_mask"], output["logprobs"])
    ):
        policy = [t for t, m in zip(completion, mask) if m]
        assert policy == action * 3
        assert [lp for lp, m in zip(logprobs, mask) if m] == pytest.approx(
            [-0.1 * (i + 1) for i in range(len(action))] * 3
        )
        assert all(lp == 0.0 for lp, m in zip(logprobs, mask) if not m)
        # turn 2's prompt is turn 1's, the action, EOS (the template closes the cut turn) and the observation
        turn1, turn2 = vllm.prompts[0][row], vllm.prompts[1][row]
        assert turn2[: len(turn1) + len(action) + 1] == [*turn1, *action, tokenizer.eos_token_id]
        assert "heard you, speak again." in tokenizer.decode(turn2[len(turn1) :])
    assert output["episode_reward"] == [pytest.approx(2 / 3 * 3)] * 2  # "hello there" is 2 words, 3 turns


def test_unsupported_trainer_settings_are_one_line_errors(tmp_path):
    model, tokenizer = tiny_model(tmp_path, ["Say a few words every turn."])
    prompts = [row["prompt"] for row in prompt_dataset(WORDS, 1)]
    two = SimpleNamespace(process_index=0, num_processes=2)
    fsdp = fake_trainer(
        model, tokenizer, use_vllm=False, accelerator=two, _dist=SimpleNamespace(is_fsdp=True)
    )
    with pytest.raises(ConfigError, match="FSDP-sharded"):
        EnvRollout(WORDS)(prompts, fsdp)
    zero3 = fake_trainer(
        model,
        tokenizer,
        use_vllm=False,
        accelerator=two,
        _dist=SimpleNamespace(is_fsdp=False, is_zero3=True),
        args=SimpleNamespace(seed=0, ds3_gather_for_generation=False),
    )
    with pytest.raises(ConfigError, match="ds3_gather_for_generation=True"):
        EnvRollout(WORDS)(prompts, zero3)
    top_k = fake_trainer(model, tokenizer, use_vllm=False, top_k=5)
    with pytest.raises(ConfigError, match="unset top_k=5"):
        EnvRollout(WORDS)(prompts, top_k)
    with pytest.raises(ConfigError, match="mix"):
        mixed = [
            prompts[0],
            [{**prompts[0][0], "episode": {**prompts[0][0]["episode"], "split": "test"}}, prompts[0][1]],
        ]
        EnvRollout(WORDS)(mixed, top_k)


def test_prompts_are_rendered_with_trls_chat_template_kwargs(tmp_path):
    model, tokenizer = tiny_model(tmp_path, ["Say a few words every turn.", "Turn zero: speak."])
    vllm = FakeVLLMGeneration([tokenizer.eos_token_id])
    trainer = fake_trainer(
        model, tokenizer, vllm_generation=vllm, chat_template_kwargs={"enable_thinking": False}
    )
    EnvRollout(WORDS, max_turns=2)([row["prompt"] for row in prompt_dataset(WORDS, 1)], trainer)
    for prompt in (vllm.prompts[0][0], vllm.prompts[1][0]):  # Qwen3 without thinking: an empty think block
        assert tokenizer.decode(prompt).endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")


@pytest.mark.slow  # two processes that each import torch, transformers and TRL: 30-90 s here
def test_vllm_server_mode_on_two_processes_plays_in_lock_step(tmp_path):
    """TRL's engine in server mode is collective: a process whose episodes ended keeps joining its
    rounds until every process has finished, and each process gets the answers to its own prompts."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    worker = Path(__file__).with_name("lockstep_worker.py")
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    done = subprocess.run(
        [*launch, str(worker), str(tmp_path / "model")], capture_output=True, text=True, timeout=240
    )
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert done.returncode == 0 and len(lines) == 2, done.stderr[-2000:]
    first, second = sorted(lines, key=lambda line: line["rank"])
    assert first["turns"] == [1, 1] and second["turns"] == [3, 3]
    assert (
        first["engine_calls"] == second["engine_calls"] == 3
    )  # process 0 joined 2 rounds after its last turn
    assert first["own_prompts"] == 2 and second["own_prompts"] == 6
    assert first["answers_match"] and second["answers_match"]
    assert first["rewards"] == [1.0, 1.0] and second["rewards"] == [3.0, 3.0]


def test_a_template_that_does_not_end_turns_with_eos_is_a_one_line_error(tmp_path):
    model, tokenizer = tiny_model(tmp_path, ["Say a few words every turn."])
    tokenizer.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    trainer = fake_trainer(model, tokenizer, vllm_generation=FakeVLLMGeneration([tokenizer.eos_token_id]))
    with pytest.raises(ConfigError, match="does not end an assistant turn with the EOS token") as error:
        EnvRollout(WORDS)([row["prompt"] for row in prompt_dataset(WORDS, 1)], trainer)
    assert "\n" not in str(error.value)
