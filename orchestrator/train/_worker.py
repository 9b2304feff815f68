"""Entry point of a data-parallel training process other than the first: ``python -m
orchestrator.train._worker FOLDER RANK WORLD`` (started by ``train_model``)."""

import sys

from orchestrator.train._train import worker

if __name__ == "__main__":
    worker(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
