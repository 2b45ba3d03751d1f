"""The names of the files and folders ragtrain writes, each spelled once here: what prepare-data writes, a training
run's directory and its checkpoints, a saved model's card, and a tune study. A model's own format files
(config.json, modules.json, ragtrain.json, ...) belong to the model wing, which reads and writes them."""

# prepare-data's output directory
MANIFEST = "manifest.json"  # inputs, options, counts and each output's sha256
TRAIN_TRIPLES = "train.jsonl"
VAL_TRIPLES = "val.jsonl"
EVAL_DIR = "eval"  # the evaluation set, in BEIR layout

# a training run's directory (train --output-dir)
RUN_CONFIG = "config.json"  # every option as the run resolved it
METRICS_LOG = "metrics.jsonl"
CHECKPOINTS = "checkpoints"  # step-N/ folders
BEST = "best"  # the model that validated best
FINAL = "final"  # the model after the last step
AVERAGED = "averaged"  # train --average-last
TENSORBOARD_DIR = "tensorboard"
LOCK_NAME = "ragtrain.lock"  # held while a run is alive

# inside a checkpoint (checkpoints/step-N/)
CHECKPOINT_STATE = "state.json"
CHECKPOINT_MODEL = "model"

# a saved model's directory
CARD = "README.md"  # the model card
EVALUATIONS = "evaluation.json"  # what evaluate --update-card recorded

# a tune study's directory
TRIALS = "trials"  # trial-NNNN/: each trial's training run
STUDY_RESULTS = "results.json"
STUDY_TABLE = "results.csv"
