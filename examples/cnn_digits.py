"""Train a small CNN on scikit-learn's bundled 8x8 handwritten digits, eagerly and then compiled.

The same data, loop and printout as mlp_digits.py (whose functions this script uses), with a convolutional
model: two 3x3 convolutions with ReLU and a 2x2 max pool, then a linear layer. The compiled run traces
the whole step (convolutions, pooling, their gradients and the Adam update) into one fused native kernel.
It prints the loss every few epochs, the test accuracy and the median step time of each run, and the
speed-up.

Run: python examples/cnn_digits.py [--epochs N]   (needs scikit-learn)
"""
from mlp_digits import main

from tracegrad import nn


def cnn() -> nn.Module:
    """8x8 images (the 64 pixels unflattened) through two convolutions to 10 classes."""
    return nn.Sequential(nn.Unflatten(1, (1, 8, 8)),
                         nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # 8 x 4 x 4
                         nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),                    # 16 x 4 x 4
                         nn.Flatten(), nn.Linear(16 * 4 * 4, 10))


if __name__ == "__main__":
    main(cnn, lr=3e-3, description=__doc__)
