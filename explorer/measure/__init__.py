"""Measured costs: the time of every layer of a spec network, and the machine's ceilings.

``profile("xception")`` times each inference layer (a :class:`Profile` of
:class:`LayerTime` rows, named by module path like the cost table);
``ceilings()`` measures, once per device and dtype, the peak FLOP/s and memory
bandwidth that a roofline reads them against (:class:`Ceilings`).
"""

from explorer.measure.machine import Ceilings, ceilings
from explorer.measure.timing import LayerTime, Profile, profile

__all__ = ["Ceilings", "LayerTime", "Profile", "ceilings", "profile"]
