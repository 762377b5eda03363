"""The no-execution proof for s3:// scans (tests/test_remote_s3.py runs it): noexec_child.py's hook
over hostile files read from a real local S3 server through airlock.core.remote_s3.

`python s3_noexec_child.py CONFIG.json`: imports and warms up (one s3:// scan of each benign file in
`warmup`: s3fs, botocore and aiohttp load their lazy parts here), installs the same hook as the main
proof (every spawn, exec, compile, unpickling, write, new import and network event blocked), scans
every URL in `urls`, then runs the canary. One allowance more than the main proof: s3fs talks to
the server from fsspec's event-loop thread ("fsspecIO"), where no airlock frame is on the stack, so
network events there are allowed, and only towards 127.0.0.1.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

import noexec_child
from noexec_child import LOOPBACK, NETWORK_PREFIXES, Guard

noexec_child.HOOK_FILES.add(__file__)


class S3Guard(Guard):
    def judge(self, event: str, args: tuple[Any, ...]) -> str | None:
        if event.startswith(NETWORK_PREFIXES) and threading.current_thread().name == "fsspecIO":
            if event == "socket.connect":
                address = args[1]
                return None if isinstance(address, tuple) and address[0] == LOOPBACK else "network"
            if event == "socket.getaddrinfo":
                return None if args[0] == LOOPBACK else "network"
            if event == "socket.__new__":
                return None
        return super().judge(event, args)


def main(config_path: str) -> int:
    with open(config_path, encoding="utf-8") as fh:
        config = json.load(fh)
    t0 = time.monotonic()
    problems = noexec_child.import_everything()
    import s3fs  # the extra is imported before the hook, as every other dependency

    isolated = noexec_child.patch_isolation(config["log"])
    for url in config["warmup"]:
        noexec_child.scan_one(url)
    warm_s = time.monotonic() - t0
    guard = S3Guard(noexec_child.os.open(config["log"], noexec_child.os.O_WRONLY | noexec_child.os.O_APPEND
                                         | noexec_child.os.O_CREAT, 0o600), "scan", isolated)
    noexec_child.GUARD = guard
    sys.addaudithook(guard)
    t1 = time.monotonic()
    results = [noexec_child.scan_one(url) for url in config["urls"]]
    scan_s = time.monotonic() - t1
    guard.phase = "canary"
    caught = noexec_child.canary(config["workdir"])
    # s3fs itself sent to another address: the hook blocks the connection in fsspec's thread, and
    # the file gets a remote read failure
    guard.phase = "canary:s3-other-host"
    endpoint = noexec_child.os.environ["AWS_ENDPOINT_URL"]
    guard.busy = True  # the canary's own set-up (os.putenv), not Airlock's doing
    noexec_child.os.environ["AWS_ENDPOINT_URL"] = endpoint.replace(LOOPBACK, "127.0.0.2")
    guard.busy = False
    s3fs.S3FileSystem.clear_instance_cache()
    caught["s3-other-host"] = ",".join(noexec_child.scan_one(config["urls"][0])["rules"])
    sys.stdout.write(json.dumps({"results": results, "canary": caught, "import_problems": problems,
                                 "warmup_s": round(warm_s, 2), "scan_s": round(scan_s, 2)}) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
