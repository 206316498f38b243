"""Filtered back-projection baseline: a thin wrapper over the CT operator's own FBP."""
from __future__ import annotations


def fbp(ct_op, y, filter: str = "ramp"):
    """FBP reconstruction x = ct_op.fbp(y, filter=filter): sinogram y -> image (B, 1, H, W).

    filter: "ramp" or "hann" (validated by the operator). The scanner geometry lives in
    the operator (``forward_models.SparseViewCT``), so the reconstruction is delegated to
    it rather than re-implemented here.
    """
    if not callable(getattr(ct_op, "fbp", None)):
        raise TypeError(f"{type(ct_op).__name__} has no fbp(y, filter=...) method; "
                        "expected a CT operator such as forward_models.SparseViewCT")
    return ct_op.fbp(y, filter=filter)
