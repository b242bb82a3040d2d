"""The paper's reference points (Table 2: TT-MLP on MNIST, validation accuracy in %).

Parameter counts are the paper's; 8314 and 3962 are our mnist_tt(10) and mnist_tt(6)
exactly, 2698 has no uniform rank (it lies between r=4 and r=5).  The paper trains in
float32, so its parameter storage is 4 bytes per parameter; its training-datapath bytes are
our memory budget with every format 32 bits wide (only for the two uniform-rank points).
"""
from __future__ import annotations

PAPER_BYTES_PER_PARAM = 4  # float32

#: (parameters, hybrid ZO accuracy %, first-order accuracy %, uniform rank or None)
TABLE2: tuple[tuple[int, float, float, int | None], ...] = (
    (8314, 96.77, 97.33, 10),
    (3962, 96.64, 97.16, 6),
    (2698, 95.83, 96.47, None),
)


def label(params: int, rank: int | None) -> str:
    return f"r={rank}" if rank else f"{params} p."


def paper_onchip_bytes(rank: int) -> int | None:
    """Training-datapath bytes of the paper's network at `rank` with 32-bit words everywhere."""
    from ttzo.golden.fixed import QFormat
    from ttzo.golden.formats import FixedConfig

    from .cost import onchip_bytes
    w32 = QFormat(32, 24)
    cfg = FixedConfig(input=w32, weight=w32, bias=w32, state=w32, act=w32, loss=QFormat(32, 16))
    return onchip_bytes(rank, cfg, "hybrid")
