"""Base classes of the measurement physics.

A forward model maps an image batch ``x`` of shape (B, C, H, W) to a measurement
``y`` of shape (B, *measurement_shape()) (whatever ``forward`` returns) and scores how well ``x`` explains ``y``:

    log p(y | x) = -||A x - y||^2 / (2 v) + const,    v = noise_std^2 (real y), noise_std^2 / 2 (complex y)

v is the noise variance per real coordinate (complex noise has E|n|^2 = noise_std^2, split evenly
between real and imaginary parts); ``v = 1`` when ``noise_std == 0``: the likelihood is then the plain
data residual, which keeps gradients finite for noiseless problems.

Linear models add the adjoint ``A^T`` and may expose the decomposition
``A = P(Lambda) T`` used by the projection solver of Song et al. (ICLR 2022):
``T`` an invertible "full measurement", ``Lambda`` a 0/1 mask, ``P`` the
restriction to the observed entries.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = ["ForwardModel", "LinearForwardModel", "append_dims", "batched_cg", "real_dot"]


def append_dims(v: torch.Tensor, ndim: int) -> torch.Tensor:
    """Append trailing singleton dims to a per-sample tensor ``v`` (B,) -> (B, 1, ..., 1)."""
    return v.reshape(v.shape + (1,) * (ndim - v.ndim))


def real_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample Re<a, b> (B,): the inner product the adjoints of real-image operators are taken in."""
    return (a.conj() * b).real.flatten(1).sum(1) if a.is_complex() else (a * b).flatten(1).sum(1)


def batched_cg(apply, b: torch.Tensor, x0: torch.Tensor | None = None, n_iter: int = 20,
               rtol: float = 0.0) -> torch.Tensor:
    """Conjugate gradients on apply(x) = b for each sample of a batch; apply is self-adjoint and
    positive semi-definite in Re<.,.>. From x0 (default 0); a sample stops updating once its
    residual is at most rtol * its initial residual (rtol = 0: only when it is exactly 0)."""
    x = torch.zeros_like(b) if x0 is None else x0
    r = b if x0 is None else b - apply(x0)
    p, rs = r, real_dot(r, r)
    stop = rs * rtol ** 2
    for _ in range(int(n_iter)):
        active = rs > stop
        if not bool(active.any()):
            break
        ap = apply(p)
        pap = real_dot(p, ap)
        alpha = torch.where(active & (pap > 0), rs / pap.clamp_min(1e-30), torch.zeros_like(rs))
        x = x + append_dims(alpha, x.ndim) * p
        r = r - append_dims(alpha, x.ndim) * ap
        rs_new = real_dot(r, r)
        beta = torch.where(active, rs_new / rs.clamp_min(1e-30), torch.zeros_like(rs))
        p, rs = r + append_dims(beta, x.ndim) * p, torch.where(active, rs_new, rs)
    return x


def _as_tensor(y) -> torch.Tensor:
    if isinstance(y, np.ndarray):
        try:
            return torch.from_numpy(np.ascontiguousarray(y))
        except TypeError as err:  # object, string, unsigned 64-bit ... arrays
            raise ValueError(f"measurement has NumPy dtype {y.dtype}; expected a real or complex "
                             f"floating-point (or integer) array") from err
    if not isinstance(y, torch.Tensor):
        raise ValueError(f"measurement must be a torch.Tensor or numpy array, got {type(y).__name__}")
    return y


class ForwardModel(nn.Module):
    """A measurement process ``y = A(x) + noise_std * n``.

    Subclasses implement ``forward``; the measurement's shape and dtype follow from it (one pass on
    zeros of ``image_shape``, cached), so nothing else is declared. ``_measurement_shape(image_shape)``
    and ``measurement_dtype`` may still be overridden where forward cannot run on zeros.
    ``image_shape`` (C, H, W) and ``noise_std`` are plain attributes, so a subclass may also set them
    after ``super().__init__()``.
    """

    time_dependent: bool = False  # True: log_likelihood(x_t, y, t) is log p_t(y | x_t) itself

    def __init__(self, image_shape=None, noise_std: float = 0.0):
        super().__init__()
        self.image_shape = None if image_shape is None else tuple(int(s) for s in image_shape)
        if noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std}")
        self.noise_std = float(noise_std)

    # ----- shapes -------------------------------------------------------------------
    def measurement_shape(self, image_shape=None) -> tuple:
        """Shape of y without the batch dim, for images of ``image_shape`` (default: own)."""
        image_shape = self.image_shape if image_shape is None else tuple(image_shape)
        if image_shape is None:
            raise ValueError(f"{type(self).__name__} has no image_shape; pass image_shape=(C, H, W)")
        return tuple(self._measurement_shape(tuple(int(s) for s in image_shape)))

    def _measurement_shape(self, image_shape) -> tuple:
        """What ``forward`` returns for one image of ``image_shape`` (a subclass may override it)."""
        return self._probe(image_shape)[0]

    @property
    def measurement_dtype(self) -> torch.dtype:
        """dtype of y for float32 images: what ``forward`` returns (float32 when there is no image_shape)."""
        return torch.float32 if self.image_shape is None else self._probe(self.image_shape)[1]

    def _probe(self, image_shape) -> tuple:
        """(shape, dtype) of forward(zeros(1, *image_shape)), float32 zeros on the model's device; cached
        per image shape, so a user's operator needs no declaration of its measurement."""
        image_shape = tuple(int(s) for s in image_shape)
        cache = self.__dict__.setdefault("_probe_cache", {})
        if image_shape not in cache:
            cache[image_shape] = self._run_probe(image_shape)
        return cache[image_shape]

    def _run_probe(self, image_shape) -> tuple:
        name = type(self).__name__
        tensors = [*self.parameters(), *self.buffers()]
        device = tensors[0].device if tensors else torch.device("cpu")
        floats = [p.dtype for p in tensors if p.is_floating_point()]
        tried = []
        # float32 images first (the convention); a model whose weights are all of another dtype and that
        # does not cast them to the input's is probed in its own precision
        for dtype in dict.fromkeys([torch.float32, *floats[:1]]):
            x = torch.zeros((1, *image_shape), device=device, dtype=dtype)
            try:
                with torch.no_grad():
                    y = self(x)
            except Exception as err:  # noqa: BLE001 -- reported as one line below
                tried.append(f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
                continue
            if not isinstance(y, torch.Tensor) or y.ndim < 1 or y.shape[0] != 1:
                raise ValueError(f"{name}.forward must return a tensor (B, ...) with the batch dim of its input; "
                                 f"for an image (1, {', '.join(map(str, image_shape))}) it returned "
                                 f"{tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__}")
            return tuple(y.shape[1:]), y.dtype
        raise ValueError(f"{name}: cannot infer the measurement shape: forward() on zeros of shape "
                         f"(1, {', '.join(map(str, image_shape))}) raised {tried[-1]}")

    def _check_image(self, x: torch.Tensor) -> None:
        """Raise when ``x`` is not (B, *image_shape); forward() never broadcasts images."""
        expected = self.image_shape
        if x.ndim != 4 or (expected is not None and tuple(x.shape[1:]) != expected):
            want = "(B, C, H, W)" if expected is None else f"(B, {', '.join(map(str, expected))})"
            raise ValueError(f"{type(self).__name__}: image has shape {tuple(x.shape)}; expected {want}")

    # ----- likelihood -----------------------------------------------------------------
    @property
    def noise_variance(self) -> float:
        """Variance of the measurement noise per real coordinate of y: noise_std^2, or noise_std^2 / 2
        for complex y (E|n|^2 = noise_std^2 splits evenly between real and imaginary parts); 0 if noiseless."""
        return self.noise_std ** 2 / (2.0 if self.measurement_dtype.is_complex else 1.0)

    def log_likelihood(self, x: torch.Tensor, y: torch.Tensor, t=None) -> torch.Tensor:
        """log p(y | x) = -||A x - y||^2 / (2 v), v = noise_variance (1 if noiseless), summed over
        non-batch dims -> (B,). For complex y this is the circular complex Gaussian -||r||^2 / noise_std^2.

        ``t`` is ignored (the likelihood of a physical measurement is time-independent).
        """
        r = self(x) - y
        sq = (r.abs() ** 2 if r.is_complex() else r * r).flatten(1).sum(1)
        return -sq / (2.0 * (self.noise_variance if self.noise_std > 0 else 1.0))

    @property
    def measurement_support(self):
        """0/1 tensor broadcastable to y marking entries that are measured, or None if all are.

        Models whose y keeps the image / k-space layout with zeros where nothing was observed
        (inpainting, MRI) return their mask, so simulated noise only lands on measured entries.
        """
        return None

    def simulate(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """y = A x + noise_std * n; n ~ N(0, I), complex with E|n|^2 = 1 for complex y."""
        y = self(x)
        if self.noise_std == 0:
            return y
        real = y.real if y.is_complex() else y
        dev = generator.device if generator is not None else y.device

        def draw():  # drawn on the generator's device so a seed gives the same noise anywhere
            return torch.randn(real.shape, generator=generator, device=dev, dtype=real.dtype).to(y.device)

        if y.is_complex():
            n = torch.complex(draw(), draw()) / 2 ** 0.5
        else:
            n = draw()
        support = self.measurement_support
        if support is not None:  # entries that are structural zeros (never measured) stay zero
            n = n * support.to(real.dtype)
        return y + self.noise_std * n

    # ----- validation -----------------------------------------------------------------
    def check_measurement(self, y, batch_size: int | None = None) -> torch.Tensor:
        """Return ``y`` as a tensor of shape (B, *measurement_shape()) or raise ValueError.

        The only repair allowed is adding a missing batch dim of 1; nothing else is
        broadcast, cast from complex to real or vice versa.
        """
        y = _as_tensor(y)
        shape, dtype = self.measurement_shape(), self.measurement_dtype
        want = f"(B, {', '.join(map(str, shape))})" if shape else "(B,)"
        name = type(self).__name__
        if dtype.is_complex and not y.is_complex():
            raise ValueError(f"{name}: measurement must be complex ({dtype}) of shape {want}; got real {y.dtype}")
        if not dtype.is_complex and y.is_complex():
            raise ValueError(f"{name}: measurement must be real ({dtype}) of shape {want}; got complex {y.dtype}")
        if not (y.is_floating_point() or y.is_complex()):
            y = y.to(dtype)
        if tuple(y.shape) == shape:
            y = y.unsqueeze(0)
        if tuple(y.shape[1:]) != shape or y.ndim != len(shape) + 1:
            raise ValueError(f"{name}: measurement has shape {tuple(y.shape)}; expected {want} or {shape}")
        if batch_size is not None and y.shape[0] != batch_size:
            raise ValueError(f"{name}: measurement has batch size {y.shape[0]}; expected "
                             f"({batch_size}, {', '.join(map(str, shape))})")
        if not torch.isfinite(y).all():
            raise ValueError(f"{name}: measurement contains NaN or Inf (shape {tuple(y.shape)}, expected {want})")
        return y


class LinearForwardModel(ForwardModel):
    """A linear forward model ``y = A x`` with its exact adjoint ``A^T``.

    Optional decomposition ``A = P(Lambda) T``: a subclass that implements
    ``transform`` also provides ``inverse_transform``, ``mask``, ``restrict`` and
    ``embed`` with

        forward(x) == restrict(transform(x))
        restrict(embed(y)) == y,        mask * embed(restrict(z)) == mask * z
    """

    @property
    def default_consistency(self) -> str:
        """The consistency step solve(method="projection") uses unless told otherwise: "transform"
        (T^-1 of the spliced transform, exact where T^-1 is) where A = P(Lambda) T exists, else "cg"
        (minimum-norm correction by CG, forward and adjoint only)."""
        return "transform" if self.has_decomposition else "cg"

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} does not implement adjoint()")

    @property
    def has_decomposition(self) -> bool:
        return type(self).transform is not LinearForwardModel.transform

    @property
    def normal_scale(self) -> float | None:
        """c where T is orthonormal and A A^T = c I (the transform-domain step is then the exact
        projection, and its noise-aware damping is c / (c + mu)); None otherwise."""
        return None

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """z = T x, the invertible full measurement (B, *transform_shape)."""
        raise NotImplementedError(f"{type(self).__name__} has no decomposition A = P(Lambda) T")

    def inverse_transform(self, z: torch.Tensor) -> torch.Tensor:
        """x = T^{-1} z (or a pseudo-inverse), a real image (B, C, H, W)."""
        raise NotImplementedError(f"{type(self).__name__} has no decomposition A = P(Lambda) T")

    def restrict(self, z: torch.Tensor) -> torch.Tensor:
        """y = P(Lambda) z."""
        raise NotImplementedError(f"{type(self).__name__} has no decomposition A = P(Lambda) T")

    def embed(self, y: torch.Tensor) -> torch.Tensor:
        """z = P(Lambda)^+ y: observed entries from y, zeros elsewhere."""
        raise NotImplementedError(f"{type(self).__name__} has no decomposition A = P(Lambda) T")
