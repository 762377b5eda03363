"""The ONNX model rules (ONX001 to ONX005): custom and Python operators, external data.

Reported by `onnx_checks.Checker`; a leaf below both the format module (`onnx`) and its checks, so
the checks never import the format module back. The trigger-logic rules are in `onnx_triggers`.
"""

from __future__ import annotations

from airlock.core.findings import Rule, Severity


class PythonOperator(Rule):
    id = "ONX001"
    severity = Severity.HIGH
    title = "onnxruntime-extensions Python operator"
    help = "PyOp nodes run a Python function registered by the loading process; what runs is not in the file."


class CustomOperatorDomain(Rule):
    id = "ONX002"
    severity = Severity.MEDIUM
    title = "Custom operator domain"
    help = "The model uses operators outside the standard ONNX domains: loading needs a native library."


class ExternalDataOutside(Rule):
    id = "ONX003"
    severity = Severity.CRITICAL
    title = "External data outside the model's folder"
    help = "A tensor's external data location is absolute or escapes the model's folder: loading reads "\
        "any file the loader can reach."


class ExternalDataMissing(Rule):
    id = "ONX004"
    severity = Severity.HIGH
    title = "External data missing or out of bounds"
    help = "A loader fails on this model, or reads bytes that were never inspected."


class ExternalDataUnchecked(Rule):
    id = "ONX005"
    severity = Severity.INFO
    title = "External data not checked"
    help = "The model sits inside a container, so its external data files could not be looked up."
