"""Register your own environment: a number-guessing game in one class and one `register` call."""

from __future__ import annotations

import turngym
from turngym import TextEnv, parse_reset_options


class GuessNumberEnv(TextEnv):
    """Guess a secret number between 1 and `high`; the env answers higher/lower."""

    success_definition = "the secret number was guessed"

    def __init__(self, high: int = 20, render_mode: str | None = None) -> None:
        super().__init__(render_mode=render_mode)
        self.high = high
        self.secret = 0
        self.low_bound, self.high_bound = 1, high

    @property
    def instructions(self) -> str:
        return f"I picked a number from 1 to {self.high}. Reply with one number per turn."

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)  # seeds self.np_random: all randomness comes from it
        opts = parse_reset_options(options)  # validates split / task_id
        # train tasks are even secrets, test tasks odd ones: held-out evaluation
        parity = 0 if opts.split == "train" else 1
        if opts.task_id is not None:
            self.secret = int(opts.task_id)
        else:
            self.secret = int(self.np_random.choice(range(1 + (1 - parity), self.high + 1, 2)))
        self.low_bound, self.high_bound = 1, self.high
        info = {"task": "guess the number", "task_id": str(self.secret), "task_type": "guess"}
        return "Your first guess?", info

    def step(self, action):
        text = action.strip()
        if not text.isdigit():
            info = {"valid_action": False, "success": False}
            return "Please reply with a whole number.", 0.0, False, False, info
        guess = int(text)
        if guess == self.secret:
            return "Correct!", 1.0, True, False, {"valid_action": True, "success": True}
        if guess < self.secret:
            self.low_bound = max(self.low_bound, guess + 1)
        else:
            self.high_bound = min(self.high_bound, guess - 1)
        hint = "higher" if guess < self.secret else "lower"
        return f"{guess} is wrong: go {hint}.", 0.0, False, False, {"valid_action": True, "success": False}

    def expert_action(self):
        return str((self.low_bound + self.high_bound) // 2)  # binary search


turngym.register(
    "my/GuessNumber-v0",
    GuessNumberEnv,  # or a lazy "my_package.module:GuessNumberEnv" string
    max_episode_steps=10,
    description="Guess a number with higher/lower hints.",
)

if __name__ == "__main__":
    turngym.check_env(turngym.make("my/GuessNumber-v0"))
    result = turngym.evaluate("my/GuessNumber-v0", turngym.agents.ExpertAgent(), 50)
    print(f"expert success: {result.overall.success_rate:.0%}, mean turns {result.overall.mean_turns:.1f}")
