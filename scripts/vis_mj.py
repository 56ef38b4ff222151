#!/usr/bin/env python
"""Render one rollout of a policy snapshot to a video, offscreen (no display needed).

    python scripts/vis_mj.py \\
        ~/.cache/policyopt/expert_policies/modern/log_Hopper-v0_3.h5/snapshots/iter0000500 \\
        --env_name Hopper-v5 --out hopper.mp4
    python scripts/vis_mj.py ~/.cache/policyopt/expert_policies/classic/CartPole-v0.h5 \\
        --out cartpole.gif

The format follows the extension of --out: .mp4 (H.264, needs imageio-ffmpeg:
`pip install imageio[ffmpeg]`) or .gif (Pillow). The video holds the frame after the reset and
one frame per step, so a rollout of N steps gives N+1 frames (a GIF stores identical consecutive
frames once, shown for their added durations); it is written atomically.

MuJoCo environments render with an offscreen OpenGL context: $MUJOCO_GL when set, otherwise the
first of egl (GPU or Mesa EGL) and osmesa (software, Debian package libosmesa6) that works.
Classic-control environments render with pygame (`pip install pygame`).
"""
import argparse
import os

from imitation import cli

FORMATS = (".mp4", ".gif")
MAX_GIF_FPS = 50  # GIF delays are in 1/100 s, and most viewers slow down delays below 2/100 s

def is_mujoco_env(gym_id):
    import gymnasium as gym

    ep = gym.spec(gym_id).entry_point
    name = ep if isinstance(ep, str) else f"{getattr(ep, '__module__', '')}.{ep!r}"
    return "mujoco" in name.lower()


def build_parser():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("policy", help="FILE.h5/snapshots/iterNNNNNNN (FILE.h5 alone: last snapshot)")
    p.add_argument("--env_name", help="Gymnasium id, or an original id such as Ant-v1 "
                                      "(default: the env_name stored with the policy)")
    p.add_argument("--obs_adapter", default=None,
                   help="legacy observation adapter (ant_v1, acrobot_v0) for original experts")
    p.add_argument("--out", required=True, help="video to write: .mp4 or .gif")
    p.add_argument("--steps", type=cli.positive_int, default=None,
                   help="stop after N steps (default: when the episode ends)")
    p.add_argument("--deterministic", action="store_true",
                   help="act with the distribution's mean/mode instead of sampling")
    p.add_argument("--width", type=cli.positive_int, default=None,
                   help="frame width in pixels (default: the environment's; 480 for MuJoCo)")
    p.add_argument("--height", type=cli.positive_int, default=None,
                   help="frame height in pixels (default: the environment's; 480 for MuJoCo)")
    p.add_argument("--fps", type=cli.positive_float, default=None,
                   help="frames per second of the video (default: the environment's "
                        f"render_fps, i.e. real time; at most {MAX_GIF_FPS} for a GIF)")
    cli.add_common_args(p, sampling=False)
    return p


def check_output(args, policy_path):
    out = args.out
    ext = os.path.splitext(out)[1].lower()
    if ext not in FORMATS:
        raise cli.UserError(f"--out {out}: the extension must be .mp4 or .gif")
    cli.check_writable_output("--out", out)
    if os.path.abspath(out) == os.path.abspath(policy_path) or (
            os.path.exists(out) and os.path.exists(policy_path)
            and os.path.samefile(out, policy_path)):
        raise cli.UserError(f"--out {out} is the policy file; choose another file")
    if ext == ".mp4":
        try:
            import imageio  # noqa: F401
            import imageio_ffmpeg  # noqa: F401
        except ImportError:
            raise cli.UserError("writing .mp4 needs imageio with its ffmpeg plugin: "
                                "pip install imageio[ffmpeg] (or write a .gif)")
    return ext


class Mp4Writer:
    """Frames streamed to ffmpeg (H.264, yuv420p) through imageio's FFMPEG plugin."""

    def __init__(self, path, fps):
        import imageio.v3 as iio

        # `path` is atomic_write's temporary name (no .mp4 ending): the extension and ffmpeg's
        # muxer are named explicitly
        self.file = iio.imopen(path, "w", extension=".mp4", plugin="FFMPEG", legacy_mode=True)
        self.writer = self.file.legacy_get_writer(fps=fps, codec="libx264",
                                                  pixelformat="yuv420p", macro_block_size=1,
                                                  output_params=["-f", "mp4"])

    def append(self, frame):
        # yuv420p needs even sizes: repeat the last row/column where one is odd
        h, w = frame.shape[:2]
        if h % 2 or w % 2:
            import numpy as np

            frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        self.writer.append_data(frame)

    def close(self):
        try:
            self.writer.close()
        finally:
            self.file.close()


class GifWriter:
    """Frames kept in memory and written by Pillow at close (GIF is not streamable there).

    Pillow merges identical consecutive frames into one longer frame; `merged` counts them."""

    def __init__(self, path, fps):
        self.path, self.fps = path, fps
        self.frames, self.merged, self.last = [], 0, None

    def append(self, frame):
        import numpy as np
        from PIL import Image

        if self.last is not None and np.array_equal(self.last, frame):
            self.merged += 1
        self.last = frame
        self.frames.append(Image.fromarray(frame))

    def close(self, write=True):
        if write and self.frames:
            self.frames[0].save(self.path, format="GIF", save_all=True,
                                append_images=self.frames[1:],
                                duration=max(int(round(1000 / self.fps)), 10), loop=0)
        self.frames = []


def render_frame(env, size, gym_id):
    import numpy as np

    try:
        frame = env.render()
    except Exception as e:
        import gymnasium as gym

        if isinstance(e, gym.error.DependencyNotInstalled) and "pygame" in str(e).lower():
            raise cli.UserError(f"rendering {gym_id} needs pygame, which is not installed: "
                                f"pip install pygame (or gymnasium[classic-control])")
        msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise cli.UserError(f"rendering {gym_id} failed ({type(e).__name__}: {msg}; "
                            f"MUJOCO_GL={os.environ.get('MUJOCO_GL', 'unset')})")
    if frame is None:
        raise cli.UserError(f"{gym_id} returned no frame in rgb_array mode")
    return resize(np.ascontiguousarray(frame[..., :3], dtype=np.uint8), size)


def resize(frame, size):
    """`frame` scaled to size = (width, height) (None: as it is)."""
    if size is None or frame.shape[:2] == (size[1], size[0]):
        return frame
    import numpy as np
    from PIL import Image

    return np.asarray(Image.fromarray(frame).resize(size, Image.BILINEAR))


def main(argv=None):
    args = build_parser().parse_args(argv)
    # pygame (classic-control rendering) must neither look for a display or a sound card nor
    # greet on import
    for k, v in (("SDL_VIDEODRIVER", "dummy"), ("SDL_AUDIODRIVER", "dummy"),
                 ("PYGAME_HIDE_SUPPORT_PROMPT", "1")):
        os.environ.setdefault(k, v)
    from imitation.snapshots import parse_policy_string

    policy_path, _ = parse_policy_string(args.policy)
    ext = check_output(args, policy_path)
    cli.setup_backend(args)

    import dataclasses

    import numpy as np

    from imitation.envs import GymMDP, resolve_env
    from imitation.snapshots import check_policy_fits, load_policy_for_env, policy_summary
    from policyopt import FiniteSpace
    from policyopt.util import atomic_write

    policy, key, _, env_name = load_policy_for_env(args.policy, args.env_name)
    spec = resolve_env(env_name, args.obs_adapter)
    is_mj = is_mujoco_env(spec.gym_id)
    from imitation.video import select_mujoco_gl

    gl = select_mujoco_gl() if is_mj else "pygame"  # before anything imports mujoco

    mdp = GymMDP(env_name, obs_adapter=args.obs_adapter, num_workers=0)
    try:
        check_policy_fits(policy, mdp)
        limit = mdp.max_episode_steps
    finally:
        mdp.close()
    steps = args.steps or limit or 1000

    size = None  # resize to (width, height) after rendering (non-MuJoCo environments)
    if is_mj:
        size_kw = {k: v for k, v in (("width", args.width), ("height", args.height)) if v}
        spec = dataclasses.replace(spec, make_kwargs={**spec.make_kwargs, **size_kw})
    try:
        env = spec.make(render_mode="rgb_array")
    except Exception as e:
        raise cli.UserError(f"{spec.gym_id}: cannot create the environment for rendering "
                            f"({type(e).__name__}: {str(e).strip().splitlines()[0]})")
    try:
        fps = args.fps or float(env.metadata.get("render_fps") or 30)  # real time
        if ext == ".gif" and not args.fps:
            fps = min(fps, MAX_GIF_FPS)
        adapter = f" with adapter {spec.adapter.name}" if spec.adapter else ""
        print(f"{policy_summary(policy)}; {key}; {spec.gym_id}{adapter}; rendering with {gl}",
              flush=True)
        discrete = isinstance(policy.action_space, FiniteSpace)
        rng = np.random.default_rng(args.seed)
        obs, _ = env.reset(seed=args.seed)
        first = render_frame(env, None, spec.gym_id)
        if not is_mj and (args.width or args.height):
            size = (args.width or first.shape[1], args.height or first.shape[0])
            first = resize(first, size)
        total, n, how = 0., 0, f"stopped after {steps} steps"
        with atomic_write(args.out) as tmp:
            writer = (Mp4Writer if ext == ".mp4" else GifWriter)(tmp, fps)
            ok = False
            try:
                writer.append(first)
                while n < steps:
                    a_1_Da, _ = policy.sample_actions(spec.adapt(obs)[None], rng,
                                                      deterministic=args.deterministic)
                    action = int(a_1_Da[0, 0]) if discrete else a_1_Da[0]
                    obs, r, terminated, truncated, _ = env.step(action)
                    total += float(r)
                    n += 1
                    writer.append(render_frame(env, size, spec.gym_id))
                    if terminated or truncated:
                        how = "terminated" if terminated else "truncated (time limit)"
                        break
                ok = True
            finally:
                if isinstance(writer, GifWriter):
                    writer.close(write=ok)
                else:
                    writer.close()
    finally:
        env.close()
    frames = n + 1
    merged = getattr(writer, "merged", 0)
    note = (f"; the GIF holds {frames - merged} (identical consecutive frames merged)"
            if merged else "")
    print(f"return: {total:.2f} ({n} steps, {how})")
    print(f"frames: {frames} at {fps:g} fps -> {args.out}{note}")


if __name__ == "__main__":
    cli.run_main(main)
