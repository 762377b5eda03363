"""Remote code: trust_remote_code=True, running text read from a file or the network, importing
from a downloaded folder, native libraries loaded from computed paths."""

from __future__ import annotations

from collections.abc import Iterator

from airlock.core.code.callsite import GIVEN, SPREAD, CallSite, truths
from airlock.core.code.checks.registry import Issue, callee, check, issue
from airlock.core.code.checks.sources import repo_ids
from airlock.core.code.names import HUB_LOADERS
from airlock.core.code.rules import (
    CouldNotTell,
    ExecOfLoadedText,
    ImportFromDownload,
    NativeLibraryLoad,
    TrustRemoteCode,
)
from airlock.core.code.values import DOWNLOADED, FROM_NET, TAINT, Const, DictValue
from airlock.core.findings import Severity

# Keyword arguments that carry another call's keyword arguments (pipeline(model_kwargs=...)...).
NESTED_KWARGS = ("model_kwargs", "config_kwargs", "tokenizer_kwargs", "processor_kwargs", "cache_kwargs",
                 "load_kwargs")


def hub_loader(site: CallSite) -> bool:
    return site.method == "from_pretrained" or site.name in HUB_LOADERS


@check(TrustRemoteCode, any_call=True)
def trust_remote_code(site: CallSite) -> Iterator[Issue]:
    """trust_remote_code=True in any call (also inside model_kwargs={...}, from a constant, or as a
    parameter's default); **kwargs of a Hub loader that may carry it is "could not tell"."""
    call = site.call
    if call is None:
        return
    fn = callee(site, site.name or "call")
    arg = site.arg("trust_remote_code")
    if arg.how == GIVEN:
        known, what = truths(arg.value)
        if known is not None and True in known:
            effect = "for the load it is passed to" if site.name == "builtins.dict" else "the loader"
            yield issue(site, TrustRemoteCode, f"{fn} with trust_remote_code={what}: {effect} imports and "
                        "runs Python files from the model or dataset repository")
        return
    for kw in call.keywords:
        if kw.arg not in NESTED_KWARGS:
            continue
        nested = site.value(kw.value)
        if isinstance(nested, DictValue) and "trust_remote_code" in nested.items:
            known, what = truths(site.value(nested.items["trust_remote_code"]))
            if known is not None and True in known:
                yield issue(
                    site,
                    TrustRemoteCode,
                    f"{fn} with {kw.arg}={{'trust_remote_code': {what}}}: Python "
                    "files from the model repository are imported and run",
                )
                return
    # A loader of a repository the code names, given a **dict Airlock cannot see. (When the repository
    # is a parameter too, the call is plumbing judged at its callers: reporting it would be noise.)
    if arg.how == SPREAD and hub_loader(site) and repo_ids(site):
        yield issue(site, CouldNotTell, f"{fn}: **kwargs Airlock cannot see may pass trust_remote_code=True")


@check(ExecOfLoadedText, names=("builtins.exec", "builtins.eval", "builtins.compile"))
def exec_of_loaded_text(site: CallSite) -> Iterator[Issue]:
    """exec/eval/compile of text that came from a file (open().read(), Path.read_text()) or a download."""
    source = site.positional(0)
    if source is None:
        return
    flags = site.value(source).flags
    if flags & TAINT:
        where = "a download" if flags & FROM_NET else "a file"
        yield issue(
            site, ExecOfLoadedText, f"{callee(site, site.name or 'exec')} runs text read from {where}"
        )


@check(
    ImportFromDownload,
    names=(
        "importlib.util.spec_from_file_location",
        "importlib.machinery.SourceFileLoader",
        "runpy.run_path",
        "sys.path.insert",
        "sys.path.append",
        "site.addsitedir",
    ),
)
def import_from_download(site: CallSite) -> Iterator[Issue]:
    """A module loaded from, or sys.path pointed at, a path that a download returned."""
    name = site.name or ""
    position = {
        "sys.path.insert": 1,
        "importlib.util.spec_from_file_location": 1,
        "importlib.machinery.SourceFileLoader": 1,
    }.get(name, 0)
    path = site.positional(position)
    if path is None or not site.value(path).flags & DOWNLOADED:
        return
    what = (
        "puts a downloaded folder on sys.path: importing a module from it runs that module"
        if name.startswith(("sys.path", "site."))
        else "runs or imports Python code that was downloaded"
    )
    yield issue(site, ImportFromDownload, f"{callee(site, name)} {what}")


NATIVE_LOADERS = {
    "torch.ops.load_library": 0,
    "torch.classes.load_library": 0,
    "tensorflow.load_library": 0,
    "tensorflow.load_op_library": 0,
    "numpy.ctypeslib.load_library": 0,
}


@check(NativeLibraryLoad, names=tuple(NATIVE_LOADERS))
def native_library(site: CallSite) -> Iterator[Issue]:
    """torch/tensorflow/numpy native library loaders given a computed path (high when downloaded)."""
    call = site.call
    if call is None:
        return
    args = [site.value(a) for a in [*call.args, *(k.value for k in call.keywords)]]
    if args and all(isinstance(a, Const) for a in args):
        return  # the application's own library, named in the code
    downloaded = any(a.flags & DOWNLOADED for a in args)
    yield issue(
        site,
        NativeLibraryLoad,
        f"{callee(site, site.name or 'load_library')} loads native code from "
        + ("a downloaded path: remote code" if downloaded else "a path the code computes"),
        Severity.HIGH if downloaded else None,
    )
