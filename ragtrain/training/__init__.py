"""The training loop and what it is made of: setup (data, model, optimizer, state), the loop, each step (step, loss,
gradcache), the optimizer and schedule, checkpoints and resume (checkpoint, rundir), several processes under
torchrun (distributed), validation, the run's log and trackers, and the end of a run (finish).
"""
