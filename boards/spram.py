"""Re-export of rtl/spram.py (the single-port RAM moved to rtl/ when the serial design needed it)."""
from ttzo.rtl.spram import SPRAM_DEPTH, SPRAM_WIDTH, SinglePortRAM, SinglePortSignature

__all__ = ["SPRAM_DEPTH", "SPRAM_WIDTH", "SinglePortRAM", "SinglePortSignature"]
