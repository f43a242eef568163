"""StefaLand, an attribute-based land-surface foundation model, as a NeuralHydrology plugin.

Installing the package makes ``model: stefaland`` available to NeuralHydrology's own ``nh-run`` commands and Python
API. The registration is automatic (a ``.pth`` hook that waits until ``neuralhydrology`` is imported) unless the
environment variable ``NH_STEFALAND_AUTOLOAD=0`` is set; :func:`register` does the same explicitly.
"""

__version__ = "0.1.0"


def register() -> None:
    """Register StefaLand's model, loss, testers, trainers and config keys with NeuralHydrology (idempotent)."""
    from nh_stefaland.nh.registration import register_all

    register_all()
