"""`airlock convert INPUT [-o OUTPUT] …`: the headless converter. Exit 0 done, 1 failed or
refused (one clear line on stderr), 2 bad arguments, 128 + the signal when SIGINT, SIGTERM or
SIGHUP stopped it (130, 143, 129; nothing is left behind, not even a temporary file)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from airlock.core.cli_common import byte_size
from airlock.core.text import safe_path, safe_text


def parse_factor(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("the factor must be a positive number")
    return value


def add_parser(subparsers: Any) -> None:
    from airlock.core.convert.model import DEFAULT_MAX_EXPANSION

    p = subparsers.add_parser(
        "convert", help="convert a checkpoint to SafeTensors without executing it",
        description="Convert a PyTorch checkpoint (zip, legacy, tar, sharded), .npz/.npy or GGUF file to "
                    "SafeTensors. Tensors are described from the file's structure; nothing is executed.")
    p.add_argument("input", metavar="INPUT", help="checkpoint file, index.json or folder")
    p.add_argument("-o", "--output", metavar="OUTPUT",
                   help="output file or folder (default: next to the input, model.safetensors for "
                        "pytorch_model*.bin)")
    p.add_argument("--key", metavar="PATH", help="dotted path of the dict to convert (default: the dict "
                   "holding the most tensors)")
    p.add_argument("--dedupe", action="store_true",
                   help="write tied weights once and record the aliases in __metadata__")
    p.add_argument("--dequantize", action="store_true", help="dequantize quantized GGUF tensors to F32")
    p.add_argument("--skip-quantized", action="store_true",
                   help="leave quantized GGUF tensors out (without this or --dequantize a quantized GGUF "
                        "is refused: the output would lack the model's weights)")
    p.add_argument("--max-shard-size", type=byte_size, default=5 * 10**9, metavar="SIZE",
                   help="split into shards of at most this size (default: 5GB)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing output (it keeps its mode); without it an existing output "
                        "is never replaced, even one created while converting")
    p.add_argument("--max-expansion", type=parse_factor, default=DEFAULT_MAX_EXPANSION, metavar="FACTOR",
                   help=f"refuse an output larger than FACTOR times the input's size (default: "
                        f"{DEFAULT_MAX_EXPANSION:g}; copying never expands, dequantizing GGUF to F32 up to "
                        "28.4x, stride-0 views without bound)")
    p.add_argument("--allow-expansion", action="store_true", help="no limit on the output's size")
    p.add_argument("--allow-critical", action="store_true",
                   help="convert even if the scan has critical findings (nothing is executed either way)")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="skip reading the output back (faster)")
    p.set_defaults(handler=run_convert)


def run_convert(args: argparse.Namespace) -> int:
    from airlock.core import interrupt
    from airlock.core.convert import ConvertError, convert
    from airlock.core.errors import AirlockError
    from airlock.core.source import is_url

    if not is_url(args.input) and not os.path.lexists(args.input):  # as `scan`: nothing to start on is 2
        print(f"airlock convert: no such file or directory: {args.input}", file=sys.stderr)
        return 2
    try:
        report = convert(args.input, args.output, key=args.key, dedupe=args.dedupe,
                         dequantize=args.dequantize, skip_quantized=args.skip_quantized,
                         max_shard_size=args.max_shard_size,
                         overwrite=args.overwrite, allow_critical=args.allow_critical, verify=args.verify,
                         max_expansion=None if args.allow_expansion else args.max_expansion)
    except interrupt.Interrupted as exc:
        print(f"airlock convert: {exc}; no output written", file=sys.stderr)
        return exc.exit_code
    except ConvertError as exc:
        print(f"airlock convert: {exc}", file=sys.stderr)
        return 1
    except (AirlockError, OSError) as exc:
        print(f"airlock convert: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C where no handler is installed (not the main thread)
        print("airlock convert: interrupted; no output written", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a bug must still be one line and exit 1, no partial output
        print(f"airlock convert: internal error: {type(exc).__name__}: {safe_text(str(exc), 300)}",
              file=sys.stderr)
        return 1
    print(render(report))
    stop = interrupt.pending()
    if stop is not None:  # arrived while the outputs were being published: they are complete
        print(f"airlock convert: {interrupt.signal_name(stop)} arrived while the outputs were published; "
              "they are complete, as reported above", file=sys.stderr)
    return 0


def render(report: Any) -> str:
    lines = [f"converted {safe_path(report.input_path)} ({report.input_format}, scan: {report.severity})"]
    if report.selected:
        lines.append(f"  weights from: {safe_text(report.selected)}")
    for out in report.outputs:
        lines.append(f"  wrote {safe_path(out)}")
    if report.index_path:
        lines.append(f"  index {safe_path(report.index_path)}")
    # A rate is only worth printing when the copy, not the scan around it, dominates the time.
    rate = (f" ({report.bytes / report.seconds / 1e6:.0f} MB/s)"
            if report.bytes >= 64 << 20 and report.seconds > 0 else "")
    lines.append(f"  {report.tensors} tensors, {report.bytes:,} bytes in {report.seconds:.2f} s{rate}")
    lines.append(f"  verification: {'passed: ' if report.verified else ''}{report.verification}")
    if report.aliases:
        lines.append(f"  aliases ({len(report.aliases)}): " + ", ".join(
            f"{safe_text(a, 60)} -> {safe_text(t, 60)}" for a, t in list(report.aliases.items())[:10]))
    if report.metadata:
        lines.append("  metadata: " + ", ".join(safe_text(k, 60) for k in list(report.metadata)[:20]))
    if report.skipped:
        lines.append(f"  not converted ({len(report.skipped)}):")
        for name, why in report.skipped[:50]:
            lines.append(f"    {safe_text(name, 80)}: {safe_text(why, 160)}")
        if len(report.skipped) > 50:
            lines.append(f"    … and {len(report.skipped) - 50} more")
    for note in report.notes:
        lines.append(f"  note: {safe_text(note, 300)}")
    return "\n".join(lines)
