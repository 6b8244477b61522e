"""Bridges from TurnGym envs to other training libraries (`turngym.integrations.trl`: TRL's GRPOTrainer).

Each bridge imports its library lazily: importing `turngym` never imports TRL."""
