"""The default renderer backend: moderngl on a headless EGL context (Mesa llvmpipe or a GPU).

One GL context per process, created in the constructor. Create the renderer *inside* the worker
process that uses it and never fork a process that holds one (a forked GL context hangs): worker
pools must use the ``spawn`` start method.

What it draws, and why:

* Unlit, flat shading: colour = base colour factor x texture x vertex colour. Indoor scans and our
  procedural stages carry their lighting in their textures, and Habitat renders stages unlit too,
  so adding lighting here would make the two backends disagree.
* Colour space: texture bytes are uploaded and written out as they are (sRGB in, sRGB out); no
  linearisation, no tone mapping.
* Depth: the fragment shader writes view-space z (metres along the optical axis) to an R32F colour
  attachment in the same pass as the RGBA8 colour; a depth renderbuffer only resolves visibility.
  Nothing is multisampled, so every depth value is the surface hit by the ray through the pixel
  centre. Pixels where nothing was hit hold 0.
* Back faces are drawn (no culling): rooms are often single-sided and seen from inside.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import moderngl
import numpy as np
import trimesh
from PIL import Image

from rendering.backend import NavigableSpace, RenderedView, SceneLoadError, SceneSpec
from rendering import camera
from rendering.camera import check_pose

_VERTEX_SHADER = """
#version 330
uniform mat4 u_world_to_clip;
uniform vec4 u_world_to_cam_z;  // third row of the world -> OpenCV camera transform
in vec3 in_position;
in vec2 in_uv;
in vec4 in_color;
out vec2 v_uv;
out vec4 v_color;
out float v_z;
void main() {
    vec4 p = vec4(in_position, 1.0);
    v_uv = in_uv;
    v_color = in_color;
    v_z = dot(u_world_to_cam_z, p);
    gl_Position = u_world_to_clip * p;
}
"""

# Two variants: only alpha-masked materials get the discard, because a shader that may discard
# turns off early depth testing (a large cost on software rasterisers with overdraw).
_FRAGMENT_SHADER = """
#version 330
uniform sampler2D u_texture;
uniform bool u_has_texture;
uniform vec4 u_base_color;
uniform float u_alpha_cutoff;
in vec2 v_uv;
in vec4 v_color;
in float v_z;
layout(location = 0) out vec4 f_color;
layout(location = 1) out float f_z;
void main() {
    vec4 color = u_base_color * v_color;
    if (u_has_texture) {
        color *= texture(u_texture, v_uv);
    }
#ifdef ALPHA_MASK
    if (color.a < u_alpha_cutoff) {
        discard;
    }
#endif
    f_color = vec4(color.rgb, 1.0);
    f_z = v_z;
}
"""


def _fragment_shader(alpha_mask: bool) -> str:
    version, rest = _FRAGMENT_SHADER.lstrip("\n").split("\n", 1)  # #define must follow #version
    return f"{version}\n#define ALPHA_MASK\n{rest}" if alpha_mask else f"{version}\n{rest}"


_MAX_CACHED_FRAMEBUFFERS = 4


def check_intrinsics(K: np.ndarray) -> np.ndarray:
    """``K`` checked by rendering.camera.check_intrinsics; skew is allowed (projected exactly)."""
    return camera.check_intrinsics(K, "K", allow_skew=True)


def opencv_projection(K: np.ndarray, width: int, height: int, near: float, far: float) -> np.ndarray:
    """4x4 matrix from OpenCV camera coordinates to GL clip coordinates, exact for ``K``.

    Continuous pixel coordinates (u, v) = K (x/z, y/z) are mapped to normalised device coordinates
    by ``2u/W - 1`` and ``2v/H - 1``; the viewport maps those back to window coordinates u and v, and
    GL samples fragments at window coordinates ``integer + 0.5``: exactly the pixel centres of
    rendering.camera. Image row v therefore lands on window row v, and since glReadPixels returns
    window row 0 first, the read-back array is already top row first: no flip anywhere. (The image
    is upside down by GL's bottom-left convention, which mirrors triangle winding; culling is off.)
    Clip w is the camera z, and z in [near, far] maps to NDC depth [-1, 1].
    """
    fx, skew, cx = K[0]
    fy, cy = K[1, 1], K[1, 2]
    proj = np.zeros((4, 4), dtype=np.float64)
    proj[0] = [2.0 * fx / width, 2.0 * skew / width, 2.0 * cx / width - 1.0, 0.0]
    proj[1] = [0.0, 2.0 * fy / height, 2.0 * cy / height - 1.0, 0.0]
    proj[2] = [0.0, 0.0, (far + near) / (far - near), -2.0 * far * near / (far - near)]
    proj[3] = [0.0, 0.0, 1.0, 0.0]
    return proj


@dataclass
class _Primitive:
    """One drawable: its buffers, vertex array and material uniforms."""

    vao: moderngl.VertexArray
    buffers: list[moderngl.Buffer]
    texture: moderngl.Texture | None
    base_color: tuple[float, float, float, float]
    alpha_cutoff: float  # < 0: opaque, drawn with the program that never discards
    triangles: int
    centre: np.ndarray  # bounding-box centre in the stored frame, for front-to-back ordering
    chunk_first: np.ndarray  # (C,) first index (in index-buffer elements) of each chunk
    chunk_count: np.ndarray  # (C,) number of indices of each chunk
    chunk_lo: np.ndarray  # (C, 3) chunk bounding boxes in the stored frame
    chunk_hi: np.ndarray


@dataclass(frozen=True)
class _ChunkTable:
    """Every primitive's chunk boxes in one array, so that one vectorised test culls the whole scene
    (a per-primitive test costs ~0.15 ms of numpy overhead each, more than drawing a small room)."""

    lo: np.ndarray  # (C, 3) chunk bounding boxes in the stored frame, all primitives in order
    hi: np.ndarray
    offsets: np.ndarray  # (P + 1,): primitive p owns chunks offsets[p]:offsets[p + 1]
    centres: np.ndarray  # (P, 3) primitive bounding-box centres
    masked: np.ndarray  # (P,) True for alpha-masked primitives (drawn after the opaque ones)

    @classmethod
    def of(cls, primitives: list[_Primitive]) -> _ChunkTable:
        counts = [len(p.chunk_first) for p in primitives]
        return cls(
            lo=np.concatenate([p.chunk_lo for p in primitives]),
            hi=np.concatenate([p.chunk_hi for p in primitives]),
            offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            centres=np.stack([p.centre for p in primitives]),
            masked=np.array([p.alpha_cutoff >= 0.0 for p in primitives]),
        )


@dataclass
class _Targets:
    color: moderngl.Renderbuffer
    z: moderngl.Renderbuffer
    depth: moderngl.Renderbuffer
    fbo: moderngl.Framebuffer

    def release(self) -> None:
        for obj in (self.fbo, self.color, self.z, self.depth):
            obj.release()


class EmbeddedRenderer:
    """moderngl renderer fulfilling :class:`rendering.backend.Renderer`.

    ``max_anisotropy`` caps anisotropic texture filtering; ``None`` picks 16 on GPUs and 1 (off,
    trilinear mip-mapping only) on software rasterisers, where any anisotropy costs about 4x the
    frame rate (llvmpipe: ~90 vs ~380 frames/s at 256 px on a textured room).

    ``frustum_culling``: meshes are split into spatially coherent chunks of ``chunk_triangles``
    triangles, and chunks whose bounding box is outside the view are not drawn (vertex work
    dominates on llvmpipe for large scans); the image is the same either way.

    ``device_index`` picks an EGL device (``eglQueryDevicesEXT`` order, as glcontext enumerates
    them; the environment variable ``GLCONTEXT_DEVICE_INDEX`` overrides it); ``None`` takes the
    first one, which is Mesa's llvmpipe on a CPU-only machine and usually GPU 0 on a GPU host.
    """

    name = "embedded"

    def __init__(
        self,
        device_index: int | None = None,
        near: float = 0.05,
        far: float = 100.0,
        max_anisotropy: float | None = None,
        cache_dir: str | Path | None = None,
        frustum_culling: bool = True,
        chunk_triangles: int = 4096,
    ) -> None:
        if not (np.isfinite(near) and np.isfinite(far) and 0.0 < near < far):
            raise ValueError(f"near/far planes must satisfy 0 < near < far, got near={near}, far={far}")
        if device_index is not None and (not isinstance(device_index, int) or device_index < 0):
            raise ValueError(f"device_index must be a non-negative int or None, got {device_index!r}")
        self.near = float(near)
        self.far = float(far)
        self.cache_dir = cache_dir
        self.frustum_culling = frustum_culling
        if chunk_triangles < 1:
            raise ValueError(f"chunk_triangles must be >= 1, got {chunk_triangles}")
        self.chunk_triangles = int(chunk_triangles)
        self.drawn_triangles = 0  # triangles submitted by the last render (after frustum culling)
        kwargs = {} if device_index is None else {"device_index": device_index}
        try:
            self._ctx = moderngl.create_standalone_context(backend="egl", **kwargs)
        except Exception as err:  # glcontext raises bare Exceptions
            env_index = os.environ.get("GLCONTEXT_DEVICE_INDEX")
            chosen = f"device_index={device_index}" + (f", GLCONTEXT_DEVICE_INDEX={env_index}" if env_index else "")
            raise RuntimeError(
                f"could not create a headless EGL OpenGL context ({chosen}): {err}. "
                "If libEGL or Mesa's driver is missing: apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri"
            ) from err
        # A new context is current on creation; later calls make it current again (``with self._ctx``).
        self._programs = {
            masked: self._ctx.program(vertex_shader=_VERTEX_SHADER, fragment_shader=_fragment_shader(masked))
            for masked in (False, True)
        }
        self._gl_renderer = str(self._ctx.info["GL_RENDERER"])
        if max_anisotropy is None:  # see _default_anisotropy
            max_anisotropy = _default_anisotropy(self.gl_renderer)
        self._anisotropy = float(max(1.0, min(max_anisotropy, self._ctx.max_anisotropy)))
        self._max_texture_size = int(self._ctx.info["GL_MAX_TEXTURE_SIZE"])
        self._max_target_size = int(self._ctx.info["GL_MAX_RENDERBUFFER_SIZE"])
        self._primitives: list[_Primitive] = []
        self._chunks: _ChunkTable | None = None
        self._uniforms = {masked: _ProgramUniforms.of(program) for masked, program in self._programs.items()}
        self._textures: list[moderngl.Texture] = []
        self._targets: dict[tuple[int, int], _Targets] = {}
        self._scene_id: str | None = None
        self._origin = np.zeros(3)
        self._closed = False

    # ------------------------------------------------------------------ lifecycle
    @property
    def gl_renderer(self) -> str:
        """The GL implementation in use (e.g. 'llvmpipe ...' or a GPU name)."""
        return self._gl_renderer

    def resource_counts(self) -> dict[str, int]:
        """How many GL objects the renderer holds (to check that scenes free what they used)."""
        return {
            "primitives": len(self._primitives),
            "triangles": sum(p.triangles for p in self._primitives),
            "buffers": sum(len(p.buffers) for p in self._primitives),
            "textures": len(self._textures),
            "framebuffers": len(self._targets),
        }

    def close(self) -> None:
        if self._closed:
            return
        with self._ctx:  # release our objects in our context, whichever context is current now
            self._release_scene()
            for targets in self._targets.values():
                targets.release()
            self._targets.clear()
            for program in self._programs.values():
                program.release()
        self._ctx.release()
        self._closed = True

    def __enter__(self) -> EmbeddedRenderer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("EmbeddedRenderer is closed")

    # ------------------------------------------------------------------ scenes
    def load_scene(self, scene: SceneSpec) -> NavigableSpace:
        """Load ``scene`` through rendering.scenes (mesh + navigable floor, in the +Y-up world its
        ``up_axis`` states) and make it current."""
        self._check_open()
        from rendering.scenes import load_scene  # the scenes package is heavy; load it on first use

        loaded = load_scene(scene, cache_dir=self.cache_dir)
        self.load_mesh(loaded.mesh, scene_id=scene.scene_id)
        return loaded.navigable

    def load_mesh(self, mesh: trimesh.Scene | trimesh.Trimesh, scene_id: str = "<mesh>") -> None:
        """Upload every triangle geometry of ``mesh`` (world transforms applied), replacing the
        previous scene's GPU resources."""
        self._check_open()
        if isinstance(mesh, trimesh.Trimesh):
            mesh = trimesh.Scene(mesh)
        if not isinstance(mesh, trimesh.Scene):
            raise SceneLoadError(f"scene {scene_id!r}: expected a trimesh.Scene, got {type(mesh).__name__}")
        # Vertices are stored relative to the scene's bounding-box centre so that float32 keeps
        # sub-millimetre precision for meshes far from the origin (georeferenced scans).
        bounds = mesh.bounds
        origin = np.zeros(3) if bounds is None else np.nan_to_num(np.asarray(bounds, dtype=np.float64).mean(axis=0))
        with self._ctx:
            self._release_scene()
            textures: dict[int, moderngl.Texture] = {}
            try:
                for node in mesh.graph.nodes_geometry:
                    transform, geometry_name = mesh.graph[node]
                    geometry = mesh.geometry[geometry_name]
                    if not isinstance(geometry, trimesh.Trimesh) or len(geometry.faces) == 0:
                        continue  # points and paths have no surface to render
                    transform = np.asarray(transform, dtype=np.float64)
                    label = f"scene {scene_id!r}, geometry {geometry_name!r}"
                    self._primitives.append(self._upload(geometry, _translation(-origin) @ transform, textures, label))
            except Exception:
                self._release_scene()
                raise
        if not self._primitives:
            raise SceneLoadError(f"scene {scene_id!r}: no triangle geometry to render")
        self._chunks = _ChunkTable.of(self._primitives)
        self._scene_id = scene_id
        self._origin = origin

    def _release_scene(self) -> None:
        for primitive in self._primitives:
            primitive.vao.release()
            for buffer in primitive.buffers:
                buffer.release()
        for texture in self._textures:
            texture.release()
        self._primitives.clear()
        self._chunks = None
        self._textures.clear()
        self._scene_id = None

    def _upload(
        self, geometry: trimesh.Trimesh, transform: np.ndarray, textures: dict[int, moderngl.Texture], label: str
    ) -> _Primitive:
        vertices = np.asarray(geometry.vertices, dtype=np.float64)
        faces = np.asarray(geometry.faces, dtype=np.int64)
        visual = geometry.visual
        n = len(vertices)
        uv = np.zeros((n, 2), dtype=np.float32)
        colors = np.full((n, 4), 255, dtype=np.uint8)
        base_color = (1.0, 1.0, 1.0, 1.0)
        texture = None
        alpha_cutoff = -1.0

        if isinstance(visual, trimesh.visual.TextureVisuals):
            material = visual.material
            image, factor = _material_image_and_factor(material)
            base_color = tuple(float(c) for c in factor)
            if getattr(material, "alphaMode", None) == "MASK":
                cutoff = getattr(material, "alphaCutoff", None)
                alpha_cutoff = 0.5 if cutoff is None else float(cutoff)
            if image is not None and visual.uv is not None and len(visual.uv) == n:
                # trimesh's uv origin is the image's bottom-left; the texture's first row is its top.
                uv[:, 0] = visual.uv[:, 0]
                uv[:, 1] = 1.0 - np.asarray(visual.uv[:, 1])
                key = id(image)
                if key not in textures:
                    textures[key] = self._upload_texture(image)
                texture = textures[key]
            vertex_colors = visual.vertex_attributes.get("color") if hasattr(visual, "vertex_attributes") else None
            if vertex_colors is not None and len(vertex_colors) == n:
                colors = _rgba_uint8(vertex_colors)
        elif isinstance(visual, trimesh.visual.ColorVisuals):
            if visual.kind == "face":  # one colour per face: give each face its own three vertices
                face_colors = _rgba_uint8(visual.face_colors)
                vertices = vertices[faces].reshape(-1, 3)
                colors = np.repeat(face_colors, 3, axis=0)
                uv = np.zeros((len(vertices), 2), dtype=np.float32)
                faces = np.arange(len(vertices)).reshape(-1, 3)
            else:
                colors = _rgba_uint8(visual.vertex_colors)

        world = vertices @ transform[:3, :3].T + transform[:3, 3]
        if not np.all(np.isfinite(world)):
            raise SceneLoadError(f"{label}: NaN or infinite vertex coordinates")
        if len(faces) > self.chunk_triangles:
            faces = faces[_spatial_order(world[faces].mean(axis=1))]
        starts = np.arange(0, len(faces), self.chunk_triangles)
        corners = world[faces]  # (F, 3, 3)
        chunk_lo = np.minimum.reduceat(corners.min(axis=1), starts, axis=0)
        chunk_hi = np.maximum.reduceat(corners.max(axis=1), starts, axis=0)
        chunk_count = np.diff(np.append(starts, len(faces))) * 3
        ctx = self._ctx
        buffers = [
            ctx.buffer(np.ascontiguousarray(world, dtype="f4").tobytes()),
            ctx.buffer(np.ascontiguousarray(uv, dtype="f4").tobytes()),
            ctx.buffer(np.ascontiguousarray(colors, dtype="u1").tobytes()),
            ctx.buffer(np.ascontiguousarray(faces, dtype="u4").tobytes()),
        ]
        vao = ctx.vertex_array(
            self._programs[alpha_cutoff >= 0.0],
            [(buffers[0], "3f", "in_position"), (buffers[1], "2f", "in_uv"), (buffers[2], "4f1", "in_color")],
            index_buffer=buffers[3],
            index_element_size=4,
        )
        centre = (chunk_lo.min(axis=0) + chunk_hi.max(axis=0)) / 2.0
        return _Primitive(
            vao, buffers, texture, base_color, alpha_cutoff, len(faces), centre,
            starts * 3, chunk_count, chunk_lo, chunk_hi,
        )

    def _upload_texture(self, image: Image.Image | np.ndarray) -> moderngl.Texture:
        if isinstance(image, np.ndarray):
            image = Image.fromarray(_image_array_uint8(image))
        image = image.convert("RGBA")
        largest = max(image.size)
        if largest > self._max_texture_size:
            scale = self._max_texture_size / largest
            image = image.resize((max(1, int(image.width * scale)), max(1, int(image.height * scale))), Image.BILINEAR)
        texture = self._ctx.texture(image.size, 4, image.tobytes())
        texture.build_mipmaps()
        texture.filter = (moderngl.LINEAR_MIPMAP_LINEAR, moderngl.LINEAR)
        texture.anisotropy = self._anisotropy
        texture.repeat_x = texture.repeat_y = True
        self._textures.append(texture)
        return texture

    # ------------------------------------------------------------------ rendering
    def render(self, K: np.ndarray, cam2world: np.ndarray, width: int, height: int) -> RenderedView:
        """RGB uint8 (H, W, 3) and z-depth float32 (H, W) in metres (0 = no surface)."""
        self._check_open()
        if not self._primitives:
            raise RuntimeError("no scene loaded: call load_scene() or load_mesh() before render()")
        K = check_intrinsics(K)
        pose = check_pose(cam2world)
        for what, size in (("width", width), ("height", height)):
            if not isinstance(size, (int, np.integer)) or not 0 < size <= self._max_target_size:
                raise ValueError(f"{what} must be an int in [1, {self._max_target_size}], got {size!r}")
        width, height = int(width), int(height)

        world_to_cam = np.linalg.inv(pose) @ _translation(self._origin)  # from the stored frame
        world_to_clip = opencv_projection(K, width, height, self.near, self.far) @ world_to_cam
        with self._ctx:  # make our context current: other renderers may live in this process
            return self._draw(world_to_clip, world_to_cam, width, height)

    def _draw(self, world_to_clip: np.ndarray, world_to_cam: np.ndarray, width: int, height: int) -> RenderedView:
        targets = self._framebuffer(width, height)
        ctx = self._ctx
        targets.fbo.use()
        targets.fbo.viewport = (0, 0, width, height)
        targets.fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        ctx.enable_only(moderngl.DEPTH_TEST)
        ctx.depth_func = "<"
        # moderngl expects column-major matrix data; .T.tobytes() of a row-major matrix is that.
        clip_bytes = world_to_clip.T.astype("f4").tobytes()
        cam_z_bytes = world_to_cam[2].astype("f4").tobytes()
        for uniforms in self._uniforms.values():
            uniforms.world_to_clip.write(clip_bytes)
            uniforms.world_to_cam_z.write(cam_z_bytes)
            uniforms.texture.value = 0
        chunks = self._chunks
        visible = _visible_chunks(_frustum_planes(world_to_clip), chunks.lo, chunks.hi) if self.frustum_culling else None
        self.drawn_triangles = 0
        for index in _draw_order(chunks, world_to_cam):
            primitive = self._primitives[index]
            if visible is None:
                runs = [(0, primitive.triangles * 3)]
            else:
                runs = _chunk_runs(visible[chunks.offsets[index]:chunks.offsets[index + 1]], primitive)
                if not runs:
                    continue
            masked = primitive.alpha_cutoff >= 0.0
            uniforms = self._uniforms[masked]
            uniforms.base_color.value = primitive.base_color
            if masked:
                uniforms.alpha_cutoff.value = primitive.alpha_cutoff
            uniforms.has_texture.value = primitive.texture is not None
            if primitive.texture is not None:
                primitive.texture.use(0)
            for first, count in runs:
                primitive.vao.render(moderngl.TRIANGLES, vertices=count, first=first)
                self.drawn_triangles += count // 3

        # Read straight into the arrays we return: RGB without the alpha byte, z as float32.
        rgb = np.empty((height, width, 3), dtype=np.uint8)
        depth = np.empty((height, width), dtype=np.float32)
        targets.fbo.read_into(rgb, components=3, attachment=0, alignment=1)
        targets.fbo.read_into(depth, components=1, attachment=1, alignment=1, dtype="f4")
        return RenderedView(rgb=rgb, depth=depth)

    def _framebuffer(self, width: int, height: int) -> _Targets:
        key = (width, height)
        targets = self._targets.get(key)
        if targets is None:
            if len(self._targets) >= _MAX_CACHED_FRAMEBUFFERS:
                oldest = next(iter(self._targets))
                self._targets.pop(oldest).release()
            ctx = self._ctx
            color = ctx.renderbuffer(key, components=4)
            z = ctx.renderbuffer(key, components=1, dtype="f4")
            depth = ctx.depth_renderbuffer(key)
            targets = _Targets(color, z, depth, ctx.framebuffer(color_attachments=[color, z], depth_attachment=depth))
            self._targets[key] = targets
        return targets


def _material_image_and_factor(material: object) -> tuple[Image.Image | None, np.ndarray]:
    """Base colour texture and RGBA factor (floats in [0, 1]) of a trimesh material.

    glTF (PBRMaterial): factor x texture, as the glTF spec defines the base colour. OBJ-style
    SimpleMaterial: the image alone when there is one (its ``diffuse`` is a lighting coefficient,
    and trimesh fills in grey when an MTL file has none), else the diffuse colour.
    """
    if isinstance(material, trimesh.visual.material.PBRMaterial):
        factor = material.baseColorFactor
        factor = np.ones(4) if factor is None else _rgba_float(factor)
        return material.baseColorTexture, factor
    if isinstance(material, trimesh.visual.material.SimpleMaterial):
        if material.image is not None:
            return material.image, np.ones(4)
        return None, _rgba_float(material.diffuse)
    return None, np.ones(4)


_SOFTWARE_RASTERISERS = ("llvmpipe", "softpipe", "swrast", "swiftshader")


def _default_anisotropy(gl_renderer: str) -> float:
    name = gl_renderer.lower()
    return 1.0 if any(software in name for software in _SOFTWARE_RASTERISERS) else 16.0


def _spatial_order(points: np.ndarray) -> np.ndarray:
    """Order of ``points`` along a Morton (Z-order) curve, so that index ranges are compact in space."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    q = ((points - lo) / np.maximum(hi - lo, 1e-12) * 1023.0).astype(np.uint64)

    def spread(x: np.ndarray) -> np.ndarray:  # put two zero bits between the 10 bits of x
        x = (x | (x << np.uint64(16))) & np.uint64(0x030000FF)
        x = (x | (x << np.uint64(8))) & np.uint64(0x0300F00F)
        x = (x | (x << np.uint64(4))) & np.uint64(0x030C30C3)
        return (x | (x << np.uint64(2))) & np.uint64(0x09249249)

    code = spread(q[:, 0]) | (spread(q[:, 1]) << np.uint64(1)) | (spread(q[:, 2]) << np.uint64(2))
    return np.argsort(code, kind="stable")


def _frustum_planes(world_to_clip: np.ndarray) -> np.ndarray:
    """(6, 4) planes (a, b, c, d), inside where a x + b y + c z + d >= 0 (Gribb & Hartmann)."""
    m = world_to_clip
    return np.stack([m[3] + m[0], m[3] - m[0], m[3] + m[1], m[3] - m[1], m[3] + m[2], m[3] - m[2]])


@dataclass(frozen=True)
class _ProgramUniforms:
    """A program's uniforms, looked up once (moderngl's name lookup costs more than the write)."""

    world_to_clip: moderngl.Uniform
    world_to_cam_z: moderngl.Uniform
    texture: moderngl.Uniform
    base_color: moderngl.Uniform
    has_texture: moderngl.Uniform
    alpha_cutoff: moderngl.Uniform | None  # only the alpha-masked program has it

    @classmethod
    def of(cls, program: moderngl.Program) -> _ProgramUniforms:
        return cls(
            program["u_world_to_clip"], program["u_world_to_cam_z"], program["u_texture"],
            program["u_base_color"], program["u_has_texture"], program.get("u_alpha_cutoff", None),
        )


def _draw_order(chunks: _ChunkTable, world_to_cam: np.ndarray) -> np.ndarray:
    """Primitive indices, opaque ones nearest first (early depth rejection saves shading), masked
    ones last, ties in index order. The order only affects speed, except between coplanar surfaces
    of different primitives, where the first one drawn wins: it is therefore kept exactly stable."""
    eye = -world_to_cam[:3, :3].T @ world_to_cam[:3, 3]  # camera centre in the stored frame
    distance = np.sum((chunks.centres - eye) ** 2, axis=1)
    return np.lexsort((distance, chunks.masked))


def _visible_chunks(planes: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(C,) True for the chunk boxes that may be in view (conservative: never culls a visible one)."""
    visible = np.ones(len(lo), dtype=bool)
    for a, b, c, d in planes:
        # The box corner furthest along the plane's normal; the box is out if that one is.
        x = hi[:, 0] if a >= 0 else lo[:, 0]
        y = hi[:, 1] if b >= 0 else lo[:, 1]
        z = hi[:, 2] if c >= 0 else lo[:, 2]
        margin = 1e-4 * math.sqrt(a * a + b * b + c * c)  # boxes grown by 0.1 mm: never cull a touching chunk
        visible &= a * x + b * y + c * z + (d + margin) >= 0
    return visible


def _chunk_runs(visible: np.ndarray, primitive: _Primitive) -> list[tuple[int, int]]:
    """(first index, index count) ranges of a primitive's visible chunks, adjacent ones merged."""
    if len(visible) == 1:
        return [(0, primitive.triangles * 3)] if visible[0] else []
    index = np.flatnonzero(visible)
    if len(index) == 0:
        return []
    runs = []
    breaks = np.flatnonzero(np.diff(index) > 1)
    for start, stop in zip(np.append(index[0], index[breaks + 1]), np.append(index[breaks], index[-1])):
        first = int(primitive.chunk_first[start])
        count = int(primitive.chunk_first[stop] + primitive.chunk_count[stop]) - first
        runs.append((first, count))
    return runs


def _translation(offset: np.ndarray) -> np.ndarray:
    matrix = np.eye(4)
    matrix[:3, 3] = offset
    return matrix


def _rgba_float(color: np.ndarray) -> np.ndarray:
    """trimesh stores colours as uint8 (0-255) but accepts floats in [0, 1]; normalise to floats."""
    c = np.asarray(color).reshape(-1)
    values = c.astype(np.float64) / 255.0 if c.dtype.kind in "ui" or c.max(initial=0) > 1.0 else c.astype(np.float64)
    if len(values) == 3:
        values = np.append(values, 1.0)
    return np.clip(values[:4], 0.0, 1.0)


def _rgba_uint8(colors: np.ndarray) -> np.ndarray:
    c = np.asarray(colors)
    if c.dtype.kind == "f" and c.size and c.max() <= 1.0:
        c = np.round(c * 255.0)
    c = np.clip(c, 0, 255).astype(np.uint8)
    if c.shape[1] == 3:
        c = np.concatenate([c, np.full((len(c), 1), 255, np.uint8)], axis=1)
    return c[:, :4]


def _image_array_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype.kind == "f":
        return np.clip(np.round(array * 255.0), 0, 255).astype(np.uint8)
    return np.clip(array, 0, 255).astype(np.uint8)
