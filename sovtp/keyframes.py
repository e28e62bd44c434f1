"""AU-peak key frames: from ``k*n`` uniformly decoded candidates keep the ``n`` frames where
the target's facial action is strongest (peak frames carry the emotion; a clip's first or
middle frame is often neutral or mid-blink).

Activation of a frame = sum of the target's AU intensities in that frame, leaving out the
states AU25 (lips part) and AU43 (eyes closed), which talking and blinking inflate. Frames
where the target is not meshed score -1: they are kept only when nothing better is left,
spread evenly over the clip. Ties keep the earlier frame; the chosen frames stay in
temporal order.
"""

from __future__ import annotations

from dataclasses import replace

from sovtp.types import Clip, Cues, FaceAUs, Frame
from sovtp.video import uniform_positions

STATE_AUS = frozenset({25, 43})


def activation(face: FaceAUs | None, position: int) -> float:
    if face is None or position not in face.per_frame:
        return -1.0
    return float(sum(v for au, v in face.per_frame[position].items() if au not in STATE_AUS))


def select_au_peak(clip: Clip, cues: Cues, n: int) -> tuple[Clip, Cues]:
    """The ``n`` candidate frames of highest target AU activation, as a new clip whose
    frames are renumbered 0..n-1, and the cues re-indexed to those positions (frames not
    kept are dropped from every per-frame series)."""
    if n < 1:
        raise ValueError("n must be at least 1")
    frames = sorted(clip.frames, key=lambda f: f.position)
    if len(frames) <= n:
        chosen = frames
    else:
        face = cues.aus.get(cues.target_id) if cues.target_id is not None else None
        scored = [f for f in frames if activation(face, f.position) >= 0]
        ranked = sorted(scored, key=lambda f: (-activation(face, f.position), f.position))[:n]
        # Frames without the target's AUs (no face, or a clip without the AU cue) fill what
        # is left evenly over the clip, as uniform sampling would: "earliest first" kept
        # only the clip's first quarter.
        unscored = [f for f in frames if activation(face, f.position) < 0]
        fill = [unscored[i] for i in uniform_positions(len(unscored), n - len(ranked))]
        chosen = sorted(ranked + fill, key=lambda f: f.position)
    remap = {f.position: i for i, f in enumerate(chosen)}
    new_frames = tuple(Frame(position=remap[f.position], index=f.index, timestamp=f.timestamp, image=f.image) for f in chosen)
    return replace(clip, frames=new_frames), reindex_cues(cues, remap)


def reindex_cues(cues: Cues, remap: dict[int, int]) -> Cues:
    """``cues`` with every per-frame entry moved to ``remap[old position]`` (entries whose
    position is not in ``remap`` dropped). Faces that vanish entirely are removed; IDs and
    clip-level summaries are kept as they are."""
    faces = []
    for track in cues.faces:
        obs = [o.model_copy(update={"position": remap[o.position]}) for o in track.observations if o.position in remap]
        if obs:
            faces.append(track.model_copy(update={"observations": obs}))
    kept_ids = {f.id for f in faces}
    aus = {
        fid: fa.model_copy(update={"per_frame": {remap[p]: v for p, v in fa.per_frame.items() if p in remap}})
        for fid, fa in cues.aus.items()
        if fid in kept_ids or not cues.faces
    }
    poses = {
        pid: pose.model_copy(update={"keypoints": {remap[p]: v for p, v in pose.keypoints.items() if p in remap}})
        for pid, pose in cues.poses.items()
    }
    target = cues.target_id if cues.target_id in kept_ids or not cues.faces else None
    update: dict = {"faces": faces, "aus": aus, "poses": poses, "target_id": target}
    if cues.scene is not None and cues.faces:
        # people counted in the frames kept, not in every candidate (motion energy stays a
        # measurement over the candidates, which span the same clip more densely)
        people = {"num_people": len(faces), "person_motion": {k: v for k, v in cues.scene.person_motion.items() if k in kept_ids}}
        update["scene"] = cues.scene.model_copy(update=people)
    return cues.model_copy(update=update)
