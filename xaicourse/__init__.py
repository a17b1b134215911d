"""xaicourse — helper package for the course on explaining neural networks.

One small module per topic (see DESIGN.md's package map). Import what you need::

    from xaicourse import data, models, viz
    from xaicourse.device import get_device, set_seed
"""
__version__ = "0.1.0"

import os as _os


def quick_mode() -> bool:
    """True when ``XAICOURSE_QUICK=1``: notebooks shrink their sizes, same code path."""
    return _os.environ.get("XAICOURSE_QUICK", "0") not in ("", "0", "false", "False")
