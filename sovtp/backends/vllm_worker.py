"""The worker side of :mod:`sovtp.backends.vllm_bridge`, run as
``python -m sovtp.backends.vllm_worker`` by the vLLM environment's interpreter.

Protocol: one JSON object per line on stdin, one reply per line on the original stdout.
vLLM writes its logs to stdout, so the protocol keeps a private copy of the stdout file
descriptor and points fd 1 at stderr before anything from vLLM is imported.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import asdict


def main() -> None:
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    from sovtp.backends.base import Sampling
    from sovtp.backends.vllm_bridge import decode_prompt
    from sovtp.backends.vllm_engine import VLLMBackend, import_vllm
    from sovtp.errors import UserError

    backend = None
    for line in sys.stdin:
        msg = json.loads(line)
        op = msg.get("op")
        if op == "close":
            break
        try:
            if op == "init":
                import_vllm()
                backend = VLLMBackend(model=msg["model"], **msg.get("options", {}))
                reply: dict = {"ready": True}
            elif op == "answer":
                assert backend is not None, "init first"
                prompts = [decode_prompt(p) for p in msg["prompts"]]
                answers = asyncio.run(backend.answer(prompts, msg["mode"], Sampling(**msg["sampling"])))
                reply = {"answers": [asdict(a) for a in answers]}
            else:
                reply = {"error": f"unknown op {op!r}"}
        except UserError as exc:  # the engine cannot start, the model cannot load: the run stops
            reply = {"error": str(exc), "fatal": True}
        except Exception as exc:  # report, keep serving: one bad batch must not kill the run
            reply = {"error": f"vLLM worker failed: {type(exc).__name__}: {exc}"}
        proto.write(json.dumps(reply) + "\n")


if __name__ == "__main__":
    main()
