"""A run's directory: locked for one run, refused when it holds something else, and resumed from its checkpoint."""

from __future__ import annotations

import pytest

from ragtrain.config.common import as_dict
from ragtrain.config.train import TrainConfig
from ragtrain.errors import UserError
from ragtrain.files.names import LOCK_NAME
from ragtrain.model.world import WorldInfo
from ragtrain.training.checkpoint import Checkpoint, TrainState
from ragtrain.training.rundir import resume_config, resume_point, run_directory


def test_the_directory_is_locked_while_the_run_lives_and_a_second_run_stops(tmp_path):
    run = tmp_path / "run"
    with run_directory(run, WorldInfo()):
        assert (run / LOCK_NAME).is_file()
        with pytest.raises(UserError, match="is in use by another 'ragtrain train'"):
            with run_directory(run, WorldInfo()):
                pass
    assert not run.exists()  # made for the run, left empty: removed with the lock


def test_a_new_run_needs_an_empty_directory_and_resume_needs_a_checkpoint(tmp_path, triples_file):
    run = tmp_path / "run"
    assert resume_point(TrainConfig(train_data=triples_file, output_dir=run)) is None
    (run / "notes").mkdir(parents=True)
    with pytest.raises(UserError, match="holds no ragtrain run"):
        resume_point(TrainConfig(train_data=triples_file, output_dir=run))
    with pytest.raises(UserError, match="--resume: no checkpoint in"):
        resume_point(TrainConfig(train_data=triples_file, output_dir=run, resume="latest"))


def test_resuming_keeps_the_checkpoints_options_and_says_so(tmp_path, triples_file, capsys):
    saved = as_dict(TrainConfig(train_data=triples_file, batch_size=16, eval_steps=5))
    checkpoint = Checkpoint(tmp_path / "step-4", TrainState(step=4), saved)
    config = resume_config(TrainConfig(train_data=triples_file, batch_size=8, eval_steps=2, resume="latest"), checkpoint)
    assert (config.batch_size, config.eval_steps) == (16, 2)  # the batch shapes the run; how often to validate does not
    err = capsys.readouterr().err
    assert "--batch-size 8 differs from the checkpoint; keeping the checkpoint's 16" in err
    assert f"resuming from {tmp_path / 'step-4'} (step 4)" in err
    resume_config(TrainConfig(train_data=triples_file, batch_size=8, resume="latest"), checkpoint, main=False)
    assert capsys.readouterr().err == ""  # only rank 0 speaks
