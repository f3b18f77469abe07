"""cg_scenes: CLEVR-like scenes by batched SDF ray marching (generators/cg_scenes.py).

A known scene (one sphere, one light, a fixed camera) against analytic geometry and shading:
the silhouette's radius, the lit side's brightness pixel by pixel, the shadow on the floor where
the sphere blocks the light and none elsewhere. The distance function of each primitive against
its closed form; sampled scenes stand on the floor without overlapping.
"""

from __future__ import annotations

import math

import pytest
import torch

from noisevision import create_generator
from noisevision.errors import ConfigError
from noisevision.generators.cg_scenes import (
    BOUND,
    BOX,
    CX,
    CY,
    CZ,
    FIELDS,
    HH,
    HW,
    RHO,
    RR,
    CGScenesConfig,
    Scene,
    object_distance,
    render_scene,
    sample_scene,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

RES, R, D, TAN = 96, 1.0, 8.0, 0.25
LIGHT = torch.tensor([0.6, 0.64, 0.48])  # unit: towards the light, 40 degrees up
ALBEDO = torch.tensor([0.6, 0.3, 0.2])


def one_sphere(ambient: float = 0.0, softness: float = 8.0) -> Scene:
    """A rubber sphere of radius 1 on the floor at the origin, seen level from 8 units on +z
    (so the camera looks along -z), one distant light, no ambient term."""
    obj = torch.zeros(1, 1, FIELDS)
    obj[0, 0, CY], obj[0, 0, RHO], obj[0, 0, BOUND] = R, R, R * 1.001
    obj[0, 0, 3] = 1.0  # cos of the turn
    v = lambda *x: torch.tensor([list(x)], dtype=torch.float32)  # noqa: E731
    return Scene(eye=v(0.0, R, D), forward=v(0.0, 0.0, -1.0), right=v(1.0, 0.0, 0.0),
                 up=v(0.0, 1.0, 0.0), tan_half_fov=torch.tensor([TAN]), objects=obj,
                 albedo=ALBEDO.view(1, 1, 3), material=torch.zeros(1, 1, dtype=torch.long),
                 light_dir=LIGHT.view(1, 1, 3), light_power=torch.tensor([[1.0]]),
                 softness=torch.tensor([[softness]]), ambient=torch.tensor([ambient]),
                 ground=torch.full((1, 3), 0.3), sky=torch.full((1, 3), 0.5))


@pytest.fixture(scope="module")
def rendered():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return render_scene(one_sphere(), RES, march_steps=96, shadow_steps=48, buffers=True)
    finally:
        torch.set_num_threads(n)


def pixel_rays():
    c = (torch.arange(RES) + 0.5) * (2.0 / RES) - 1.0
    u, v = c[None, :].expand(RES, RES), (-c)[:, None].expand(RES, RES)
    d = torch.stack([u * TAN, v * TAN, -torch.ones(RES, RES)], -1).double()
    return torch.tensor([0.0, R, D], dtype=torch.float64), d / d.norm(dim=-1, keepdim=True)


def test_the_silhouette_has_the_projected_radius(rendered):
    _, buf = rendered
    area = float((buf["slot"][0] == 0).sum())
    want = math.tan(math.asin(R / D)) / TAN * (RES / 2)  # px: the cone tangent to the sphere
    assert math.sqrt(area / math.pi) == pytest.approx(want, abs=0.5)
    # every pixel whose ray meets the sphere analytically (away from the rim) shows it
    o, d = pixel_rays()
    oc = o - torch.tensor([0.0, R, 0.0], dtype=torch.float64)
    b = (d * oc).sum(-1)
    disc = b * b - ((oc * oc).sum() - R * R)
    inside, outside = disc > 0.02, disc < -0.02
    assert (buf["slot"][0][inside] == 0).all() and (buf["slot"][0][outside] != 0).all()


def test_the_lit_side_has_the_analytic_brightness(rendered):
    """Rubber: albedo * P * (n . l) + 0.04 P (n . h)^8 with the analytic normal of the ray's
    analytic hit; where n . l > 0.5 (soft self-shadowing stays at 1 there)."""
    _, buf = rendered
    o, d = pixel_rays()
    oc = o - torch.tensor([0.0, R, 0.0], dtype=torch.float64)
    b = (d * oc).sum(-1)
    disc = b * b - ((oc * oc).sum() - R * R)
    t = -b - torch.sqrt(disc.clamp(min=0))
    n = oc + t[..., None] * d  # unit: the sphere has radius 1
    l = LIGHT.double()
    ndl = (n * l).sum(-1)
    h = l - d
    h = h / h.norm(dim=-1, keepdim=True)
    want = (ALBEDO.double()[:, None, None] * ndl + 0.04 * (n * h).sum(-1).clamp(min=0) ** 8)
    sel = (disc > 0.05) & (ndl > 0.5) & (buf["slot"][0] == 0)
    assert int(sel.sum()) > 300
    got = buf["linear"][0].double()
    err = (got - want)[:, sel].abs()
    assert float(err.max()) < 4e-3, float(err.max())
    brightest = got[:, sel].sum(0).argmax()
    assert float(ndl[sel][brightest]) > 0.97  # the brightest pixel faces the light


def test_the_floor_is_shadowed_exactly_where_the_sphere_blocks_the_light(rendered):
    _, buf = rendered
    o, d = pixel_rays()
    floor = buf["slot"][0] == -1
    t = -o[1] / d[..., 1]
    g = o + t[..., None] * d  # floor points
    l = LIGHT.double()
    to_c = torch.tensor([0.0, R, 0.0], dtype=torch.float64) - g
    along = (to_c * l).sum(-1)
    miss = torch.sqrt(((to_c * to_c).sum(-1) - along ** 2).clamp(min=0))  # ray-to-centre
    h = l - d
    h = h / h.norm(dim=-1, keepdim=True)
    lit = 0.3 * l[1] + 0.08 * h[..., 1].clamp(min=0) ** 16  # the unshadowed floor
    got = buf["linear"][0, 0].double()
    umbra = floor & (along > 0) & (miss < 0.7 * R)
    clear = floor & ((along < 0) | (miss > R + along / 8.0 + 0.3))
    assert int(umbra.sum()) > 50 and int(clear.sum()) > 1000
    assert float((got[umbra] / lit[umbra]).max()) < 0.05
    assert float((got[clear] / lit[clear] - 1).abs().max()) < 0.02


def test_primitives_match_their_closed_forms():
    g = torch.Generator().manual_seed(0)
    p = (torch.rand(4000, 3, generator=g) - 0.5) * 6
    obj = torch.zeros(1, 4, FIELDS)
    obj[..., 3] = 1.0
    obj[..., BOUND] = 1.0
    obj[0, 0, RHO] = 1.2  # sphere
    obj[0, 1, HW], obj[0, 1, HH] = 0.8, 1.1  # cylinder
    obj[0, 2, RR], obj[0, 2, RHO] = 1.5, 0.4  # flat torus
    obj[0, 3, HW], obj[0, 3, HH], obj[0, 3, BOX] = 0.9, 0.6, 1.0  # box
    for k in range(4):
        obj[0, k, CX], obj[0, k, CY], obj[0, k, CZ] = 0.3, 0.2, -0.1
    got = object_distance(p, obj.expand(len(p), -1, -1)).double()
    q = (p - torch.tensor([0.3, 0.2, -0.1])).double()
    radial = torch.sqrt(q[:, 0] ** 2 + q[:, 2] ** 2)
    sphere = q.norm(dim=1) - 1.2
    dc = torch.stack([radial - 0.8, q[:, 1].abs() - 1.1], 1)
    cylinder = dc.clamp(min=0).norm(dim=1) + dc.max(1).values.clamp(max=0)
    torus = torch.stack([radial - 1.5, q[:, 1]], 1).norm(dim=1) - 0.4
    db = q.abs() - torch.tensor([0.9, 0.6, 0.9], dtype=torch.float64)
    box = db.clamp(min=0).norm(dim=1) + db.max(1).values.clamp(max=0)
    for k, want in enumerate((sphere, cylinder, torus)):
        assert torch.allclose(got[:, k], want, atol=2e-5), k
    # the box: exact inside and on its faces' slabs; a lower bound elsewhere (as marching needs)
    slab = (db > 0).sum(1) <= 1
    assert torch.allclose(got[slab, 3], box[slab], atol=2e-5)
    assert (got[:, 3] <= box + 2e-5).all()
    assert (got[:, 3] >= torch.where(box > 0, box / math.sqrt(2), box) - 2e-5).all()


def test_sampled_scenes_stand_on_the_floor_without_overlap():
    cfg = CGScenesConfig(resolution=32)
    scene = sample_scene(cfg, torch.arange(300), seed=4)
    obj = scene.objects
    present = obj[..., BOUND] > 0
    counts = present.sum(1)
    assert int(counts.min()) >= cfg.objects_min and int(counts.max()) <= cfg.objects_max
    assert len(set(counts.tolist())) == cfg.objects_max - cfg.objects_min + 1
    bottom = obj[..., CY] - obj[..., HH] - obj[..., RHO]
    assert torch.allclose(bottom[present], torch.zeros(int(present.sum())), atol=1e-5)
    reach = (obj[..., RR] + obj[..., HW]) * torch.where(obj[..., BOX] > 0, math.sqrt(2), 1.0)
    reach = reach + obj[..., RHO]
    for b in range(obj.shape[0]):
        idx = torch.nonzero(present[b]).flatten()
        xz = obj[b, idx][:, [CX, CZ]]
        dist = torch.cdist(xz, xz) + torch.eye(len(idx)) * 100
        assert (dist >= reach[b, idx][:, None] + reach[b, idx][None, :] - 1e-4).all()
    assert (scene.light_power[:, 0] > 0).all()
    lights = (scene.light_power > 0).sum(1)
    assert set(lights.tolist()) == {1, 2, 3}


@pytest.mark.parametrize("opts, field", [
    ({"objects_min": 6, "objects_max": 4}, "objects_min"),
    ({"objects_max": 40}, "objects_max"),
    ({"kinds": ["sphere", "pyramid"]}, "kinds"),
    ({"colors": "neon"}, "colors"),
    ({"supersample": 9}, "supersample"),
])
def test_bad_options_name_the_field(opts, field):
    with pytest.raises(ConfigError, match=field):
        create_generator("cg_scenes", **opts)


def test_kinds_and_colours_options_change_the_scenes():
    spheres = sample_scene(CGScenesConfig(resolution=32, kinds=("sphere",)), torch.arange(20), 0)
    present = spheres.objects[..., BOUND] > 0
    assert (spheres.objects[..., HW][present] == 0).all()  # every one a sphere
    assert (spheres.objects[..., RR][present] == 0).all()
    clevr = sample_scene(CGScenesConfig(resolution=32), torch.arange(20), 0)
    assert len(torch.unique(clevr.albedo.reshape(-1, 3), dim=0)) <= 8
    rand = sample_scene(CGScenesConfig(resolution=32, colors="random"), torch.arange(20), 0)
    assert len(torch.unique(rand.albedo.reshape(-1, 3), dim=0)) > 100
