"""Rank scoring in the transformers backend: prefix caching against full sequences.

Run (not part of the test suite; builds the tiny random-weight Qwen2.5-VL checkpoint of
the tests in a temporary folder, offline):

    .venv/bin/python benchmarks/bench_rank_scoring.py [--repeats 7] [--max-pixels 200704]

Prints the median ms of scoring the 7 DFEW labels (plus two labels the tiny tokenizer
splits into several tokens) after one real photo's prompt, both ways, their ratio, the
tokens each way pushes through the model, and the largest score difference. The tiny
model's layers are small, so the ratio here mostly reflects the tokens pushed through;
on a real VLM the vision encoder and the prompt prefill dominate, and they run once
instead of once per label.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--max-pixels", type=int, default=448 * 448, help="image budget of the processor (tokens grow with it)")
    args = ap.parse_args()

    import numpy as np
    from PIL import Image

    from sovtp.backends import make_backend
    from sovtp.labels import DFEW
    from sovtp.types import ImagePart, Prompt, TextPart
    from tests.helpers.media import fetch_pyfeat_media
    from tests.helpers.tiny_vlm import build_tiny_vlm

    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_vlm(Path(tmp) / "tiny-vlm", max_pixels=args.max_pixels)
        backend = make_backend("transformers", str(model))
        backend.load()
        image = np.asarray(Image.open(fetch_pyfeat_media() / "multi_face.jpg").convert("RGB"))
        labels = [*DFEW.labels, "schadenfreude", "bewilderment"]
        prompt = Prompt(
            parts=(TextPart("Numbered faces:"), ImagePart(image), TextPart("What does face 1 feel?")),
            labels=tuple(labels),
            template_name="bench",
            template_hash="-",
        )
        text, images = backend._chat_text(prompt)
        ctx = backend._inputs([text + "\nFinal answer:"], [images])
        tok = backend._proc.tokenizer
        label_ids = [tok(" " + lab, add_special_tokens=False)["input_ids"] for lab in labels]
        n_ctx, n_lab = int(ctx["input_ids"].shape[1]), len(labels)
        longest = max(len(ids) for ids in label_ids)
        timings: dict[str, list[float]] = {"full": [], "prefix": []}
        results: dict[str, list[float]] = {}
        for rep in range(args.repeats + 1):
            for name, fn in (("full", backend._label_logprobs_full), ("prefix", backend._label_logprobs_prefix)):
                t0 = time.perf_counter()
                results[name] = fn(ctx, label_ids)
                if rep:
                    timings[name].append(time.perf_counter() - t0)
        full, prefix = (statistics.median(timings[k]) * 1000 for k in ("full", "prefix"))
        diff = max(abs(a - b) for a, b in zip(results["full"], results["prefix"], strict=True))
        print(f"context {n_ctx} tokens (image included), {n_lab} labels, longest label {longest} tokens")
        print(f"full sequences : {full:8.1f} ms  tokens through the model {n_lab * (n_ctx + longest)}")
        print(f"prefix cached  : {prefix:8.1f} ms  tokens through the model {n_ctx + n_lab * (longest - 1)}")
        print(f"speed-up {full / prefix:.2f}x; largest log-probability difference {diff:.2e}")


if __name__ == "__main__":
    main()
