"""Embedded (moderngl) renderer specifics: materials, resource reuse, processes, projection details."""

from __future__ import annotations

import io
import math
import multiprocessing

import numpy as np
import pytest
import trimesh
from PIL import Image
from trimesh.visual.material import PBRMaterial, SimpleMaterial

from rendering import camera
from rendering.backend import Renderer, SceneLoadError
from rendering.backends.embedded import EmbeddedRenderer, check_intrinsics

X = np.array([1.0, 0.0, 0.0])
Y = np.array([0.0, 1.0, 0.0])
LEVEL = camera.look_at(np.array([0.0, 1.5, 0.0]), np.array([0.0, 1.5, -1.0]))  # looks along -Z


@pytest.fixture(scope="module")
def renderer() -> EmbeddedRenderer:
    with EmbeddedRenderer() as r:
        yield r


def _quad(center, half, right=X, up=Y) -> trimesh.Trimesh:
    center = np.asarray(center, dtype=np.float64)
    corners = [center + half * (sx * right + sy * up) for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
    return trimesh.Trimesh(vertices=np.array(corners), faces=[[0, 1, 2], [0, 2, 3]], process=False)


def _textured(mesh: trimesh.Trimesh, material) -> trimesh.Trimesh:
    mesh.visual = trimesh.visual.TextureVisuals(uv=[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], material=material)
    return mesh


def _solid_image(rgb, size=8, alpha=None) -> Image.Image:
    pixels = np.zeros((size, size, 4), dtype=np.uint8)
    pixels[..., :3] = rgb
    pixels[..., 3] = 255 if alpha is None else alpha
    return Image.fromarray(pixels)


def _pixel(view, K, pose, point) -> np.ndarray:
    uv, _ = camera.project(np.array([point], dtype=np.float64), K, pose)
    u, v = uv[0]
    return view.rgb[int(math.floor(v)), int(math.floor(u))].astype(int)


def _room(lo=(-3.0, 0.0, -4.0), hi=(3.0, 3.0, 4.0)) -> trimesh.Trimesh:
    room = trimesh.creation.box(bounds=[lo, hi])
    room.invert()
    room.visual.vertex_colors = [120, 120, 120, 255]
    return room


def test_satisfies_renderer_protocol(renderer):
    assert isinstance(renderer, Renderer)
    assert renderer.name == "embedded"
    assert isinstance(renderer.gl_renderer, str) and renderer.gl_renderer  # llvmpipe here, a GPU elsewhere


def test_nothing_hit_gives_zero_depth_and_black(renderer):
    quad = _quad([0.0, 1.5, -2.0], 0.5)
    quad.visual.vertex_colors = [255, 255, 255, 255]
    renderer.load_mesh(trimesh.Scene(quad))
    K = camera.intrinsics_from_fov(32, 32, 90.0)
    view = renderer.render(K, LEVEL, 32, 32)
    assert view.depth[16, 16] == pytest.approx(2.0, abs=1e-5)
    assert view.depth[0, 0] == 0.0 and view.rgb[0, 0].tolist() == [0, 0, 0]
    assert 0.0 < view.valid_fraction < 0.2


def test_off_centre_non_square_intrinsics_give_exact_depth_and_projection(renderer):
    renderer.load_mesh(trimesh.Scene(_room()))
    width, height = 40, 30
    K = np.array([[41.0, 0.0, 17.3], [0.0, 29.5, 18.9], [0.0, 0.0, 1.0]])
    pose = camera.apply_orientation_noise(LEVEL, 0.2, -0.1, 0.3)
    view = renderer.render(K, pose, width, height)
    # Every pixel of this view sees the far wall z = -4 or a side wall: compare with ray/plane hits.
    dirs = camera.pixel_rays(width, height, K) @ pose[:3, :3].T
    origin = pose[:3, 3]
    lo, hi = np.array([-3.0, 0.0, -4.0]), np.array([3.0, 3.0, 4.0])
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.concatenate([(lo - origin) / dirs, (hi - origin) / dirs], axis=-1)
    t = np.where(t > 0, t, np.inf)
    expected, wall = t.min(-1), t.argmin(-1)
    interior = np.ones_like(wall, dtype=bool)
    interior[1:-1, 1:-1] = (
        (wall[1:-1, 1:-1] == wall[:-2, 1:-1]) & (wall[1:-1, 1:-1] == wall[2:, 1:-1])
        & (wall[1:-1, 1:-1] == wall[1:-1, :-2]) & (wall[1:-1, 1:-1] == wall[1:-1, 2:])
    )
    interior[[0, -1], :] = interior[:, [0, -1]].all()  # borders: keep only if one wall everywhere
    assert np.abs(view.depth - expected)[interior].max() <= 1e-3


def test_two_scenes_in_one_context_and_release_of_the_first(renderer):
    red = _quad([0.0, 1.5, -2.0], 0.5)
    red.visual.vertex_colors = [255, 0, 0, 255]
    blue_textured = _textured(_quad([0.0, 1.5, -3.0], 1.0), PBRMaterial(baseColorTexture=_solid_image((0, 0, 255))))
    K = camera.intrinsics_from_fov(16, 16, 60.0)

    renderer.load_mesh(trimesh.Scene(blue_textured))
    first_textures = list(renderer._textures)
    first_buffers = [b for p in renderer._primitives for b in p.buffers]
    assert renderer.resource_counts()["textures"] == 1
    blue = renderer.render(K, LEVEL, 16, 16)
    before = renderer.resource_counts()

    renderer.load_mesh(trimesh.Scene(red))
    assert all(type(obj.mglo).__name__ == "InvalidObject" for obj in first_textures + first_buffers)
    assert renderer.resource_counts() == {**before, "primitives": 1, "triangles": 2, "buffers": 4, "textures": 0}
    view = renderer.render(K, LEVEL, 16, 16)
    assert view.rgb[8, 8].tolist() == [255, 0, 0] and blue.rgb[8, 8].tolist() == [0, 0, 255]
    assert view.depth[8, 8] == pytest.approx(2.0, abs=1e-5) and blue.depth[8, 8] == pytest.approx(3.0, abs=1e-5)

    for _ in range(3):  # reloading does not accumulate GL objects
        renderer.load_mesh(trimesh.Scene(blue_textured))
    assert renderer.resource_counts() == {**before, "primitives": 1, "triangles": 2, "buffers": 4, "textures": 1}


def _multi_material_scene() -> trimesh.Scene:
    """Four materials in one scene: PBR texture x factor, SimpleMaterial image, factor only, and one
    geometry instanced twice by node transforms."""
    scene = trimesh.Scene()
    scene.add_geometry(
        _textured(_quad([-1.5, 2.2, 0.0], 0.3), PBRMaterial(baseColorTexture=_solid_image((200, 200, 100)),
                                                            baseColorFactor=[255, 128, 255, 255])),
        geom_name="pbr_textured",
        transform=trimesh.transformations.translation_matrix([0.0, 0.0, -3.0]),
    )
    scene.add_geometry(
        # White diffuse: trimesh's GLB export multiplies the image by it (the renderer uses the image
        # alone for SimpleMaterial, since trimesh fills in grey when an MTL file has no Kd).
        _textured(_quad([1.5, 2.2, -3.0], 0.3),
                  SimpleMaterial(image=_solid_image((10, 220, 40)), diffuse=[255, 255, 255, 255])),
        geom_name="simple_image",
    )
    scene.add_geometry(
        _textured(_quad([0.0, 2.2, -3.0], 0.3), PBRMaterial(baseColorFactor=[30, 60, 250, 255])),
        geom_name="factor_only",
    )
    shared = _quad([0.0, 0.0, 0.0], 0.3)
    shared.visual.vertex_colors = [240, 240, 0, 255]
    scene.add_geometry(shared, geom_name="instance", node_name="left",
                       transform=trimesh.transformations.translation_matrix([-1.0, 0.8, -3.0]))
    scene.add_geometry(shared, geom_name="instance", node_name="right",
                       transform=trimesh.transformations.translation_matrix([1.0, 0.8, -3.0]))
    return scene


MULTI_EXPECTED = {
    (-1.5, 2.2, -3.0): (200, 100, 100),  # texture (200, 200, 100) x factor (1, 0.5, 1)
    (1.5, 2.2, -3.0): (10, 220, 40),
    (0.0, 2.2, -3.0): (30, 60, 250),
    (-1.0, 0.8, -3.0): (240, 240, 0),
    (1.0, 0.8, -3.0): (240, 240, 0),
}


@pytest.mark.parametrize("through_glb", [False, True])
def test_multi_primitive_multi_material_scene(renderer, through_glb):
    scene = _multi_material_scene()
    if through_glb:
        scene = trimesh.load(io.BytesIO(scene.export(file_type="glb")), file_type="glb", force="scene")
    renderer.load_mesh(scene)
    assert renderer.resource_counts()["primitives"] == 5
    K = camera.intrinsics_from_fov(64, 48, 90.0)
    view = renderer.render(K, LEVEL, 64, 48)
    for point, rgb in MULTI_EXPECTED.items():
        assert np.abs(_pixel(view, K, LEVEL, point) - rgb).max() <= 2, (point, _pixel(view, K, LEVEL, point))


def test_face_colours_stay_per_face():
    quad = _quad([0.0, 1.5, -2.0], 0.5)
    quad.visual.face_colors = [[255, 0, 0, 255], [0, 255, 0, 255]]  # the two triangles share an edge
    K = camera.intrinsics_from_fov(32, 32, 60.0)
    with EmbeddedRenderer() as r:
        r.load_mesh(quad)
        view = r.render(K, LEVEL, 32, 32)
    # Triangle 0 covers the lower-right half of the quad, triangle 1 the upper-left.
    assert _pixel(view, K, LEVEL, [0.3, 1.2, -2.0]).tolist() == [255, 0, 0]
    assert _pixel(view, K, LEVEL, [-0.3, 1.8, -2.0]).tolist() == [0, 255, 0]


def test_mipmaps_average_a_fine_checker_seen_from_afar(renderer):
    checker = (np.indices((64, 64)).sum(axis=0) % 2 * 255).astype(np.uint8)
    quad = _textured(_quad([0.0, 1.5, -20.0], 1.0), PBRMaterial(baseColorTexture=Image.fromarray(checker)))
    renderer.load_mesh(trimesh.Scene(quad))
    K = camera.intrinsics_from_fov(64, 64, 40.0)
    view = renderer.render(K, LEVEL, 64, 64)
    patch = view.rgb[29:35, 29:35, 0].astype(float)  # the quad covers ~9 x 9 pixels around the centre
    assert abs(patch.mean() - 127.5) < 10 and patch.std() < 10  # no aliasing to black and white


def test_alpha_mask_discards_transparent_texels(renderer):
    alpha = np.zeros((8, 8), dtype=np.uint8)
    alpha[:, 4:] = 255  # right half opaque
    cutout = _textured(_quad([0.0, 1.5, -2.0], 0.5),
                       PBRMaterial(baseColorTexture=_solid_image((255, 255, 255), alpha=alpha), alphaMode="MASK"))
    renderer.load_mesh(trimesh.Scene([cutout, _room()]))
    K = camera.intrinsics_from_fov(32, 32, 60.0)
    view = renderer.render(K, LEVEL, 32, 32)
    (ul, vl), (ur, vr) = camera.project(np.array([[-0.25, 1.5, -2.0], [0.25, 1.5, -2.0]]), K, LEVEL)[0]
    assert view.depth[int(vr), int(ur)] == pytest.approx(2.0, abs=1e-4)
    assert view.depth[int(vl), int(ul)] == pytest.approx(4.0, abs=1e-4)  # seen through to the wall


def test_framebuffer_cache_is_bounded(renderer):
    renderer.load_mesh(trimesh.Scene(_room()))
    for size in (8, 9, 10, 11, 12, 8):
        view = renderer.render(camera.intrinsics_from_fov(size, size, 60.0), LEVEL, size, size)
        assert view.rgb.shape == (size, size, 3)
    assert renderer.resource_counts()["framebuffers"] <= 4


def test_bad_input_errors():
    with pytest.raises(ValueError, match="near"):
        EmbeddedRenderer(near=0.0)
    with pytest.raises(RuntimeError, match="device_index=99"):
        EmbeddedRenderer(device_index=99)
    with pytest.raises(ValueError, match="pinhole"):
        check_intrinsics(np.array([[30.0, 0, 16], [1.0, 30.0, 16], [0, 0, 1]]))
    with EmbeddedRenderer(device_index=0) as r:
        K = camera.intrinsics_from_fov(16, 16, 60.0)
        with pytest.raises(RuntimeError, match="no scene loaded"):
            r.render(K, LEVEL, 16, 16)
        with pytest.raises(SceneLoadError, match="no triangle"):
            r.load_mesh(trimesh.Scene(), scene_id="empty")
        r.load_mesh(_room())
        with pytest.raises(ValueError, match="width"):
            r.render(K, LEVEL, 0, 16)
        nan_mesh = _room()
        nan_mesh.vertices[0] = np.nan
        with pytest.raises(SceneLoadError, match="NaN"):
            r.load_mesh(nan_mesh)
    with pytest.raises(RuntimeError, match="closed"):
        r.render(K, LEVEL, 16, 16)
    r.close()  # closing twice is harmless


def _render_centre_depth_in_child(distance: float) -> tuple[str, float]:
    quad = _quad([0.0, 1.5, -distance], 1.0)
    with EmbeddedRenderer() as r:
        r.load_mesh(quad)
        view = r.render(camera.intrinsics_from_fov(16, 16, 60.0), LEVEL, 16, 16)
        return r.gl_renderer, float(view.depth[8, 8])


def test_renders_in_spawned_worker_while_parent_holds_a_context(renderer):
    renderer.load_mesh(trimesh.Scene(_room()))
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        gl_name, depth = pool.apply(_render_centre_depth_in_child, (2.5,))
    assert gl_name == renderer.gl_renderer
    assert depth == pytest.approx(2.5, abs=1e-5)
    assert renderer.render(camera.intrinsics_from_fov(16, 16, 60.0), LEVEL, 16, 16).depth[8, 8] == pytest.approx(4.0)


def test_scene_far_from_origin_keeps_millimetre_depth(renderer):
    offset = np.array([123_456.0, 10.0, -234_567.0])  # e.g. a georeferenced scan in metres
    K = camera.intrinsics_from_fov(24, 24, 60.0)
    pose = camera.apply_orientation_noise(LEVEL, 0.1, 0.05, 0.0)
    renderer.load_mesh(_room())
    near = renderer.render(K, pose, 24, 24)
    room = _room()
    room.apply_translation(offset)
    renderer.load_mesh(room)
    far_pose = pose.copy()
    far_pose[:3, 3] += offset
    far = renderer.render(K, far_pose, 24, 24)
    assert near.depth[6:18, 6:18].min() > 3.5  # looking at the far wall, about 4 m away
    assert np.abs(far.depth - near.depth).max() < 1e-3


def test_anisotropic_filtering_defaults_off_only_on_software_rasterisers(renderer):
    from rendering.backends.embedded import _default_anisotropy

    assert _default_anisotropy("llvmpipe (LLVM 15.0.6, 256 bits)") == 1.0
    assert _default_anisotropy("NVIDIA H100 80GB HBM3/PCIe/SSE2") == 16.0
    # A fine stripe texture on a floor seen at a grazing angle: anisotropic filtering changes it.
    stripes = np.zeros((64, 64, 3), dtype=np.uint8)
    stripes[:, ::2] = 255
    floor = _quad([0.0, 0.0, -10.0], 10.0, right=X, up=np.array([0.0, 0.0, -1.0]))
    floor = _textured(floor, PBRMaterial(baseColorTexture=Image.fromarray(stripes)))
    K = camera.intrinsics_from_fov(32, 32, 60.0)
    pose = camera.look_at(np.array([0.0, 0.3, 0.0]), np.array([0.0, 0.0, -8.0]))
    views = []
    for anisotropy in (1.0, 16.0):
        with EmbeddedRenderer(max_anisotropy=anisotropy) as r:
            r.load_mesh(floor)
            views.append(r.render(K, pose, 32, 32))
    assert views[0].depth.tobytes() == views[1].depth.tobytes()
    assert np.abs(views[0].rgb.astype(int) - views[1].rgb.astype(int)).max() > 20


def test_frustum_culling_of_large_meshes_changes_nothing_visible():
    # A vertex-coloured 48 x 48-quad floor and ceiling, in 256-triangle chunks.
    rng = np.random.default_rng(3)
    n = 48
    xs, zs = np.meshgrid(np.linspace(-6.0, 6.0, n + 1), np.linspace(-6.0, 6.0, n + 1))
    vertices = np.stack([xs.ravel(), np.zeros(xs.size), zs.ravel()], axis=1)
    corner = (np.arange(n)[:, None] * (n + 1) + np.arange(n)[None, :]).ravel()
    faces = np.concatenate([np.stack([corner, corner + 1, corner + n + 2], 1), np.stack([corner, corner + n + 2, corner + n + 1], 1)])
    floor = trimesh.Trimesh(vertices, faces, process=False)
    floor.visual.vertex_colors = rng.integers(0, 256, size=(len(vertices), 4), dtype=np.uint8)
    ceiling = floor.copy()
    ceiling.apply_translation([0.0, 3.0, 0.0])
    scene = trimesh.Scene([floor, ceiling])
    total = 2 * len(faces)
    K = camera.intrinsics_from_fov(40, 30, 60.0)
    poses = [
        camera.look_at(np.array([0.0, 1.5, 0.0]), np.array([5.0, 0.5, -5.0])),
        camera.look_at(np.array([-4.0, 2.0, 4.0]), np.array([-5.5, 0.0, 5.5])),
        camera.look_at(np.array([4.5, 1.0, 4.5]), np.array([5.8, 0.0, 5.8])),
        camera.apply_orientation_noise(camera.look_at(np.array([1.0, 1.0, 1.0]), np.array([0.0, 3.0, -2.0])), 0, 0, 0.7),
    ]
    drawn = []
    with EmbeddedRenderer(frustum_culling=False) as plain, EmbeddedRenderer(chunk_triangles=256) as culled:
        plain.load_mesh(scene)
        culled.load_mesh(scene)
        for pose in poses:
            expected = plain.render(K, pose, 40, 30)
            view = culled.render(K, pose, 40, 30)
            assert view.rgb.tobytes() == expected.rgb.tobytes()
            assert view.depth.tobytes() == expected.depth.tobytes()
            assert plain.drawn_triangles == total
            drawn.append(culled.drawn_triangles)
    assert all(0 < d < total / 2 for d in drawn)  # every view skips most chunks


def test_frustum_culled_ranges_draw_exactly_their_triangles():
    # A row of large quads, one colour each, in 2-triangle chunks: an off-by-one range would show.
    quads = []
    for i, x in enumerate(np.arange(-6.0, 6.5, 1.0)):
        quad = _quad([x, 1.5, -3.0], 0.45)
        quad.visual.face_colors = [[20 * i, 255 - 20 * i, 100, 255]] * 2
        quads.append(quad)
    row = trimesh.util.concatenate(quads)
    K = camera.intrinsics_from_fov(48, 16, 60.0)
    pose = camera.look_at(np.array([1.3, 1.5, 0.0]), np.array([2.5, 1.5, -3.0]))
    with EmbeddedRenderer(frustum_culling=False) as plain, EmbeddedRenderer(chunk_triangles=2) as culled:
        plain.load_mesh(row)
        culled.load_mesh(row)
        expected, view = plain.render(K, pose, 48, 16), culled.render(K, pose, 48, 16)
        assert 0 < culled.drawn_triangles < plain.drawn_triangles
    assert expected.valid_fraction > 0.3
    assert view.rgb.tobytes() == expected.rgb.tobytes()


def test_procedural_scene_renders_identically_from_its_exported_glb(renderer, tmp_path):
    from rendering.backend import SceneSpec
    from rendering.scenes import scene_glb_path

    spec = SceneSpec("p5", "procedural:5?rooms=1&objects=4&texture_size=32")
    navigable = renderer.load_scene(spec)
    rng = np.random.default_rng(0)
    K = camera.intrinsics_from_fov(48, 32, 60.0)
    poses = []
    for _ in range(3):
        eye = navigable.sample_point(rng) + np.array([0.0, 1.5, 0.0])
        poses.append(camera.pose_from_rotation_translation(camera.yaw_pitch_roll_rotation(rng.uniform(0, 6.28), 0.0, 0.0), eye))
    direct = [renderer.render(K, pose, 48, 32) for pose in poses]
    renderer.load_scene(SceneSpec("p5-glb", str(scene_glb_path(spec, tmp_path))))
    for pose, expected in zip(poses, direct):
        view = renderer.render(K, pose, 48, 32)
        assert expected.valid_fraction > 0.9 and len(np.unique(expected.rgb.reshape(-1, 3), axis=0)) > 20
        assert view.rgb.tobytes() == expected.rgb.tobytes()
        assert view.depth.tobytes() == expected.depth.tobytes()


def test_obj_with_mtl_texture_renders_its_texture(renderer, tmp_path):
    from rendering.scenes.mesh_files import load_mesh_file

    Image.fromarray(np.full((8, 8, 3), (40, 170, 210), dtype=np.uint8)).save(tmp_path / "paint.png")
    (tmp_path / "wall.mtl").write_text("newmtl paint\nmap_Kd paint.png\n")  # no Kd: trimesh fills in grey
    (tmp_path / "wall.obj").write_text(
        "mtllib wall.mtl\nv -1 0.5 -2\nv 1 0.5 -2\nv 1 2.5 -2\nv -1 2.5 -2\n"
        "vt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\nusemtl paint\nf 1/1 2/2 3/3\nf 1/1 3/3 4/4\n"
    )
    renderer.load_mesh(load_mesh_file(tmp_path / "wall.obj"))
    K = camera.intrinsics_from_fov(16, 16, 60.0)
    view = renderer.render(K, LEVEL, 16, 16)
    assert view.rgb[8, 8].tolist() == [40, 170, 210]
    assert view.depth[8, 8] == pytest.approx(2.0, abs=1e-5)


def test_z_up_glb_with_z_up_spec_renders_the_depth_of_its_y_up_twin(renderer, tmp_path):
    from rendering.backend import SceneSpec
    from rendering.scenes import export_glb_bytes
    from rendering.scenes.mesh_files import Z_UP_TO_Y_UP

    block = trimesh.creation.box(bounds=[[0.5, 0.0, -3.0], [2.0, 1.2, -2.0]])  # off-centre: orientation shows
    block.visual.vertex_colors = [200, 40, 40, 255]

    def scene() -> trimesh.Scene:
        return trimesh.Scene({"room": _room(), "block": block.copy()})

    z_scene = scene()
    z_scene.apply_transform(np.linalg.inv(Z_UP_TO_Y_UP))  # what a Matterport-style dataset ships
    (tmp_path / "y.glb").write_bytes(export_glb_bytes(scene()))
    (tmp_path / "z.glb").write_bytes(export_glb_bytes(z_scene))
    K = camera.intrinsics_from_fov(48, 32, 70.0)
    pose = camera.look_at(np.array([-1.0, 1.6, 2.0]), np.array([1.2, 0.6, -2.5]))
    renderer.load_scene(SceneSpec("y", str(tmp_path / "y.glb")))
    expected = renderer.render(K, pose, 48, 32)
    renderer.load_scene(SceneSpec("z", str(tmp_path / "z.glb"), up_axis="z"))
    view = renderer.render(K, pose, 48, 32)
    assert expected.valid_fraction == 1.0 and np.ptp(expected.depth) > 1.0
    np.testing.assert_allclose(view.depth, expected.depth, atol=1e-4)
    np.testing.assert_array_equal(view.rgb, expected.rgb)
    # The frame really comes from the spec: read as Y-up, the file is a room on its side, refused
    # naming the axis that looks up.
    with pytest.raises(SceneLoadError, match='set up = "z"'):
        renderer.load_scene(SceneSpec("z-as-y", str(tmp_path / "z.glb")))
