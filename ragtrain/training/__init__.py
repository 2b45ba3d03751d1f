"""The training loop and its parts: the step, losses, GradCache, optimizer and schedule, checkpoints and resume,
several processes (torchrun), validation, the run's log and trackers.
"""
