"""Generated data: learnable, as the smoke profile needs. (That it loads through the real loader is
in test_datasets.py; that its manifest says it is generated, in test_manifest.py.)"""

import pytest
import torch

from wrn.config import RunConfig, resolve
from wrn.data.fake import write_fake_dataset
from wrn.data.tensor_pipeline import make_pipeline

N_TRAIN, N_TEST = 300, 50


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_fake_dataset("cifar10", root, N_TRAIN, N_TEST, seed=0)
    return root


def cifar(**overrides):
    return resolve(RunConfig(**{"dataset": "cifar10", "preprocessing": "meanstd", "depth": 16, "k": 1,
                                "batch_size": 64, "eval_batch_size": 16, **overrides}))


def test_generated_data_is_learnable_within_two_epochs(root):
    """The smoke profile's premise: a tiny network's loss falls within two epochs."""
    torch.manual_seed(0)
    p = make_pipeline(cifar(batch_size=32), root, "cpu", download=False)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for epoch in (1, 2):
        for x, y in p.train_batches(epoch):
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.75 * first, (first, last)
