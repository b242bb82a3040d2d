"""Small networks for the ZO blocks' benches: real MNIST-sized input, few parameters, fast to simulate."""
from __future__ import annotations

from ttzo.golden.network import MNIST_IN, MNIST_OUT, LayerSpec, TTNet
from ttzo.golden.tt import TTShape


def small_mnist_net(rank: int = 2, hidden: tuple[int, ...] = (2, 2, 2, 2)) -> TTNet:
    """784 -> prod(hidden) -> 10 TT-MLP (ReLU, then logits): 210 parameters at the defaults."""
    return TTNet((LayerSpec(TTShape.uniform(MNIST_IN, hidden, rank), "relu"),
                  LayerSpec(TTShape.uniform(hidden, MNIST_OUT, rank), "identity")),
                 name=f"small-mnist-r{rank}")


def segments(net: TTNet) -> list[tuple[int, int, bool]]:
    """(flat start, length, is_bias) of each block of the flat parameter order (cores, then the bias)."""
    out, pos = [], 0
    mask = net.bias_mask()
    for n in net.param_sizes():
        out.append((pos, n, bool(mask[pos])))
        pos += n
    return out
