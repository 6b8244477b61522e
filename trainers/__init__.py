"""Trainers (`turngym.trainers`): one file per algorithm, each with one config dataclass."""
