"""The policy: allowlist first, gadget families denied, names judged as the loader resolves them
(_compat_pickle, attribute walks, private aliases, dunders), and the severities DESIGN.md defines."""

from __future__ import annotations

import _compat_pickle

import pytest
from fixtures.pickle_files import GADGETS

from airlock.core.findings import Severity
from airlock.core.pickle.machine import compat_name
from airlock.core.pickle.policy import DENIED, SAFE, UNKNOWN, load_policy


@pytest.fixture(scope="module")
def policy():
    return load_policy()


@pytest.mark.parametrize(("family", "module", "name", "_args"), GADGETS,
                         ids=[f"{m}.{n}" for _, m, n, _ in GADGETS])
def test_every_gadget_family_is_denied(policy, family, module, name, _args) -> None:
    verdict = policy.classify(module, name)
    assert verdict.kind == DENIED and verdict.severity == Severity.CRITICAL, verdict
    assert verdict.reason


@pytest.mark.parametrize("dotted", [
    "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct", "numpy.dtype",
    "numpy._core.multiarray.scalar", "numpy.core.multiarray.scalar", "numpy._core.numeric._frombuffer",
    "_codecs.encode", "collections.OrderedDict", "collections.defaultdict", "argparse.Namespace",
    "pathlib.PosixPath", "datetime.datetime", "builtins.set", "builtins.complex", "builtins.slice",
    "torch._utils._rebuild_tensor_v2", "copyreg._reconstructor", "functools.partial", "re._compile",
])
def test_benign_names_are_safe(policy, dotted) -> None:
    module, name = dotted.rsplit(".", 1)
    assert policy.classify(module, name).kind == SAFE


@pytest.mark.parametrize(("module", "name", "reaches"), [
    ("logging", "os.system", "os.system"),  # protocol 4 dotted name: an attribute walk
    ("random", "_os.system", "os.system"),  # a module's private alias of os
    ("collections", "abc.sys.modules", "sys"),
    ("somepkg", "helpers.subprocess.run", "subprocess"),
    ("somepkg", "Runner.system", "system"),  # ends at a command runner, whatever it walked through
    ("pathlib", "Path.write_text", "write_text"),
])
def test_attribute_walks_are_judged_by_what_they_reach(policy, module, name, reaches) -> None:
    verdict = policy.classify(module, name)
    assert verdict.kind == DENIED and verdict.severity == Severity.CRITICAL
    assert reaches in verdict.reason


@pytest.mark.parametrize("name", ["__builtins__", "Namespace.__init__.__globals__", "object.__subclasses__",
                                  "x.__dict__", "f.__code__"])
def test_dunder_walks_are_critical(policy, name) -> None:
    verdict = policy.classify("argparse", name)
    assert verdict.kind == DENIED and verdict.severity == Severity.CRITICAL


@pytest.mark.parametrize(("dotted", "severity"), [
    ("builtins.getattr", Severity.HIGH), ("operator.attrgetter", Severity.HIGH),
    ("_operator.methodcaller", Severity.HIGH), ("copyreg.add_extension", Severity.HIGH),
    ("functools.reduce", Severity.HIGH), ("copyreg._inverted_registry", Severity.CRITICAL),
])
def test_indirection_is_high_registry_rewiring_critical(policy, dotted, severity) -> None:
    module, name = dotted.rsplit(".", 1)
    verdict = policy.classify(module, name)
    assert verdict.kind == DENIED and verdict.severity == severity


@pytest.mark.parametrize("dotted", ["somepkg.sub.Model", "sklearn.linear_model._base.LinearRegression",
                                    "torch.nn.modules.linear.Linear", "somepkg.helpers.load_config"])
def test_third_party_names_are_unknown_not_denied(policy, dotted) -> None:
    module, name = dotted.rsplit(".", 1)
    assert policy.classify(module, name).kind == UNKNOWN


def test_python2_names_map_like_the_unpickler(policy) -> None:
    assert compat_name("__builtin__", "eval") == ("builtins", "eval")
    assert compat_name("commands", "getoutput") == ("subprocess", "getoutput")
    assert compat_name("urllib2", "urlopen") == ("urllib.request", "urlopen")
    assert compat_name("cPickle", "loads") == ("pickle", "loads")
    assert compat_name("copy_reg", "_reconstructor") == ("copyreg", "_reconstructor")
    assert compat_name("__builtin__", "xrange") == ("builtins", "range")
    for (module, name), (new_module, new_name) in _compat_pickle.NAME_MAPPING.items():
        assert compat_name(module, name) == (new_module, new_name)


def test_every_dangerous_py3_module_named_by_a_py2_alias_stays_denied(policy) -> None:
    for old, new in _compat_pickle.IMPORT_MAPPING.items():
        if policy.classify(new, "x").kind == DENIED:
            assert policy.classify(*compat_name(old, "x")).kind == DENIED, old


def test_allowlist_wins_and_never_overlaps_the_denylist(policy) -> None:
    for name in policy.allow:
        module, _, attr = name.rpartition(".")
        assert policy.classify(module, attr).kind == SAFE
        assert policy._deny_match(name) is None, name
