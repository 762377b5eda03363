"""Child process of test_no_execution.py: converts hostile files under an audit hook.

`python noexec_child.py WORKDIR`: WORKDIR/warm holds benign inputs (one per input kind),
WORKDIR/hostile the hostile ones, WORKDIR/out is the only place conversion may write. After the
warm-up (so lazy imports are done), the hook records and blocks any process spawn, code
compilation or execution, unpickling, network use, new import, or write outside WORKDIR/out.
Prints one JSON summary on stdout.
"""

import json
import os
import sys

BLOCK = {"os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty", "subprocess.Popen",
         "exec", "compile", "code.__new__", "marshal.loads", "marshal.load", "pickle.find_class",
         "function.__new__", "ctypes.dlopen", "ctypes.call_function", "socket.connect", "socket.bind",
         "urllib.Request", "webbrowser.open", "import"}
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
CHANGE = {"os.remove", "os.rename", "os.replace", "tempfile.mkstemp", "os.unlink", "os.truncate",
          "os.chmod", "os.mkdir", "os.rmdir", "shutil.rmtree", "os.link", "os.symlink"}


def main(work: str) -> None:
    from airlock.core.convert import ConvertError, convert

    out_dir = os.path.join(work, "out")
    for name in sorted(os.listdir(os.path.join(work, "warm"))):
        convert(os.path.join(work, "warm", name), os.path.join(work, "warmout", name + ".safetensors"),
                allow_critical=True, dequantize=True)
        convert(os.path.join(work, "warm", name), os.path.join(work, "warmout", name + ".nv.safetensors"),
                allow_critical=True, verify=False, skip_quantized=True)

    events: list[str] = []
    armed = [True]
    allowed = os.path.realpath(out_dir) + os.sep

    def hook(event: str, args: tuple) -> None:
        if not armed[0]:
            return
        bad = event in BLOCK
        if event == "open" and len(args) >= 3:
            path, mode, flags = args[0], args[1], args[2]
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & WRITE_FLAGS)
            # An int is a descriptor already open (its own open was judged when it was made).
            if writing and not isinstance(path, int) and not (
                    isinstance(path, str) and os.path.realpath(path).startswith(allowed)):
                bad = True
        elif event in CHANGE:
            paths = [a for a in args if isinstance(a, str)]
            bad = not paths or not all(os.path.realpath(p).startswith(allowed) or
                                       os.path.realpath(os.path.dirname(p) or ".") + os.sep == allowed
                                       for p in paths)
        if bad:
            armed[0] = False
            events.append(f"{event} {str(args)[:200]}")
            armed[0] = True
            raise RuntimeError(f"blocked by the audit hook: {event}")

    sys.addaudithook(hook)
    results = {}
    for name in sorted(os.listdir(os.path.join(work, "hostile"))):
        path = os.path.join(work, "hostile", name)
        for allow in (False, True):
            target = os.path.join(out_dir, f"{name}.{allow}.safetensors")
            try:
                report = convert(path, target, allow_critical=allow)
                outcome = f"converted {report.tensors} tensors"
            except ConvertError as exc:
                outcome = f"{type(exc).__name__}: {exc}"
            except Exception as exc:  # noqa: BLE001 - reported to the parent test
                outcome = f"CRASH {type(exc).__name__}: {exc}"
            results[f"{name} allow={allow}"] = outcome
    during = list(events)
    try:
        compile("1 + 1", "<canary>", "eval")
    except RuntimeError:
        pass
    armed[0] = False
    print(json.dumps({"events": during, "canary": events[len(during):], "results": results}))


if __name__ == "__main__":
    main(sys.argv[1])
