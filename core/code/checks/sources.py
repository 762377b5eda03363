"""Floating revisions and unverified sources: Hub downloads not pinned to a commit, use_safetensors=False,
plain http://, TLS verification turned off."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator

from airlock.core.code.callsite import FORWARDED, GIVEN, SPREAD, CallSite, literal_values, strings
from airlock.core.code.checks.registry import Issue, callee, check, issue
from airlock.core.code.evaluate import literal_prefix
from airlock.core.code.rules import (
    CouldNotTell,
    FloatingRevision,
    PlainHttp,
    SafetensorsDisabled,
    TlsVerifyOff,
)
from airlock.core.code.values import Const

COMMIT = re.compile(r"[0-9a-fA-F]{40}")
# A Hub repository id: "name" (legacy canonical models) or "owner/name".
HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}(?:/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?")
# datasets' packaged builders read local files, not a repository.
PACKAGED_BUILDERS = frozenset({
    "csv", "json", "parquet", "text", "imagefolder", "audiofolder", "videofolder", "arrow", "pandas",
    "webdataset", "sql", "generator", "xml", "spark", "cache", "pdffolder", "niftifolder",
})
LOCAL_SUFFIXES = (
    ".json", ".bin", ".pt", ".pth", ".ckpt", ".safetensors", ".py", ".txt", ".yaml", ".yml", ".csv",
    ".parquet", ".jsonl", ".gguf", ".onnx", ".h5", ".pkl", ".npz", ".npy", ".zip", ".tar", ".gz", ".model",
    ".arrow",
)
MODEL_SUFFIXES = (
    ".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle", ".joblib", ".safetensors", ".gguf", ".onnx", ".h5",
    ".hdf5", ".keras", ".npy", ".npz", ".msgpack", ".pb", ".tflite", ".mar", ".nemo", ".model", ".zip",
    ".tar", ".tar.gz", ".tgz", ".sav",
)
LOOPBACK = re.compile(r"http://(?:localhost|127(?:\.\d{1,3}){3}|\[::1\]|0\.0\.0\.0)(?:[:/]|$)", re.IGNORECASE)
HF_RESOLVE = re.compile(
    r"https?://(?:www\.)?(?:huggingface\.co|hf\.co)/(?:datasets/|spaces/)?"
    r"[^/\s]+/[^/\s]+/(?:resolve|raw|blob)/([^/\s]+)/",
    re.IGNORECASE,
)

# Where each Hub loader takes its repository id: (keyword names, position).
REPO_ARGS: dict[str, tuple[tuple[str, ...], int | None]] = {
    "huggingface_hub.hf_hub_download": (("repo_id",), 0),
    "huggingface_hub.snapshot_download": (("repo_id",), 0),
    "transformers.pipeline": (("model",), 1),
    "datasets.load_dataset": (("path",), 0),
    "sentence_transformers.SentenceTransformer": (("model_name_or_path",), 0),
    "sentence_transformers.CrossEncoder": (("model_name_or_path", "model_name"), 0),
    "timm.create_model": (("model_name",), 0),
}


def hub_id(text: str, loader: str) -> bool:
    """Does this string name a Hub repository (rather than a local path or a packaged builder)?"""
    if not HUB_ID.fullmatch(text) or text.startswith(".") or text.endswith(LOCAL_SUFFIXES):
        return False
    if "/" not in text and not any(c == "-" or c.isdigit() for c in text):
        return False  # "image_encoder": a local folder; legacy Hub names look like "gpt2", "t5-base"
    if loader == "datasets.load_dataset" and text.lower() in PACKAGED_BUILDERS:
        return False
    return not text.lower().startswith(("hf-hub:", "local-dir:"))


def repo_ids(site: CallSite) -> list[str] | None:
    """The Hub repository ids this call fetches when they are spelled in the code, else None."""
    loader = site.name or ""
    if site.method == "from_pretrained" or site.method in ("hf_hub_download", "snapshot_download"):
        keywords: tuple[str, ...] = ("pretrained_model_name_or_path", "model_id", "repo_id")
        for keyword in keywords:
            arg = site.arg(keyword)
            if arg.how == GIVEN:
                found, _ = strings(arg.value)
                return [r for r in found if hub_id(r, loader)] if found else None
        call = site.call
        for position, expr in enumerate(call.args[:2] if call else ()):
            if isinstance(expr, ast.Starred):
                return None
            found, _ = strings(site.value(expr))
            if found:
                return [r for r in found if hub_id(r, loader)]
            if position == 0 and site.method != "from_pretrained":
                return None
        return None
    names, where = REPO_ARGS.get(loader, ((), None))
    for keyword in names:
        arg = site.arg(keyword, where)
        if arg.how == GIVEN:
            found, _ = strings(arg.value)
            if loader == "timm.create_model":
                return found  # every pretrained timm model is fetched from the Hub, without a revision
            return [r for r in found if hub_id(r, loader)] if found else None
    return None


@check(
    FloatingRevision,
    names=tuple(REPO_ARGS),
    methods=("from_pretrained", "hf_hub_download", "snapshot_download"),
)
def floating_revision(site: CallSite) -> Iterator[Issue]:
    """A Hub repository named in the code, fetched without revision=<40-hex commit> (a branch or tag
    floats: whoever controls the repository changes what this code loads)."""
    if site.reference:
        return
    fn = callee(site, site.name or "from_pretrained")
    if site.name == "timm.create_model":
        pretrained = literal_values(site.arg("pretrained", 1).value)
        if not pretrained or not any(bool(v) for v in pretrained):
            return
        repos = repo_ids(site)
        if repos:
            yield issue(
                site,
                FloatingRevision,
                f"{fn} of {_names(repos)} with pretrained=True downloads weights "
                "from the Hub with no way to pin a commit",
            )
        return
    if site.name == "transformers.pipeline" and site.arg("model", 1).how != GIVEN:
        return  # the task's default model: transformers pins its revision
    repos = repo_ids(site)
    if not repos:
        return
    revision = site.arg("revision")
    if revision.how == GIVEN and isinstance(revision.value, Const) and None in revision.value.values:
        yield issue(  # revision=None is what leaving it out means: the default branch
            site,
            FloatingRevision,
            f"{fn} of {_names(repos)} with revision=None: fetches whatever the default branch holds when it "
            "runs (pin a 40-hex commit)",
        )
    elif revision.how == GIVEN:
        found, what = strings(revision.value)
        if found is None or all(COMMIT.fullmatch(r) for r in found):
            return  # pinned, or a value the caller chooses
        yield issue(
            site,
            FloatingRevision,
            f"{fn} of {_names(repos)} with revision={what}: a branch or tag floats (pin a 40-hex commit)",
        )
    elif revision.how in (SPREAD, FORWARDED):
        yield issue(
            site,
            CouldNotTell,
            f"{fn} of {_names(repos)}: could not tell whether **kwargs pins revision= to a commit",
        )
    else:
        yield issue(
            site,
            FloatingRevision,
            f"{fn} of {_names(repos)} without revision=: fetches whatever the "
            "default branch holds when it runs (pin a 40-hex commit)",
        )


def _names(repos: list[str]) -> str:
    return " or ".join(repr(r) for r in repos[:3])


@check(SafetensorsDisabled, any_call=True)
def safetensors_disabled(site: CallSite) -> Iterator[Issue]:
    """use_safetensors=False: the loader prefers the pickled weights."""
    arg = site.arg("use_safetensors")
    if arg.how != GIVEN:
        return
    values = literal_values(arg.value)
    if values and any(v is False for v in values):
        yield issue(
            site,
            SafetensorsDisabled,
            f"{callee(site, 'call')} with use_safetensors=False loads the "
            "pickled weights (pytorch_model.bin) even when SafeTensors are there",
        )


# Calls that fetch a model, or download a file to disk: any http:// URL they get counts. Plain HTTP
# clients (requests.get, urlopen...) count only for URLs that name a model file.
FETCHERS = frozenset({
    "torch.hub.load_state_dict_from_url", "torch.hub.download_url_to_file",
    "huggingface_hub.hf_hub_download", "huggingface_hub.snapshot_download", "datasets.load_dataset",
    "keras.utils.get_file", "transformers.pipeline", "urllib.request.urlretrieve", "wget.download",
    "gdown.download",
})


@check(PlainHttp, any_call=True)
def plain_http(site: CallSite) -> Iterator[Issue]:
    """An http:// URL (not loopback) given to a downloader or loader, or naming a model file; also a Hub
    /resolve/<branch>/ URL, which floats like a missing revision."""
    call = site.call
    if call is None:
        return
    fetcher = site.name in FETCHERS or site.method == "from_pretrained"
    for expr in [*call.args, *(k.value for k in call.keywords)]:
        if not isinstance(expr, ast.Constant | ast.JoinedStr | ast.BinOp | ast.Name | ast.Attribute):
            continue
        url = literal_prefix(expr, site.scope)
        if not url or not url[:8].lower().startswith(("http://", "https://")):
            continue
        path = url.split("?", 1)[0].split("#", 1)[0].lower()
        resolve = HF_RESOLVE.match(url)
        if resolve and not COMMIT.fullmatch(resolve.group(1)) and path.endswith(MODEL_SUFFIXES):
            yield issue(
                site,
                FloatingRevision,
                f"{callee(site, 'call')} fetches {_url(url)}: the /resolve/"
                f"{resolve.group(1)}/ branch or tag floats (use a 40-hex commit)",
            )
        if url[:7].lower() != "http://" or LOOPBACK.match(url):
            continue
        if fetcher or path.endswith(MODEL_SUFFIXES):
            yield issue(
                site,
                PlainHttp,
                f"{callee(site, 'call')} fetches {_url(url)} over plain http://: anyone "
                "on the network path can replace it",
            )
            return


def _url(url: str) -> str:
    return repr(url if len(url) <= 120 else url[:117] + "...")


HTTP_METHODS = frozenset({
    "get", "post", "put", "patch", "delete", "head", "request", "stream", "send", "urlopen", "download",
    "Session", "Client", "AsyncClient", "PoolManager", "hf_hub_download", "snapshot_download",
    "ClientSession",
})


@check(TlsVerifyOff, any_call=True)
def tls_verify_off(site: CallSite) -> Iterator[Issue]:
    """verify=False on an HTTP client or download call."""
    arg = site.arg("verify")
    if arg.how != GIVEN:
        return
    values = literal_values(arg.value)
    if not values or not any(v is False for v in values):
        return
    name = site.name or ""
    if name.startswith(("requests.", "httpx.", "urllib3.", "aiohttp.")) or site.method in HTTP_METHODS:
        yield issue(
            site,
            TlsVerifyOff,
            f"{callee(site, name or 'call')} with verify=False: TLS certificates are "
            "not checked, so anyone on the network path can serve the file",
        )


@check(
    TlsVerifyOff,
    names=("ssl._create_unverified_context", "os.putenv", "os.environ.setdefault", "os.environ.update"),
)
def tls_unverified_context(site: CallSite) -> Iterator[Issue]:
    """ssl._create_unverified_context(), or CURL_CA_BUNDLE/REQUESTS_CA_BUNDLE set to "" (a known way to
    switch off certificate checks for huggingface_hub and requests)."""
    if site.name == "ssl._create_unverified_context":
        yield issue(
            site, TlsVerifyOff, f"{callee(site, site.name)} makes a context that checks no certificate"
        )
        return
    call = site.call
    if call is None:
        return
    pairs: list[tuple[str | None, ast.expr]] = [(k.arg, k.value) for k in call.keywords if k.arg]
    if len(call.args) >= 2:
        pairs.append((_const_str(site, call.args[0]), call.args[1]))
    for key, value in pairs:
        if key in CA_BUNDLE_VARIABLES and _const_str(site, value) == "":
            yield issue(
                site,
                TlsVerifyOff,
                f"{callee(site, site.name or 'os.environ')} sets {key} to an empty "
                "string: requests and huggingface_hub then check no certificate",
            )


CA_BUNDLE_VARIABLES = frozenset({"CURL_CA_BUNDLE", "REQUESTS_CA_BUNDLE"})


def _const_str(site: CallSite, expr: ast.expr) -> str | None:
    value = site.value(expr)
    if isinstance(value, Const) and len(value.values) == 1 and isinstance(value.values[0], str):
        return value.values[0]
    return None


def ca_bundle_cleared(target: ast.expr, value: ast.expr, site: CallSite) -> str | None:
    """`os.environ["CURL_CA_BUNDLE"] = ""`: the variable's name, else None (the walker asks this of
    assignments)."""
    if not isinstance(target, ast.Subscript):
        return None
    holder = site.value(target.value)
    if getattr(holder, "name", None) != "os.environ":
        return None
    key = _const_str(site, target.slice)
    return key if key in CA_BUNDLE_VARIABLES and _const_str(site, value) == "" else None
