"""Word map of the serial design's `bulk` memory (docs/rtl-serial.md): batch, parameters, labels, scratch, log.

`bulk` is one single-port 16-bit RAM (two SPRAMs on the UP5K) shared, one owner at a time, by the
command processor (host regions), the trainer and the engine.  Everything that is not read every
cycle lives here, so the block RAMs are left for the engine's working copy and the loss tables.
"""
from __future__ import annotations

from dataclasses import dataclass

#: bulk words per log entry: loss bits 0-15, 16-31, 32-47 (two's complement, 48 bits), correct count
LOG_ENTRY_WORDS = 4
#: scratch words per query: d_i = L_i - L_0 as three 16-bit words (48-bit two's complement), then
#: the stream's xorshift32 state as two words (low first), then one spare word
SCRATCH_QUERY_WORDS = 6


@dataclass(frozen=True)
class BulkMap:
    """Base addresses (16-bit words) of every area of `bulk` for one design's sizes."""

    n_in: int           # pixels per sample (u8, two per word, low byte = even pixel)
    n_params: int       # flat parameter codes (16-bit each)
    max_samples: int    # batch capacity
    n_max: int          # most queries per signRGE step
    log_depth: int      # log entries (one per forward pass, wrapping)

    @property
    def x_words(self) -> int:
        """Words per sample: sample b's pixel i is byte i % 2 of word b * x_words + i // 2."""
        return (self.n_in + 1) // 2

    @property
    def batch(self) -> int:
        return 0

    @property
    def params(self) -> int:
        return self.max_samples * self.x_words

    @property
    def labels(self) -> int:
        return self.params + self.n_params

    @property
    def scratch(self) -> int:
        return self.labels + self.max_samples

    @property
    def log(self) -> int:
        return self.scratch + SCRATCH_QUERY_WORDS * self.n_max

    @property
    def depth(self) -> int:
        """Words used; the RAM is this rounded up to a power of two (SPRAMs of 16K words)."""
        return self.log + LOG_ENTRY_WORDS * self.log_depth

    @property
    def addr_bits(self) -> int:
        return max(1, (self.depth - 1).bit_length())


def mnist_bulk_map(n_params: int = 3962, log_depth: int = 512) -> BulkMap:
    """The UP5K design's map: 64 MNIST samples, N <= 10, 512 log entries (31,160 of 32,768 words)."""
    return BulkMap(n_in=784, n_params=n_params, max_samples=64, n_max=10, log_depth=log_depth)
