"""Salt body shapes of the geology generator (`fwi.data.geology`, step 6): the parameters of one body drawn per kind,
its level set (negative inside, roughly the distance to the outline in grid fractions: (nz, nx) arrays over the
grid-fraction coordinates ``Z, X``), the upward drag of the sediments next to it, and how much roughening it takes.

Kinds: ``dome`` (a pillow rising from an autochthonous layer at the bottom), ``diapir`` (a stem from depth capped
by a head that may overhang it), ``lens`` (detached, at mid depth), ``sill`` (thin, following the folded bedding).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

__all__ = ["body_drag", "body_level_set", "roughness_scale", "sample_body"]


def sample_body(rng: np.random.Generator, kind: str, xc: float, v_salt: tuple[float, float],
                drag: tuple[float, float], nz: int) -> dict[str, Any]:
    """Parameters of one salt body of ``kind`` centred near ``xc`` (grid fraction), with a velocity drawn from
    ``v_salt`` and a sediment drag from ``drag`` (m/s and grid fractions, as in `GeologyConfig`)."""
    b: dict[str, Any] = dict(kind=kind, xc=xc, v=rng.uniform(*v_salt), drag=rng.uniform(*drag))
    min_half = 1.2 / nz  # keep thin bodies at least ~2 cells thick
    if kind == "diapir":
        r_s = rng.uniform(0.035, 0.075)
        mushroom = rng.random() < 0.5
        head_ratio = rng.uniform(1.8, 3.2) if mushroom else rng.uniform(1.0, 1.6)
        r_h = r_s * head_ratio
        b.update(
            r_s=r_s,
            r_base=r_s * rng.uniform(1.1, 2.0),
            r_h=r_h,
            hh=max(r_h * rng.uniform(0.35, 0.6), 0.04) if mushroom else rng.uniform(0.06, 0.15),
            z_top=rng.uniform(0.12, 0.4),
            tilt=rng.uniform(-0.15, 0.15),
            droop=rng.uniform(0.02, 0.08) if mushroom else 0.0,
            drape_width=rng.uniform(0.04, 0.1),
        )
    elif kind == "dome":
        w = rng.uniform(0.12, 0.32)
        b.update(
            w_left=w * rng.uniform(0.7, 1.3), w_right=w * rng.uniform(0.7, 1.3),
            h=rng.uniform(0.15, 0.42),
            t0=rng.uniform(max(0.02, min_half), 0.07) if rng.random() < 0.6 else 0.0,
            p=rng.uniform(0.35, 1.1),  # < 1: flat crest and steep flanks
        )
    elif kind == "lens":
        a = rng.uniform(0.1, 0.26)
        half = max(a / rng.uniform(2.0, 4.5), 1.5 * min_half)
        b.update(
            zc=rng.uniform(0.3, 0.62), a=a,
            b_top=half * rng.uniform(1.0, 1.5), b_bot=half * rng.uniform(0.45, 0.9),
            angle=math.radians(rng.uniform(-12.0, 12.0)),
        )
    elif kind == "sill":
        a = rng.uniform(0.2, 0.42)
        b.update(zc=rng.uniform(0.3, 0.7), a=a, b=max(a / rng.uniform(6.0, 12.0), min_half))
    else:  # pragma: no cover - validated in the config
        raise ValueError(kind)
    return b


def body_level_set(b: dict[str, Any], Z: np.ndarray, X: np.ndarray, fold: Callable) -> np.ndarray:
    """Level set of a body: negative inside, roughly the distance to the outline in grid fractions."""
    kind = b["kind"]
    if kind == "diapir":
        zn = b["z_top"] + b["hh"]  # centre of the head = top of the stem
        axis = b["xc"] + b["tilt"] * (1.0 - Z) / (1.0 - b["z_top"])
        t = np.clip((Z - zn) / (1.0 - zn), 0.0, 1.0)
        radius = b["r_s"] + (b["r_base"] - b["r_s"]) * t**2
        stem = np.maximum(np.abs(X - axis) - radius, zn - Z)
        x_head = b["xc"] + b["tilt"] * (1.0 - zn) / (1.0 - b["z_top"])
        u = (X - x_head) / b["r_h"]
        # a mushroom's rim droops: the head's lower half sags with distance from the axis
        dz = Z - zn - b["droop"] * np.clip(np.abs(u), 0.0, 1.5) ** 2
        head = (np.sqrt(u**2 + (dz / b["hh"]) ** 2) - 1.0) * min(b["r_h"], b["hh"])
        return np.minimum(stem, head)
    if kind == "dome":
        width = np.where(X < b["xc"], b["w_left"], b["w_right"])
        u = (X - b["xc"]) / width
        top = 1.0 - b["t0"] - b["h"] * np.clip(1.0 - u**2, 0.0, None) ** b["p"]
        return top - Z
    if kind == "lens":
        dx, dz = X - b["xc"], Z - b["zc"]
        c, s = math.cos(b["angle"]), math.sin(b["angle"])
        xr, zr = c * dx + s * dz, -s * dx + c * dz
        bz = np.where(zr < 0.0, b["b_top"], b["b_bot"])
        return (np.sqrt((xr / b["a"]) ** 2 + (zr / bz) ** 2) - 1.0) * np.minimum(b["a"], bz)
    # sill: a tabular superellipse whose mid-line follows the folded bedding
    mid = b["zc"] + fold(X, b["zc"]) - fold(b["xc"], b["zc"])
    r = np.sqrt(((X - b["xc"]) / b["a"]) ** 4 + ((Z - mid) / b["b"]) ** 2)
    return (r - 1.0) * b["b"]


def body_drag(b: dict[str, Any], Z: np.ndarray, X: np.ndarray) -> np.ndarray | None:
    """Upward shift of the stratigraphic coordinate near a body (positive = layers pulled up), or None."""
    if b["kind"] == "diapir":
        zn = b["z_top"] + b["hh"]
        axis = b["xc"] + b["tilt"] * (1.0 - Z) / (1.0 - b["z_top"])
        t = np.clip((Z - zn) / (1.0 - zn), 0.0, 1.0)
        radius = np.where(Z < zn, b["r_h"], b["r_s"] + (b["r_base"] - b["r_s"]) * t**2)
        gap = np.clip(np.abs(X - axis) - radius, 0.0, None)
        above = np.clip(b["z_top"] - Z, 0.0, None)
        return b["drag"] * np.exp(-((gap / b["drape_width"]) ** 2)) * np.exp(-((above / 0.2) ** 2))
    if b["kind"] == "dome":
        width = np.where(X < b["xc"], b["w_left"], b["w_right"]) * 1.4
        crest = 1.0 - b["t0"] - b["h"]
        above = np.clip(crest - Z, 0.0, None)
        return b["drag"] * np.exp(-(((X - b["xc"]) / width) ** 2)) * np.exp(-above / 0.4)
    return None


def roughness_scale(b: dict[str, Any]) -> float:
    """Outline perturbation relative to ``salt_roughness``: smaller for thin bodies, which it would cut apart."""
    thickness = {"diapir": lambda: min(b["r_s"], b["hh"]), "dome": lambda: 0.08, "sill": lambda: b["b"],
                 "lens": lambda: b["b_bot"]}[b["kind"]]()
    return min(1.0, thickness / 0.07)
