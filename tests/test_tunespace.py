"""tune's search space: the default, the --*-range flags, a JSON or TOML space file, and what is refused."""

from __future__ import annotations

import pytest

from ragtrain.config.tune import TuneConfig
from ragtrain.errors import UserError
from ragtrain.tuning.space import DEFAULT_SPACE, Param, read_space_file, search_space, suggest
from tests.conftest import write_triples

optuna = pytest.importorskip("optuna")


def config(tmp_path, **options) -> TuneConfig:
    return TuneConfig(train_data=write_triples(tmp_path / "train.jsonl"), output_dir=tmp_path / "study", **options)


def test_the_default_space_and_its_ranges(tmp_path):
    assert search_space(config(tmp_path)) == DEFAULT_SPACE
    space = {p.name: p for p in search_space(config(tmp_path, lr_range=(3e-5, 1e-4), warmup_range=(0.0, 0.0)))}
    assert (space["learning_rate"].low, space["learning_rate"].high, space["learning_rate"].log) == (3e-5, 1e-4, True)
    assert (space["warmup_ratio"].low, space["warmup_ratio"].high) == (0.0, 0.0)
    # an option given to tune is fixed, not searched
    assert [p.name for p in search_space(config(tmp_path, epochs=2, temperature=0.05))] == ["learning_rate",
                                                                                             "warmup_ratio"]


def test_a_toml_space_file_with_any_train_option(tmp_path):
    path = tmp_path / "space.toml"
    path.write_text('[learning_rate]\ntype = "float"\nlow = 1e-5\nhigh = 1e-4\nlog = true\n\n'
                    '[batch_size]\nchoices = [16, 32]\n\n[epochs]\ntype = "int"\nlow = 1\nhigh = 2\n')
    space = read_space_file(path)
    assert space == (Param("learning_rate", "float", 1e-5, 1e-4, True), Param("batch_size", "categorical",
                     choices=(16, 32)), Param("epochs", "int", 1, 2))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    values = suggest(study.ask(), space)
    assert 1e-5 <= values["learning_rate"] <= 1e-4 and values["batch_size"] in (16, 32) and values["epochs"] in (1, 2)


@pytest.mark.parametrize("content, message", [
    ('{"lr": {"low": 1, "high": 2}}', "'lr' is not a train option"),
    ('{"output_dir": {"choices": ["a"]}}', "'output_dir' is not a train option"),
    ('{"epochs": {"type": "int", "low": 3, "high": 1}}', "the range 3..1 is empty"),
    ('{"learning_rate": {"low": 0, "high": 1e-4, "log": true}}', "a log range must start above 0"),
    ('{"epochs": {"type": "int", "low": 1.2, "high": 1.8}}', "holds no integer"),
    ('{"normalize": {"low": 0, "high": 1}}', "normalize is not a number"),
    ('{"pooling": {"type": "categorical", "choices": []}}', "needs a non-empty 'choices' list"),
    ('{"epochs": {"type": "integer", "low": 1, "high": 2}}', "type must be float, int or categorical"),
    ('{"epochs": {"low": 1, "hgh": 2}}', "unknown key 'hgh'"),
    ('{}', "it is empty or not a mapping"),
    ('{"epochs": ', "cannot be read as JSON"),
])
def test_a_bad_space_file_is_one_clear_error(tmp_path, content, message):
    path = tmp_path / "space.json"
    path.write_text(content)
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(".", r"\.")):
        read_space_file(path)
