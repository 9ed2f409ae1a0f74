"""The data folders the loader's tests work on: one pristine copy of every dataset, generated with
N_TRAIN training and N_TEST test images (the test modules' own constants repeat these sizes), and
copies of it for the tests that damage data."""

import shutil

import pytest

from wrn.data.fake import write_fake_dataset
from wrn.data.layout import dataset_folder

N_TRAIN, N_TEST = 60, 20


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """One pristine copy of every dataset; tests that damage data work on a copy."""
    root = tmp_path_factory.mktemp("data")
    for name in ("cifar10", "cifar100", "svhn", "imagenet"):
        write_fake_dataset(name, root, N_TRAIN, N_TEST, seed=1)
    return root


@pytest.fixture
def copy_of(generated, tmp_path):
    def make(name):
        shutil.copytree(dataset_folder(name, generated), dataset_folder(name, tmp_path))
        return tmp_path
    return make
