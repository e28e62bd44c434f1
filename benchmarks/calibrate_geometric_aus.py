"""Calibrate the geometric AU estimator's neutral reference on independent neutral faces.

Run (not part of the test suite; reads the licensed data under /work/shared, which the
tests never do; about a minute on one core):

    .venv/bin/python benchmarks/calibrate_geometric_aus.py [--data /work/shared/data/licensed]
        [--canonical path/to/canonical_face_model.obj]

Neutral identities (none of them is a photo the sanity tests rank):
- Face Research Lab London Set (DeBruine & Jones 2017, CC BY 4.0): 004_03, 030_03,
  062_03.jpg -- frontal studio photos, neutral condition;
- CREMA-D actor 1001, 1001_DFA_NEU_XX.mp4 (neutral, crowd face vote N 77 %): 12 evenly
  spaced frames, their per-measurement median counted as ONE identity (he speaks, so the
  median over frames, not any single frame);
- optionally mediapipe's canonical face model (``--canonical``; the .obj is not shipped in
  the mediapipe 0.10.21 wheel, so by default it is not used).

What it computes, in the order the estimator needs it:
1. ``REFERENCE_SHAPE``: the frontal neutral shape of the ``STABLE`` (rigid) mesh points --
   every neutral mesh in its anatomical frame (``face_axes``), generalised Procrustes
   (rotation only) to their mean, and mirror-symmetrised, so that yaw and roll are zero by
   construction.
2. ``POPULATION``: the median over identities of each measurement (``measure``, which
   frontalises onto that shape) -- ``gap`` stays 0 (AU25 is a state, measured absolutely).
3. ``SPREAD``: the between-identity standard deviation of each measurement: how far a
   neutral face of another build sits from the median. The estimator ignores changes
   within ``DEAD_ZONE`` spreads (a neutral face must not read as an AU).
It prints the per-identity measurements, the constants as Python (paste them between
``CALIBRATION-BEGIN`` and ``CALIBRATION-END`` in extractors/geometric_aus.py) and, as a
check that needs these licensed photos and so is not a test, the AU12 of each FRL smiling
photo (``*_08``) against its neutral (``*_03``) and of CREMA-D HAP against NEU.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

FRL_IDS = ("004", "030", "062")
CREMA_FRAMES = 12


def image_mesh(path: Path, faces, mesh) -> np.ndarray:
    """The target face's mesh of one photo (real mediapipe models, as in a run)."""
    from PIL import Image

    from sovtp.extract import run_extractors
    from sovtp.types import Clip, file_sha256

    arr = np.asarray(Image.open(path).convert("RGB"))
    clip = Clip.still(path, arr, file_sha256(path))
    cues = run_extractors(clip, [faces, mesh]).cues
    track = next(f for f in cues.faces if f.id == cues.target_id)
    return np.asarray(track.observations[0].landmarks, dtype=np.float64)


def clip_meshes(path: Path, faces, mesh) -> list[np.ndarray]:
    from sovtp.extract import run_extractors
    from sovtp.video import read_clip

    cues = run_extractors(read_clip(path, num_frames=CREMA_FRAMES), [faces, mesh]).cues
    track = next(f for f in cues.faces if f.id == cues.target_id)
    return [np.asarray(o.landmarks, dtype=np.float64) for o in track.observations if o.landmarks]


def read_obj(path: Path) -> np.ndarray:
    """Vertices of mediapipe's canonical_face_model.obj (468 x 3, cm, y up, z to camera);
    flipped to mediapipe's image convention (y down, z away) so it measures like a mesh."""
    verts = [[float(v) for v in line.split()[1:4]] for line in path.read_text().splitlines() if line.startswith("v ")]
    arr = np.asarray(verts)
    return arr * np.array([1.0, -1.0, -1.0])


def build_reference(g, meshes: list[np.ndarray], iters: int = 10) -> np.ndarray:
    shapes = [g.face_axes(m)[0][list(g.STABLE)] for m in meshes]
    shapes = [s - s.mean(axis=0) for s in shapes]
    index = {p: i for i, p in enumerate(g.STABLE)}
    partner = {**g.MIRROR, **{v: k for k, v in g.MIRROR.items()}}

    def symmetrise(ref: np.ndarray) -> np.ndarray:
        mirrored = np.stack([ref[index[partner.get(p, p)]] * np.array([-1.0, 1.0, 1.0]) for p in g.STABLE])
        out = (ref + mirrored) / 2.0
        return out - out.mean(axis=0)

    ref = symmetrise(np.mean(shapes, axis=0))
    for _ in range(iters):
        ref = symmetrise(np.mean([s @ g.kabsch(s, ref).T for s in shapes], axis=0))
    return ref


def au12(g, mesh: np.ndarray) -> float:
    return g.intensities(g.measure(mesh), g.POPULATION)[12]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("/work/shared/data/licensed"))
    ap.add_argument("--canonical", type=Path, default=None, help="mediapipe canonical_face_model.obj (optional)")
    args = ap.parse_args()

    from sovtp.extractors import geometric_aus as g
    from sovtp.extractors.faces import MediapipeFaces
    from sovtp.extractors.landmarks import MediapipeMesh

    faces, mesh = MediapipeFaces(), MediapipeMesh()
    identities: dict[str, list[np.ndarray]] = {}
    for fid in FRL_IDS:
        identities[f"frl_{fid}"] = [image_mesh(args.data / "frl_london" / f"{fid}_03.jpg", faces, mesh)]
    identities["crema_1001_neu"] = clip_meshes(args.data / "crema_d" / "1001_DFA_NEU_XX.mp4", faces, mesh)
    if args.canonical is not None:
        identities["mediapipe_canonical"] = [read_obj(args.canonical)]

    # 1. frontal reference from the first (or only) mesh of every identity, all frames of CREMA-D
    ref = build_reference(g, [m for ms in identities.values() for m in ms])
    g.REFERENCE_SHAPE = ref
    # 2.-3. per-identity medians, then median and spread over identities
    per_id = {name: {k: float(np.median([g.measure(m)[k] for m in ms])) for k in g.MEASUREMENTS} for name, ms in identities.items()}
    population = {k: float(np.median([v[k] for v in per_id.values()])) for k in g.MEASUREMENTS}
    population["gap"] = 0.0
    spread = {k: float(np.std([v[k] for v in per_id.values()], ddof=1)) for k in g.MEASUREMENTS}
    spread["gap"] = 0.0

    print("neutral measurements (IOD units) per identity, median, spread:")
    print(f"{'':12s}" + "".join(f"{n[:14]:>15s}" for n in per_id) + f"{'median':>9s}{'spread':>9s}")
    for k in g.MEASUREMENTS:
        print(f"{k:12s}" + "".join(f"{v[k]:15.3f}" for v in per_id.values()) + f"{population[k]:9.3f}{spread[k]:9.3f}")

    g.POPULATION.update(population)
    g.SPREAD.update(spread)
    print("\nsmile check (AU12 against the population reference; not a test: licensed data):")
    for fid in FRL_IDS:
        neu = au12(g, identities[f"frl_{fid}"][0])
        smile = au12(g, image_mesh(args.data / "frl_london" / f"{fid}_08.jpg", faces, mesh))
        print(f"  FRL {fid}: neutral _03 AU12 {neu:.3f}  smiling _08 AU12 {smile:.3f}  {'OK' if smile > neu else 'FAIL'}")
    hap = max(au12(g, m) for m in clip_meshes(args.data / "crema_d" / "1001_DFA_HAP_XX.mp4", faces, mesh))
    neu = max(au12(g, m) for m in identities["crema_1001_neu"])
    print(f"  CREMA-D 1001: NEU peak AU12 {neu:.3f}  HAP peak AU12 {hap:.3f}  {'OK' if hap > neu else 'FAIL'}")

    def fmt(d: dict[str, float]) -> str:
        items = [f'"{k}": {v:.3f}' for k, v in d.items()]
        return "\n".join("    " + ", ".join(items[i : i + 5]) + "," for i in range(0, len(items), 5))

    print("\n# CALIBRATION-BEGIN")
    print(f"POPULATION: dict[str, float] = {{\n{fmt(population)}\n}}")
    print(f"SPREAD: dict[str, float] = {{\n{fmt(spread)}\n}}")
    rows = ",\n".join(f"    [{x:.4f}, {y:.4f}, {z:.4f}]" for x, y, z in ref)
    print(f"REFERENCE_SHAPE = np.array([\n{rows},\n])")
    print("# CALIBRATION-END")


if __name__ == "__main__":
    main()
