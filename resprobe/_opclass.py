"""What a recorded op is to the detector: a join, a view-like identity, a scale, a contraction."""

from __future__ import annotations

__all__ = ["ADD", "CAT", "CONTRACTION", "IDENTITY", "SCALE", "op_kind"]

ADD = "add"
CAT = "cat"
IDENTITY = "identity"
SCALE = "scale"
CONTRACTION = "contraction"
OTHER = "other"

_BY_NAME = {
    **dict.fromkeys(("add", "add_", "__add__", "__radd__", "__iadd__"), ADD),
    **dict.fromkeys(("cat", "concat", "concatenate"), CAT),
    **dict.fromkeys((
        "view", "reshape", "flatten", "unflatten", "squeeze", "unsqueeze", "permute",
        "transpose", "t", "contiguous", "clone", "detach", "to", "type", "float", "double",
        "half", "bfloat16", "expand", "expand_as", "view_as", "reshape_as", "movedim",
        "moveaxis", "swapaxes", "swapdims", "dropout", "dropout1d", "dropout2d", "dropout3d",
        "alpha_dropout", "feature_alpha_dropout", "identity", "data", "_unsafe_view", "alias",
        "_to_copy", "native_dropout", "__getitem__", "narrow", "select", "slice",
    ), IDENTITY),
    **dict.fromkeys((
        "mul", "mul_", "__mul__", "__rmul__", "__imul__", "multiply", "div", "div_",
        "__truediv__", "__itruediv__", "divide",
    ), SCALE),
    **dict.fromkeys((
        "linear", "bilinear", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
        "conv_transpose2d", "conv_transpose3d", "matmul", "__matmul__", "__rmatmul__", "mm",
        "bmm", "einsum", "addmm", "baddbmm", "scaled_dot_product_attention",
        "multi_head_attention_forward", "convolution", "_convolution",
        "_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention",
        "_scaled_dot_product_flash_attention_for_cpu",
    ), CONTRACTION),
}


def op_kind(op: str) -> str:
    """The detector's class of a recorded op name: ``'Tensor.add_'``, ``'torch.cat'``, or an
    ATen overload from an exported graph such as ``'aten.add_.Tensor'``."""
    if op.startswith(("torch.", "Tensor.")):
        return _BY_NAME.get(op.rsplit(".", 1)[-1], OTHER)
    if op.startswith("aten."):
        return _BY_NAME.get(op.split(".")[1], OTHER)
    return OTHER
