"""Offscreen OpenGL for MuJoCo rendering (`scripts/vis_mj.py`): which backend works here."""
import os
import sys

from imitation.errors import UserError

# Offscreen OpenGL backends for MuJoCo, in order of preference.
GL_BACKENDS = ("egl", "osmesa")

# Renders one frame of a one-geom model with the backend named by $MUJOCO_GL.
_GL_PROBE = """
import mujoco
m = mujoco.MjModel.from_xml_string(
    "<mujoco><worldbody><light pos='0 0 1'/><geom size='.1'/></worldbody></mujoco>")
d = mujoco.MjData(m)
mujoco.mj_forward(m, d)
r = mujoco.Renderer(m, 16, 16)
r.update_scene(d)
px = r.render()
assert px.shape == (16, 16, 3), px.shape
r.close()
print("ok")
"""


def probe_mujoco_gl(backend, timeout=120):
    """Whether MuJoCo can render offscreen with MUJOCO_GL=backend: (ok, reason).

    The attempt runs in a fresh Python process. Trying backends one after the other inside
    this process is not reliable: PyOpenGL fixes its platform (PYOPENGL_PLATFORM, which
    mujoco.egl / mujoco.osmesa set on import) the first time OpenGL is imported, so after a
    failed egl attempt an osmesa context can no longer be created here; and a broken driver
    can abort the process instead of raising. A subprocess costs about a second and leaves
    this process untouched until the backend is known to work."""
    import subprocess

    env = dict(os.environ, MUJOCO_GL=backend)
    try:
        res = subprocess.run([sys.executable, "-c", _GL_PROBE], env=env, capture_output=True,
                             text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"no frame within {timeout} s"
    if res.returncode == 0 and res.stdout.strip().endswith("ok"):
        return True, ""
    lines = [ln.strip() for ln in res.stderr.splitlines() if ln.strip()]
    return False, lines[-1] if lines else f"exit status {res.returncode}"


def select_mujoco_gl():
    """Set $MUJOCO_GL (unless the user did) to the first offscreen backend that works, before
    mujoco or any MuJoCo environment is imported. Returns a description of the choice."""
    if os.environ.get("MUJOCO_GL"):
        return f"MUJOCO_GL={os.environ['MUJOCO_GL']} (from the environment)"
    if "mujoco" in sys.modules or "OpenGL" in sys.modules:
        raise RuntimeError("select_mujoco_gl must run before mujoco/OpenGL are imported")
    failures = []
    for backend in GL_BACKENDS:
        ok, why = probe_mujoco_gl(backend)
        if ok:
            os.environ["MUJOCO_GL"] = backend
            return f"MUJOCO_GL={backend}"
        failures.append(f"{backend}: {why}")
    raise UserError("no offscreen OpenGL backend works for MuJoCo (" + "; ".join(failures)
                    + "); install EGL (Debian: libegl1) or OSMesa (Debian: libosmesa6), "
                      "or set MUJOCO_GL")
