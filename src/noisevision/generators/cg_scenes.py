"""Procedural 3-D scenes in the spirit of CLEVR (Johnson et al., CVPR 2017; paper Sec. 3.1: the
"CG" models, realistic but not diverse).

A scene is a grey ground plane y = 0 under 3 to 10 primitives (spheres, rounded cubes, cylinders
and flat tori) standing on it without overlap (each in its own cell of a 4 x 4 grid over
[-3.5, 3.5]^2, jittered inside it), each with a random size, turn about the vertical and
material: "rubber" (diffuse), "glossy" (diffuse and a white highlight) or "metal" (a tinted
highlight and a reflection of the studio environment), coloured from CLEVR's eight colours (or
any colour with ``colors="random"``). One to three distant lights (a key light and dimmer fill
lights) cast soft shadows; a camera looks at the centre from a random azimuth, elevation,
distance and field of view.

Rendering is signed-distance ray marching, batched over every ray of every image in pure torch
(CPU and CUDA, no display). All four primitives are one distance function: a 2-D rounded box
in the (horizontal distance from the axis - R, height) plane, the horizontal distance being
Euclidean (sphere, cylinder, torus) or the max norm (cube; a lower bound of the true distance
off its faces, which marching allows). Rays first meet the objects' bounding spheres: rays that
meet none go straight to the ground or the sky, the others march from their first bounding
sphere, and finished rays leave the batch every few steps. Shadow rays march to each light
with the soft-shadow estimate min(k h / t) (Quilez), skipped where no bounding sphere comes
near; a three-sample ambient occlusion darkens contacts. Only correctly rounded operations
(+, -, *, /, sqrt, min, max) touch a ray, and per-image parameters are computed in float64, so
an image's bytes do not depend on its batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from noisevision.errors import check
from noisevision.generators.base import Generator, check_resolution, register_generator
from noisevision.rng import ImageRandom

KINDS = ("sphere", "cube", "cylinder", "torus")
MATERIALS = ("rubber", "glossy", "metal")
COLOR_MODES = ("clevr", "random")
CLEVR_COLORS = ((87, 87, 87), (173, 35, 35), (42, 75, 215), (29, 105, 20), (129, 74, 25),
                (129, 38, 192), (41, 208, 208), (255, 238, 51))  # CLEVR's properties.json
CLEVR_LINEAR = tuple(tuple((c / 255.0) ** 2.2 for c in rgb) for rgb in CLEVR_COLORS)
GRID = 4  # placement cells per side
EXTENT = 3.5  # objects stand in [-EXTENT, EXTENT]^2
FAR = 1e4  # distance of an empty slot, and of the sky
# object fields: centre, cos/sin of the turn, torus offset R, half width w, half height h,
# rounding rho, max-norm flag, bounding radius
CX, CY, CZ, COS, SIN, RR, HW, HH, RHO, BOX, BOUND = range(11)
FIELDS = 11
AO_STEPS = ((0.08, 1.0), (0.2, 0.5), (0.45, 0.25))  # (distance along the normal, weight)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True)
class CGScenesConfig:
    resolution: int = 128  # px, square images (CLEVR: 480 x 320)
    objects_min: int = 3  # fewest objects (CLEVR: 3)
    objects_max: int = 10  # most objects (CLEVR: 10)
    lights_max: int = 3  # lights per scene, 1 to this many (CLEVR: key, fill, back)
    kinds: tuple[str, ...] = KINDS  # primitives drawn uniformly (CLEVR: sphere, cube,
    #   cylinder)
    colors: str = "clevr"  # "clevr": CLEVR's eight colours; "random": any hue
    march_steps: int = 64  # sphere-tracing steps of a camera ray
    shadow_steps: int = 24  # steps of a shadow ray
    supersample: int = 1  # rays per pixel side (2: 4 rays per pixel, box-filtered)

    def __post_init__(self) -> None:
        check_resolution(self.resolution)
        for name, low, high in (("objects_min", 1, GRID * GRID), ("objects_max", 1, GRID * GRID),
                                ("lights_max", 1, 8), ("march_steps", 4, 1000),
                                ("shadow_steps", 0, 1000), ("supersample", 1, 4)):
            value = getattr(self, name)
            check(_is_int(value) and low <= value <= high,
                  f"{name} must be an integer in [{low}, {high}], got {value!r}")
        check(self.objects_min <= self.objects_max,
              f"objects_min must be <= objects_max, got {self.objects_min} > "
              f"{self.objects_max}")
        if isinstance(self.kinds, str):  # "sphere,cube" from a command line
            object.__setattr__(self, "kinds", tuple(self.kinds.replace(" ", "").split(",")))
        check(isinstance(self.kinds, (tuple, list)) and len(self.kinds) > 0
              and all(k in KINDS for k in self.kinds),
              f"kinds must be a non-empty list of {', '.join(KINDS)}, got {self.kinds!r}")
        object.__setattr__(self, "kinds", tuple(self.kinds))
        check(self.colors in COLOR_MODES,
              f"colors must be one of {', '.join(COLOR_MODES)}, got {self.colors!r}")


@dataclass
class Scene:
    """Everything a batch of scenes renders from (B scenes, N object slots, L light slots).

    eye, forward, right, up (B, 3) and tan_half_fov (B,): the camera; objects (B, N, FIELDS)
    (see the field constants; an empty slot has bound 0); albedo (B, N, 3) linear RGB;
    material (B, N) index into MATERIALS; light_dir (B, L, 3) unit vectors towards the lights,
    light_power (B, L) (0: no light), softness (B, L) the penumbra constant k; ambient (B,),
    ground (B, 3) and sky (B, 3) colours.
    """

    eye: torch.Tensor
    forward: torch.Tensor
    right: torch.Tensor
    up: torch.Tensor
    tan_half_fov: torch.Tensor
    objects: torch.Tensor
    albedo: torch.Tensor
    material: torch.Tensor
    light_dir: torch.Tensor
    light_power: torch.Tensor
    softness: torch.Tensor
    ambient: torch.Tensor
    ground: torch.Tensor
    sky: torch.Tensor


# ---- distances ------------------------------------------------------------------------------


def object_distance(p: torch.Tensor, obj: torch.Tensor) -> torch.Tensor:
    """Distance bound from points p (A, 3) to each object slot obj (A, N, FIELDS) -> (A, N);
    an empty slot is FAR away."""
    lx = p[:, None, 0] - obj[..., CX]
    ly = p[:, None, 1] - obj[..., CY]
    lz = p[:, None, 2] - obj[..., CZ]
    rx = obj[..., COS] * lx + obj[..., SIN] * lz  # turned into the object's frame
    rz = obj[..., COS] * lz - obj[..., SIN] * lx
    radial = torch.sqrt(rx * rx + rz * rz)
    square = torch.maximum(rx.abs(), rz.abs())
    horizontal = torch.where(obj[..., BOX] > 0, square, radial)
    qx = (horizontal - obj[..., RR]).abs() - obj[..., HW]
    qy = ly.abs() - obj[..., HH]
    ox, oy = qx.clamp(min=0.0), qy.clamp(min=0.0)
    d = torch.sqrt(ox * ox + oy * oy) + torch.maximum(qx, qy).clamp(max=0.0) - obj[..., RHO]
    return torch.where(obj[..., BOUND] > 0, d, torch.full_like(d, FAR))


def nearest(p: torch.Tensor, obj: torch.Tensor) -> torch.Tensor:
    """Distance to the nearest object, (A,): a fixed-order minimum over the slots."""
    d = object_distance(p, obj)
    out = d[:, 0]
    for j in range(1, d.shape[1]):
        out = torch.minimum(out, d[:, j])
    return out


def spheres_of(objects: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Bounding spheres of the scenes `image` (A,) picks: (A, N, 4) centre and radius."""
    return objects[:, :, [CX, CY, CZ, BOUND]][image]


def sphere_span(o: torch.Tensor, d: torch.Tensor, spheres: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Where rays o + t d (A, 3) (unit d) run through each slot's bounding sphere (spheres
    (A, N, 4) from `spheres_of`): t_in, t_out (A, N), t_in > t_out where they miss it."""
    oc = o[:, None, :] - spheres[..., :3]  # (A, N, 3)
    radius = spheres[..., 3]
    b = (oc * d[:, None, :]).sum(-1)
    c = (oc * oc).sum(-1) - radius * radius
    disc = b * b - c
    root = torch.sqrt(disc.clamp(min=0.0))
    miss = (disc <= 0.0) | (radius <= 0.0)
    t_in = torch.where(miss, torch.full_like(b, FAR), -b - root)
    t_out = torch.where(miss, torch.full_like(b, -FAR), -b + root)
    return t_in, t_out


def select_slots(mask: torch.Tensor, objects: torch.Tensor, image: torch.Tensor
                 ) -> torch.Tensor:
    """The slots of each row's scene (objects (B, N, FIELDS), image (A,)) that `mask` (A, N)
    keeps, first, in a (A, M, FIELDS) tensor (M = the most any row keeps, at least 1); the rest
    of a row's M are emptied (bound 0).

    A ray that cannot meet a slot (it misses its bounding sphere) marches the same without
    it, and a row's result depends on its own slots only (an emptied slot is FAR), so the
    smaller tensor changes no pixel whatever else shares the batch.
    """
    A, N = mask.shape
    M = max(1, int(mask.sum(dim=1).max())) if A else 1
    order = torch.argsort((~mask).to(torch.uint8), dim=1, stable=True)[:, :M]  # kept first
    sub = objects[image[:, None], order]  # (A, M, FIELDS), a copy
    kept = mask.gather(1, order)
    sub[..., BOUND] = torch.where(kept, sub[..., BOUND], 0.0)
    return sub


# ---- camera rays and marching -------------------------------------------------------------


def camera_rays(scene: Scene, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ray origins and unit directions through pixel centres: (B * size^2, 3) each, row-major,
    row 0 at the top."""
    dev = scene.eye.device
    c = (torch.arange(size, device=dev, dtype=torch.float32) + 0.5) * (2.0 / size) - 1.0
    v = (-c)[:, None].expand(size, size).reshape(1, -1, 1)  # up is +v
    u = c[None, :].expand(size, size).reshape(1, -1, 1)
    f = scene.tan_half_fov[:, None, None]
    d = (scene.forward[:, None, :] + (u * f) * scene.right[:, None, :]
         + (v * f) * scene.up[:, None, :])  # (B, P, 3)
    d = d / torch.sqrt((d * d).sum(-1, keepdim=True))
    o = scene.eye[:, None, :].expand_as(d)
    return o.reshape(-1, 3), d.reshape(-1, 3)


def march(o: torch.Tensor, d: torch.Tensor, image: torch.Tensor, objects: torch.Tensor,
          t_far: torch.Tensor, steps: int) -> torch.Tensor:
    """Sphere tracing against the objects: the distance t of each ray's hit, or FAR.

    o, d (A, 3); image (A,) the scene of each ray; objects (B, N, FIELDS); t_far (A,) where
    the ray stops looking (the ground). Rays start at their first bounding sphere; a ray is
    done when it is within 1e-3 * (1 + t) of a surface (a hit) or past its last bounding
    sphere or t_far (a miss); done rays leave the batch every 4 steps.
    """
    t_in, t_out = sphere_span(o, d, spheres_of(objects, image))  # (A, N)
    meets = (t_in < t_out) & (t_out > 0.0) & (t_in < t_far[:, None])
    t_start = torch.where(meets, t_in, FAR).amin(dim=1).clamp(min=0.0)
    t_end = torch.minimum(torch.where(meets, t_out, -FAR).amax(dim=1), t_far)
    result = torch.full_like(t_start, FAR)
    live = torch.nonzero(t_start < t_end).flatten()
    for rows in slot_buckets(meets[live]):
        ray = live[rows]  # rays meeting about as many bounding spheres: one slot tensor
        obj = select_slots(meets[ray], objects, image[ray])
        result[ray] = trace(o[ray], d[ray], t_start[ray], t_end[ray], obj, steps)
    return result


def slot_buckets(mask: torch.Tensor):
    """Row indices of `mask` (A, N) grouped by how many slots a row keeps (1, 2, 3-4, more):
    each group marches with a slot tensor as wide as its widest row, not the batch's."""
    counts = mask.sum(dim=1)
    for lo, hi in ((0, 1), (2, 2), (3, 4), (5, mask.shape[1])):
        rows = torch.nonzero((counts >= lo) & (counts <= hi)).flatten()
        if rows.numel():
            yield rows


def trace(o: torch.Tensor, d: torch.Tensor, t: torch.Tensor, t_end: torch.Tensor,
          obj: torch.Tensor, steps: int) -> torch.Tensor:
    """Sphere tracing of rays o + t d from t to t_end among obj (A, M, FIELDS): the hit
    distance, or FAR. Done rays (hits, and rays past t_end) leave every 4 steps."""
    result = torch.full_like(t, FAR)
    live = torch.arange(t.numel(), device=t.device)
    for step in range(steps):
        if live.numel() == 0:
            break
        h = nearest(o + t[:, None] * d, obj)
        hit = h < 1e-3 * (1.0 + t)
        result[live[hit]] = t[hit]
        t = torch.where(hit, t, t + h)  # a hit ray stays put until it leaves the batch
        if step % 4 == 3:
            keep = ~hit & (t < t_end)
            live, t, o, d, obj, t_end = (live[keep], t[keep], o[keep], d[keep], obj[keep],
                                         t_end[keep])
    return result


def soft_shadow(p: torch.Tensor, l: torch.Tensor, k: torch.Tensor, objects: torch.Tensor,
                image: torch.Tensor, steps: int) -> torch.Tensor:
    """Light reaching p (A, 3) from direction l (A, 3): min(1, min_t k h(p + t l) / t) over
    the march (Quilez's soft shadow). Only objects whose bounding sphere the shadow ray passes
    closer than t / k can darken it (k h / t >= 1 elsewhere): a ray with none is fully lit
    without marching, the others march among those alone and stop past the last of them.
    k (A,); objects (B, N, FIELDS) and image (A,): each point's scene."""
    out = torch.ones(p.shape[0], device=p.device)
    if steps == 0 or p.shape[0] == 0:
        return out
    spheres = spheres_of(objects, image)
    oc = spheres[..., :3] - p[:, None, :]  # (A, N, 3)
    radius = spheres[..., 3]
    along = (oc * l[:, None, :]).sum(-1)  # closest approach at t = along
    gap = torch.sqrt(((oc * oc).sum(-1) - along * along).clamp(min=0.0)) - radius
    near = (radius > 0) & (along > -radius) & (gap * k[:, None] < along.abs() + radius)
    live = torch.nonzero(near.any(dim=1)).flatten()
    t_end = torch.where(near, along + radius, 0.0).amax(dim=1)
    for rows in slot_buckets(near[live]):
        ray = live[rows]
        out[ray] = penumbra(p[ray], l[ray], k[ray], t_end[ray],
                            select_slots(near[ray], objects, image[ray]), steps)
    return out


def penumbra(p: torch.Tensor, l: torch.Tensor, k: torch.Tensor, t_end: torch.Tensor,
             obj: torch.Tensor, steps: int) -> torch.Tensor:
    """min(1, min_t k h / t) along p + t l (A rays among obj (A, M, FIELDS)), t from 0.02;
    a ray leaves past t_end or once dark."""
    res = torch.ones(p.shape[0], device=p.device)
    t = torch.full_like(res, 0.02)
    idx = torch.arange(p.shape[0], device=p.device)
    for step in range(steps):
        if idx.numel() == 0:
            break
        h = nearest(p + t[:, None] * l, obj)
        res[idx] = torch.minimum(res[idx], k * h / t)
        t = t + h.clamp(min=0.02, max=0.6)
        if step % 4 == 3:  # done: past the last near object, or fully dark
            keep = (t < t_end) & (res[idx] > 1e-3)
            idx, t, p, l, k, obj, t_end = (idx[keep], t[keep], p[keep], l[keep], k[keep],
                                           obj[keep], t_end[keep])
    return res.clamp(0.0, 1.0)


def ambient_occlusion(p: torch.Tensor, n: torch.Tensor, objects: torch.Tensor,
                      image: torch.Tensor) -> torch.Tensor:
    """1 - the occlusion of p (A, 3) along its normal n by the objects and the ground: three
    distance samples (a lower distance than the step's length means something is near)."""
    occ = torch.zeros(p.shape[0], device=p.device)
    reach = AO_STEPS[-1][0] + 0.05
    spheres = spheres_of(objects, image)
    centre = spheres[..., :3] - p[:, None, :]
    close = (spheres[..., 3] > 0) & (torch.sqrt((centre * centre).sum(-1))
                                     < spheres[..., 3] + reach)
    # elsewhere only the ground is near: no occlusion (a sample's height is its step)
    live = torch.nonzero(close.any(dim=1)).flatten()
    obj = select_slots(close[live], objects, image[live])
    p, n = p[live], n[live]
    for step, weight in AO_STEPS:
        q = p + step * n
        h = torch.minimum(nearest(q, obj), q[:, 1])
        occ[live] += weight * (step - h).clamp(min=0.0)
    return (1.0 - 2.0 * occ).clamp(0.0, 1.0)


def normals(p: torch.Tensor, obj: torch.Tensor) -> torch.Tensor:
    """Unit gradient of the distance to the objects obj (A, M, FIELDS) at p (A, 3) (four-tap
    tetrahedron; the renderer passes each point's own object alone)."""
    e = 5e-4
    taps = torch.tensor([[1, -1, -1], [-1, -1, 1], [-1, 1, -1], [1, 1, 1]],
                        dtype=p.dtype, device=p.device)
    g = torch.zeros_like(p)
    for tap in taps:
        g = g + tap * nearest(p + e * tap, obj)[:, None]
    return g / torch.sqrt((g * g).sum(-1, keepdim=True)).clamp(min=1e-12)


# ---- shading --------------------------------------------------------------------------------

# per material: diffuse weight, specular weight, specular exponent as log2 (by squaring: only
# multiplications touch a ray), specular tinted by the albedo, reflection of the environment
MATERIAL_TABLE = ((1.0, 0.04, 3, 0.0, 0.0),  # rubber
                  (0.9, 0.5, 5, 0.0, 0.05),  # glossy
                  (0.3, 0.9, 6, 1.0, 0.55))  # metal
GROUND_MATERIAL = (1.0, 0.08, 4, 0.0, 0.0)


def environment(r: torch.Tensor, ground: torch.Tensor, sky: torch.Tensor) -> torch.Tensor:
    """The studio seen along unit directions r (A, 3): ground colour below, sky above, a soft
    horizon in between. ground, sky (A, 3)."""
    w = (0.5 + 2.0 * r[:, 1:2]).clamp(0.0, 1.0)
    return ground * 0.8 * (1.0 - w) + sky * w


def power2(x: torch.Tensor, log2: torch.Tensor) -> torch.Tensor:
    """x ** (2 ** log2) by repeated squaring, per element (log2 (A,) int in 0..7)."""
    out = x
    for k in range(int(log2.max()) if log2.numel() else 0):
        out = torch.where(log2 > k, out * out, out)
    return out


def shade(scene: Scene, image: torch.Tensor, p: torch.Tensor, n: torch.Tensor,
          view: torch.Tensor, slot: torch.Tensor, shadow_steps: int) -> torch.Tensor:
    """Colour (A, 3) of surface points p with normals n seen along view (unit, towards p);
    slot (A,) the object slot or -1 for the ground; image (A,) their scenes."""
    dev = p.device
    is_ground = slot < 0
    s = slot.clamp(min=0)
    albedo = torch.where(is_ground[:, None], scene.ground[image],
                         scene.albedo[image, s])
    mat_table = torch.tensor(MATERIAL_TABLE + (GROUND_MATERIAL,), device=dev)
    mat = torch.where(is_ground, len(MATERIAL_TABLE), scene.material[image, s])
    kd, ks, log2, tint, refl = mat_table[mat].unbind(-1)
    ao = ambient_occlusion(p, n, scene.objects, image)
    diffuse = scene.ambient[image] * ao
    specular = torch.zeros_like(diffuse)
    start = p + 2e-3 * n
    for light in range(scene.light_dir.shape[1]):
        power = scene.light_power[image, light]
        lit = torch.nonzero(power > 0).flatten()
        if lit.numel() == 0:
            continue
        l = scene.light_dir[image[lit], light]
        shadow = soft_shadow(start[lit], l, scene.softness[image[lit], light], scene.objects,
                             image[lit], shadow_steps)
        ndl = (n[lit] * l).sum(-1).clamp(min=0.0)
        half = l - view[lit]
        half = half / torch.sqrt((half * half).sum(-1, keepdim=True)).clamp(min=1e-12)
        ndh = (n[lit] * half).sum(-1).clamp(min=0.0)
        diffuse[lit] += power[lit] * ndl * shadow
        specular[lit] += power[lit] * shadow * power2(ndh, log2[lit].long()) * (ndl > 0)
    r = view - 2.0 * (view * n).sum(-1, keepdim=True) * n
    env = environment(r, scene.ground[image], scene.sky[image])
    spec_colour = tint[:, None] * albedo + (1.0 - tint[:, None])
    return (kd[:, None] * diffuse[:, None] * albedo + (ks * specular)[:, None] * spec_colour
            + refl[:, None] * ao[:, None] * env * albedo)


def render_scene(scene: Scene, resolution: int, *, march_steps: int = 64,
                 shadow_steps: int = 24, supersample: int = 1,
                 buffers: bool = False):
    """Images (B, 3, R, R) float32 in [0, 1] of `scene` (sqrt as the display gamma); with
    `buffers`, also a dict of per-pixel (B, R, R) maps at supersample 1: 'slot' (object slot,
    -1 ground, -2 sky), 't' (hit distance), 'normal' (B, R, R, 3), 'linear' (B, 3, R, R)."""
    size = resolution * supersample
    B = scene.eye.shape[0]
    o, d = camera_rays(scene, size)  # (B * P, 3)
    P = size * size
    image = torch.arange(B, device=o.device).repeat_interleave(P)
    down = d[:, 1] < 0
    t_ground = torch.where(down, -o[:, 1] / torch.where(down, d[:, 1], -1.0),
                           torch.full_like(d[:, 1], FAR))
    t_obj = march(o, d, image, scene.objects, t_ground, march_steps)
    on_obj = t_obj < FAR
    t = torch.where(on_obj, t_obj, t_ground)
    surface = torch.nonzero(t < FAR).flatten()
    p = o[surface] + t[surface, None] * d[surface]
    img = image[surface]
    hit_obj = on_obj[surface]
    at = torch.nonzero(hit_obj).flatten()
    slot = torch.full_like(img, -1)
    slot[at] = object_distance(p[at], scene.objects[img[at]]).argmin(dim=1)  # the object hit
    n = torch.zeros_like(p)
    n[:, 1] = 1.0
    own = torch.nn.functional.one_hot(slot[at], scene.objects.shape[1]).bool()
    n[at] = normals(p[at], select_slots(own, scene.objects, img[at]))
    colour = environment(d, scene.ground[image], scene.sky[image])  # sky where nothing is hit
    colour[surface] = shade(scene, img, p, n, d[surface], slot, shadow_steps)
    linear = colour.view(B, size, size, 3).permute(0, 3, 1, 2)
    if supersample > 1:
        linear = torch.nn.functional.avg_pool2d(linear, supersample)
    out = torch.sqrt(linear.clamp(0.0, 1.0))
    if not buffers:
        return out
    slots = torch.full((B * P,), -2, dtype=torch.long, device=o.device)
    slots[surface] = slot
    normal = torch.zeros(B * P, 3, device=o.device)
    normal[surface] = n
    return out, {"slot": slots.view(B, size, size), "t": t.view(B, size, size),
                 "normal": normal.view(B, size, size, 3), "linear": linear}


# ---- random scenes ---------------------------------------------------------------------------


def _trig(angle: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin in float64, rounded to float32 (per-image values: no SIMD/scalar ulp drift)."""
    a = angle.double()
    return torch.cos(a).float(), torch.sin(a).float()


def look_at(eye: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """forward, right, up (B, 3) of cameras at eye looking at target (y up)."""
    f = (target - eye).double()
    f = f / f.norm(dim=-1, keepdim=True)
    up0 = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64, device=eye.device).expand_as(f)
    r = torch.linalg.cross(f, up0)
    r = r / r.norm(dim=-1, keepdim=True)
    u = torch.linalg.cross(r, f)
    return f.float(), r.float(), u.float()


def sample_scene(config: CGScenesConfig, indices: torch.Tensor, seed: int) -> Scene:
    """The scene of each image, a pure function of (config, seed, index)."""
    rnd = ImageRandom(seed, indices, "cg_scenes/scene")
    B, dev, N = indices.numel(), indices.device, config.objects_max
    count = rnd.integers(config.objects_min, config.objects_max + 1, 1)  # (B, 1)
    cells = rnd.uniform(GRID * GRID).argsort(dim=1)[:, :N]  # distinct cells
    kind = torch.tensor([KINDS.index(k) for k in config.kinds], device=dev)[
        rnd.integers(0, len(config.kinds), N)]  # (B, N)
    size = 0.3 + 0.4 * rnd.uniform(N)  # CLEVR: 0.35 small, 0.7 large
    shape = rnd.uniform(N)  # cylinder height, torus thickness
    jitter = rnd.uniform(N, 2) * 2.0 - 1.0
    cos, sin = _trig(rnd.uniform(N) * (2.0 * math.pi))
    material = rnd.integers(0, len(MATERIALS), N)
    if config.colors == "clevr":
        palette = torch.tensor(CLEVR_LINEAR, dtype=torch.float32, device=dev)
        albedo = palette[rnd.integers(0, len(CLEVR_COLORS), N)]
    else:
        albedo = hsv_colours(rnd.uniform(N, 3))
    objects = torch.zeros(B, N, FIELDS, device=dev)
    is_ = {k: kind == KINDS.index(k) for k in KINDS}
    rho = torch.where(is_["sphere"], size, torch.where(is_["torus"], size * (0.2 + 0.15 * shape),
                                                       0.06 * size))
    objects[..., RHO] = rho
    objects[..., RR] = torch.where(is_["torus"], size - rho, 0.0)
    objects[..., HW] = torch.where(is_["cube"], 0.8 * size - rho,
                                   torch.where(is_["cylinder"], size - rho, 0.0))
    objects[..., HH] = torch.where(is_["cube"], 0.8 * size - rho,
                                   torch.where(is_["cylinder"], (0.5 + 0.6 * shape) * size - rho,
                                               0.0))
    objects[..., BOX] = is_["cube"].float()
    objects[..., COS], objects[..., SIN] = cos, sin
    reach = (objects[..., RR] + objects[..., HW]) * torch.where(is_["cube"], math.sqrt(2.0), 1.0)
    cell = 2.0 * EXTENT / GRID
    slack = (cell / 2.0 - reach - rho).clamp(min=0.0)
    objects[..., CX] = -EXTENT + cell * ((cells % GRID).float() + 0.5) + jitter[..., 0] * slack
    objects[..., CZ] = -EXTENT + cell * ((cells // GRID).float() + 0.5) + jitter[..., 1] * slack
    objects[..., CY] = objects[..., HH] + rho
    bound = torch.sqrt(reach * reach + objects[..., HH] * objects[..., HH]) + rho
    present = torch.arange(N, device=dev)[None, :] < count
    objects[..., BOUND] = torch.where(present, bound * 1.001 + 1e-3, 0.0)
    return Scene(**camera(rnd, B, dev), objects=objects, albedo=albedo, material=material,
                 **lights(rnd, config.lights_max, B, dev))


def camera(rnd: ImageRandom, B: int, dev: torch.device) -> dict[str, torch.Tensor]:
    """A camera on a sphere around the scene's centre, looking slightly below it: azimuth
    uniform, elevation 25-50 degrees, distance 7.5-10.5, field of view 38-50 degrees (CLEVR:
    a jittered camera at about 30 degrees elevation and 10 units)."""
    u = rnd.uniform(6).double()
    az = u[:, 0] * (2.0 * math.pi)
    el = (25.0 + 25.0 * u[:, 1]) * (math.pi / 180.0)
    dist = 7.5 + 3.0 * u[:, 2]
    eye = torch.stack([dist * torch.cos(el) * torch.cos(az), dist * torch.sin(el),
                       dist * torch.cos(el) * torch.sin(az)], dim=1)
    target = torch.stack([(u[:, 3] - 0.5) * 1.5, torch.full_like(dist, 0.3),
                          (u[:, 4] - 0.5) * 1.5], dim=1)
    f, r, up = look_at(eye, target)
    fov = (38.0 + 12.0 * u[:, 5]) * (math.pi / 180.0)
    return {"eye": eye.float(), "forward": f, "right": r, "up": up,
            "tan_half_fov": torch.tan(fov / 2.0).float()}


def lights(rnd: ImageRandom, lights_max: int, B: int, dev: torch.device
           ) -> dict[str, torch.Tensor]:
    """1..lights_max distant lights: a key light (power 0.75-1.05) and fill lights (0.15-0.45)
    at azimuths uniform, elevations 30-70 degrees, penumbra constants 5-16; an ambient term,
    a grey ground and a light grey studio sky (CLEVR's grey floor and backdrop)."""
    count = rnd.integers(1, lights_max + 1, 1)  # (B, 1)
    u = rnd.uniform(lights_max, 4).double()
    az = u[..., 0] * (2.0 * math.pi)
    el = (30.0 + 40.0 * u[..., 1]) * (math.pi / 180.0)
    direction = torch.stack([torch.cos(el) * torch.cos(az), torch.sin(el),
                             torch.cos(el) * torch.sin(az)], dim=-1).float()
    key = torch.arange(lights_max, device=dev)[None, :] == 0
    power = torch.where(key, 0.75 + 0.3 * u[..., 2], 0.15 + 0.3 * u[..., 2]).float()
    power = torch.where(torch.arange(lights_max, device=dev)[None, :] < count, power, 0.0)
    g = rnd.uniform(3)
    grey = 0.35 + 0.25 * g[:, 0:1]  # display values; squared: about linear (no pow: exact)
    sky = 0.55 + 0.25 * g[:, 2:3]
    return {"light_dir": direction, "light_power": power,
            "softness": (5.0 + 11.0 * u[..., 3]).float(),
            "ambient": 0.12 + 0.12 * g[:, 1], "ground": (grey * grey).expand(B, 3).contiguous(),
            "sky": (sky * sky).expand(B, 3).contiguous()}


def hsv_colours(u: torch.Tensor) -> torch.Tensor:
    """Linear RGB of random colours: hue uniform, saturation 0.4-0.9, value 0.45-0.95
    (u (..., 3) uniforms); the hue's sextant by comparisons only."""
    h = u[..., 0] * 6.0
    s = 0.4 + 0.5 * u[..., 1]
    v = 0.45 + 0.5 * u[..., 2]
    k = torch.stack([(5.0 + h) % 6.0, (3.0 + h) % 6.0, (1.0 + h) % 6.0], dim=-1)
    ramp = torch.minimum(k, 4.0 - k).clamp(0.0, 1.0)
    rgb = v[..., None] - (v * s)[..., None] * ramp
    return rgb * rgb  # about sRGB -> linear


class CGScenes(Generator):
    """CLEVR-like scenes rendered by batched signed-distance ray marching."""

    config_cls = CGScenesConfig
    cheap_settings = {"march_steps": 32, "shadow_steps": 12}

    def default_batch_size(self, device: torch.device) -> int:
        return 512 if device.type == "cuda" else 8

    def scene(self, indices: torch.Tensor, seed: int) -> Scene:
        return sample_scene(self.config, indices, seed)

    def render(self, indices: torch.Tensor, seed: int) -> torch.Tensor:
        cfg = self.config
        return render_scene(self.scene(indices, seed), cfg.resolution,
                            march_steps=cfg.march_steps, shadow_steps=cfg.shadow_steps,
                            supersample=cfg.supersample)


register_generator("cg_scenes", CGScenes,
                   "CLEVR-like 3-D scenes: 3-10 spheres, cubes, cylinders and tori of rubber, "
                   "glossy or metal on a grey floor, 1-3 soft-shadowed lights, a random camera; "
                   "batched SDF ray marching (paper: CG / CLEVR)")
