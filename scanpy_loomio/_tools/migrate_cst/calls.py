"""What a call means: literal values, its arguments, and whether it reads or writes a loom file."""

from __future__ import annotations

from typing import TYPE_CHECKING

import libcst as cst

from scanpy_loomio._tools.migrate_cst.names import WRITERS

if TYPE_CHECKING:
    from collections.abc import Callable

# keywords read_loom_full has no use for, and why they can go
DROPPED_READ_KEYWORDS = {
    "validate": "read_loom_full never runs loompy's validator",
    "cache": "read_loom_full keeps no .h5ad cache; the file is read each time",
}
# anndata's deprecated spellings of read_loom keywords, and their current names
RENAMED_READ_KEYWORDS = {"obsm_names": "obsm_mapping", "varm_names": "varm_mapping"}
READ_KEYWORDS = frozenset(
    {"filename", "X_name", "obs_names", "var_names", "obsm_mapping", "varm_mapping", "sparse", "cleanup", "dtype"}
)


def node_code(node: cst.CSTNode) -> str:
    """The source code of ``node``."""
    return cst.Module(body=[]).code_for_node(node)


def string_value(node: cst.BaseExpression) -> str | None:
    """The value of a plain string literal, else None."""
    if isinstance(node, cst.SimpleString):
        value = node.evaluated_value
        return value if isinstance(value, str) else None
    return None


def reads_loom_literal(call: cst.Call) -> bool:
    """True for ``sc.read("….loom", …)`` with only options that scanpy passes on to ``read_loom``."""
    keywords = {arg.keyword.value for arg in call.args if arg.keyword is not None}
    filenames = [arg.value for arg in call.args if arg.keyword is None or arg_keyword(arg) == "filename"]
    if len(filenames) != 1 or keywords - READ_KEYWORDS - set(DROPPED_READ_KEYWORDS) - set(RENAMED_READ_KEYWORDS):
        return False
    filename = string_value(filenames[0])
    return filename is not None and filename.endswith(".loom")


def unpacks(call: cst.Call) -> bool:
    """True when the call passes ``*args`` or ``**kwargs``: which keywords arrive cannot be known."""
    return any(arg.star for arg in call.args)


def arg_keyword(arg: cst.Arg) -> str | None:
    """The keyword an argument is passed with, None for a positional one."""
    return arg.keyword.value if arg.keyword is not None else None


def translate_write(
    resolve: Callable[[cst.BaseExpression], str | None], call: cst.Call
) -> tuple[cst.BaseExpression, cst.BaseExpression] | None:
    """``(filename, adata)`` of a ``write_loom`` call this rewriter can translate, else None."""
    if any(arg.star for arg in call.args):
        return None
    positional = [arg.value for arg in call.args if arg.keyword is None]
    keywords = {arg.keyword.value: arg.value for arg in call.args if arg.keyword is not None}
    function = call.func
    if isinstance(function, cst.Attribute) and function.attr.value == "write_loom" and resolve(function.value) is None:
        # AnnData.write_loom(self, filename, *, write_obsm_varm=False); older anndata took the flag positionally
        return _bind_arguments(["filename", "write_obsm_varm"], positional, keywords, adata=function.value)
    if resolve(function) in WRITERS:
        # anndata.io.write_loom(filename, adata, *, write_obsm_varm=False)
        return _bind_arguments(["filename", "adata", "write_obsm_varm"], positional, keywords)
    return None


def _bind_arguments(
    names: list[str],
    positional: list[cst.BaseExpression],
    keywords: dict[str, cst.BaseExpression],
    adata: cst.BaseExpression | None = None,
) -> tuple[cst.BaseExpression, cst.BaseExpression] | None:
    """``(filename, adata)`` bound like Python would bind the call's arguments to ``names``, else None."""
    if len(positional) > len(names) or set(keywords) - set(names):
        return None
    bound = dict(zip(names, positional, strict=False))
    if set(bound) & set(keywords):
        return None  # the same argument twice: the call fails anyway
    bound |= keywords
    if adata is not None:
        bound["adata"] = adata
    if "filename" not in bound or "adata" not in bound:
        return None
    return (bound["filename"], bound["adata"])
