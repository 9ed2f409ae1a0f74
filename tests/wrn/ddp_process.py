"""One process of a distributed test run (tests/wrn/test_distributed.py starts it with torch's env://
variables): train a config given as JSON, optionally asking this rank to stop after some steps, and
print the result as JSON on the last line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from wrn import distributed
from wrn.config import RunConfig
from wrn.train import TrainingInterrupted, train


def main() -> int:
    config, run_dir, data_dir, stop_after = json.loads(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(1)
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return 0 <= stop_after < calls["n"]

    try:
        result = train(RunConfig.from_dict(config), run_dir, data_dir, device="cpu", should_stop=stop, progress=False)
    except TrainingInterrupted as e:
        print(json.dumps({"interrupted": [e.epoch, e.step]}))
        return 3
    finally:  # a process group left to the interpreter's exit can abort it ("terminate called ...")
        distributed.leave()
    print(json.dumps(result.to_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
