"""Imbalanced image classification sets (Cao et al., 2019) and the image tasks.

Imbalance (training set only; the evaluation set stays balanced), for ``C`` classes,
``n_max`` images in the largest class and imbalance ratio ``rho = n_max / n_min >= 1``
(Cao et al. define this same ratio; their reference code takes the *factor*
``imb_factor = 1 / rho``, and their ``mu`` is the share of reduced classes in step
imbalance, 1/2 there and here):

* long-tailed ("lt", exponential decay): class ``i`` keeps
  ``n_i = int(n_max * (1 / rho) ** (i / (C - 1)))`` images, ``i = 0 .. C-1``;
* step: the first ``C - C // 2`` classes keep ``n_max`` images, the last ``C // 2`` keep
  ``int(n_max / rho)``.

``int()`` truncates, as in the LDAM-DRW reference code (``get_img_num_per_cls``), and
``n_max`` defaults to ``len(labels) / C`` as there (5,000 for CIFAR-10, 500 for CIFAR-100).
Which images a class keeps: its indices in data order, shuffled with
``numpy.random.RandomState(seed)`` class after class, then the first ``n_i`` — with seed
0 this draws the same images as the reference code (which seeds numpy's global RNG with 0
and shuffles class by class).

The paper's Table 5 (training-set sizes, reported by the paper) and what they are:

| paper's label | CIFAR-10 | CIFAR-100 | reproduced by |
|---|---|---|---|
| long-tailed "100" | 12,406 | 10,847 | lt, rho = 100 |
| long-tailed "50" | 36,223 | 36,029 | lt, rho = 2 (factor 0.5), **not** 50 |
| step "100" | 25,250 | 25,250 | step, rho = 100 |
| step "50" | 37,500 | 37,500 | step, rho = 2 (factor 0.5), **not** 50 |

A ratio of 50 would give 13,996 / 12,608 (long-tailed) and 25,500 / 25,500 (step): the
columns labelled "50" hold sets built with imbalance *factor* 0.5, i.e. a 2:1 ratio (the
paper's appendix figure captions, "Long-tailed 0.5", use that factor). Only ``int()``
truncation reproduces all four long-tailed sizes (``round()`` gives 12,408 and 10,899).
:func:`paper_table5_setting` states this mapping in code.

Evaluation set (``eval_size``): a balanced random subset of the test split with
``eval_size / C`` images of every class (drawn with ``RandomState(split_seed + 1)``),
so ``eval_size`` must be a multiple of ``C`` and at most ``C`` times the smallest test
class; anything else is a ``ValueError`` naming the test split's size, never a silently
smaller set (the one exception: scikit-learn's digits, 450 test images, lowers an
``eval_size`` above its largest balanced subset, 440, to 440, with a warning when the
size was asked for). ``eval_size=None`` is 1,000 images for Fashion-MNIST (a CPU-sized
default) and the whole test split for CIFAR. The whole Fashion-MNIST test split is
``eval_size=10000`` (:data:`FULL_TEST_SIZE`): it holds 1,000 images of each class, so
the balanced subset of that size is every test image (in class order); the same holds
for CIFAR-10/100 (10,000 test images, 1,000 / 100 per class). One run's binomial
sampling noise on ``n`` images, ``sqrt(p (1 - p) / n)``, is at most 2.2 accuracy
points at ``n = 500`` and 0.5 at ``n = 10,000`` (:func:`binomial_se`).

Tasks: ``fashion_mnist_lt`` / ``fashion_mnist_step`` (offline, Debian's Fashion-MNIST, or
scikit-learn's digits with ``source="digits"``) and ``cifar10`` / ``cifar100`` (Hub, or
synthetic CIFAR-shaped arrays with ``source="synthetic"`` for tests and smoke runs).
Images are stored as uint8 and turned into ``pixel_values`` one item at a time by
:class:`ImageFeatures`, following an :class:`ImagePreprocessor` (size, channels, mean,
std) that :func:`dsgd.models.load_model` returns for image models.
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from dsgd.data import TaskData, register_task
from dsgd.data.prepare import DataMissingError, fashion_mnist_cache, find_fashion_mnist_idx, read_idx

IMBALANCE_KINDS = ("lt", "step")


# ------------------------------------------------------------------- class sizes
def class_counts(kind: str, num_classes: int, ratio: float, n_max: float) -> list[int]:
    """Images kept per class (class 0 first) for imbalance ``kind`` and ratio ``rho``."""
    if kind not in IMBALANCE_KINDS:
        raise ValueError(f"imbalance kind must be one of {IMBALANCE_KINDS}, got {kind!r}")
    if ratio < 1:
        raise ValueError(f"imbalance ratio rho = n_max / n_min must be >= 1, got {ratio} "
                         f"(an imbalance factor mu < 1 is the ratio 1 / mu)")
    if num_classes < 2:
        raise ValueError("need at least two classes")
    factor = 1.0 / ratio
    if kind == "lt":
        return [int(n_max * factor ** (i / (num_classes - 1.0))) for i in range(num_classes)]
    n_minor = num_classes // 2
    return [int(n_max)] * (num_classes - n_minor) + [int(n_max * factor)] * n_minor


def imbalanced_indices(labels: Sequence[int], kind: str, ratio: float, *,
                       n_max: float | None = None, seed: int = 0) -> np.ndarray:
    """Indices of an imbalanced subset of a labelled set (classes 0..C-1, class 0 largest)."""
    y = np.asarray(labels, dtype=np.int64)
    classes = np.unique(y)
    if not np.array_equal(classes, np.arange(len(classes))):
        raise ValueError(f"labels must be 0..C-1 with every class present, got {classes.tolist()}")
    C = len(classes)
    n_max = len(y) / C if n_max is None else n_max
    counts = class_counts(kind, C, ratio, n_max)
    rng = np.random.RandomState(seed)
    out = []
    for c, n in zip(range(C), counts):
        idx = np.where(y == c)[0]
        if n > len(idx):
            raise ValueError(f"class {c} has {len(idx)} images, {n} needed (n_max={n_max}); lower n_max")
        rng.shuffle(idx)
        out.append(idx[:n])
    return np.concatenate(out)


def balanced_indices(labels: Sequence[int], per_class: int | None, *, seed: int = 0) -> np.ndarray:
    """``per_class`` random indices of each class (all of them when None), class by class."""
    y = np.asarray(labels, dtype=np.int64)
    if per_class is None:
        return np.arange(len(y))
    rng = np.random.RandomState(seed)
    out = []
    for c in np.unique(y):
        idx = np.where(y == c)[0]
        if per_class > len(idx):
            raise ValueError(f"class {c} has {len(idx)} evaluation images, {per_class} asked for "
                             f"(the split has {len(y):,} images, {np.bincount(y).tolist()} per class)")
        rng.shuffle(idx)
        out.append(np.sort(idx[:per_class]))
    return np.concatenate(out)


# The paper's Table 5 (reported by the paper): (dataset, kind, column label) -> size.
PAPER_TABLE5_SIZES: dict[tuple[str, str, str], int] = {
    ("cifar10", "lt", "100"): 12406, ("cifar100", "lt", "100"): 10847,
    ("cifar10", "lt", "50"): 36223, ("cifar100", "lt", "50"): 36029,
    ("cifar10", "step", "100"): 25250, ("cifar100", "step", "100"): 25250,
    ("cifar10", "step", "50"): 37500, ("cifar100", "step", "50"): 37500,
}
CIFAR_SHAPE = {"cifar10": (10, 5000), "cifar100": (100, 500)}  # classes, train images per class


def paper_table5_setting(kind: str, column_label: str) -> tuple[str, float]:
    """The (kind, ratio rho) that produces the sizes the paper lists under ``column_label``.

    "100" means rho = 100 (factor 0.01); "50" means factor 0.5, i.e. rho = 2 (see the module
    docstring: a ratio of 50 does not reproduce the listed sizes).
    """
    mapping = {"100": 100.0, "50": 2.0}
    if kind not in IMBALANCE_KINDS or str(column_label) not in mapping:
        raise ValueError(f"Table 5 has kinds {IMBALANCE_KINDS} and labels {sorted(mapping)}")
    return kind, mapping[str(column_label)]


# --------------------------------------------------------------- preprocessing
@dataclass(frozen=True)
class ImagePreprocessor:
    """How a model wants its images: square ``size``, ``channels``, per-channel mean/std."""

    size: int = 32
    channels: int = 3
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)

    def __call__(self, images: np.ndarray):
        """uint8 images (N,H,W) or (N,H,W,C) -> float tensor (N, channels, size, size)."""
        import torch
        import torch.nn.functional as F

        x = torch.as_tensor(np.ascontiguousarray(images))
        if x.ndim == 3:
            x = x.unsqueeze(-1)
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
        if x.shape[1] != self.channels:
            if x.shape[1] == 1:
                x = x.expand(-1, self.channels, -1, -1)
            elif self.channels == 1:
                x = x.mean(dim=1, keepdim=True)
            else:
                raise ValueError(f"cannot map {x.shape[1]} channels to {self.channels}")
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False,
                              antialias=x.shape[-1] > self.size)
        mean = torch.tensor(self.mean[: self.channels]).view(1, -1, 1, 1)
        std = torch.tensor(self.std[: self.channels]).view(1, -1, 1, 1)
        return (x - mean) / std


class ImageFeatures(Sequence):
    """A list-like set of ``{"pixel_values", "labels"}`` features computed on access.

    Keeps the uint8 images, so a 50,000-image set costs its raw size, not its size at
    224x224 in float32. ``labels`` (a numpy array) is read without touching the images.
    """

    def __init__(self, images: np.ndarray, labels: Sequence[int], preprocessor: ImagePreprocessor):
        if len(images) != len(labels):
            raise ValueError("images and labels differ in length")
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int64)
        self.preprocessor = preprocessor

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = int(i)
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i %= len(self)
        return {"pixel_values": self.preprocessor(self.images[i: i + 1])[0], "labels": int(self.labels[i])}


def _preprocessor(processor: Any, image_size: int | None, channels: int | None = None) -> ImagePreprocessor:
    if processor is not None and not isinstance(processor, ImagePreprocessor):
        raise ValueError("image tasks take an ImagePreprocessor (from dsgd.models.load_model) "
                         f"or None, got {type(processor).__name__}")
    p = processor or ImagePreprocessor()
    if image_size is not None or channels is not None:
        p = ImagePreprocessor(size=image_size or p.size, channels=channels or p.channels, mean=p.mean, std=p.std)
    return p


FULL_TEST_SIZE = 10000  # test images of Fashion-MNIST, CIFAR-10 and CIFAR-100 (balanced)


def eval_per_class(y_eval: np.ndarray, eval_size: int | None, num_classes: int) -> int | None:
    """Images per class of the balanced evaluation subset of ``eval_size`` test images
    (None: the whole split). ``ValueError`` for a size no balanced subset has: fewer than
    one image per class, not a multiple of the classes, or more than the split holds."""
    if eval_size is None:
        return None
    counts = np.bincount(np.asarray(y_eval, dtype=np.int64), minlength=num_classes)
    n, C = int(counts.sum()), num_classes
    whole = (f"the test split has {n:,} images ({int(counts.min()):,} in its smallest class); "
             f"eval_size={C * int(counts.min())} is the largest balanced subset"
             + (" and the whole split" if counts.min() == counts.max() else ""))
    if int(eval_size) != eval_size or eval_size < C:
        raise ValueError(f"eval_size={eval_size} must be a whole number >= the {C} classes; {whole}")
    if eval_size % C:
        raise ValueError(f"eval_size={eval_size} is not a multiple of the {C} classes, so no balanced "
                         f"subset has that size (eval_size={C * (int(eval_size) // C)} would); {whole}")
    if eval_size // C > counts.min():
        raise ValueError(f"eval_size={eval_size} asks for {int(eval_size) // C:,} test images per class; {whole}")
    return int(eval_size) // C


def binomial_se(accuracy: float, n: int) -> float:
    """Standard error of one run's accuracy measured on ``n`` independent test images,
    ``sqrt(p (1 - p) / n)``: the sampling noise a seed spread has to exceed to mean anything."""
    if n < 1 or not 0.0 <= accuracy <= 1.0:
        raise ValueError(f"need n >= 1 and an accuracy in [0, 1], got n={n}, accuracy={accuracy}")
    return float(np.sqrt(accuracy * (1.0 - accuracy) / n))


def make_image_task(name: str, x_train: np.ndarray, y_train: np.ndarray, x_eval: np.ndarray,
                    y_eval: np.ndarray, label_names: list[str], processor: Any, *,
                    imbalance: str | None, ratio: float, n_max: float | None, eval_size: int | None,
                    split_seed: int, image_size: int | None, source: str) -> TaskData:
    """Imbalanced training subset + balanced evaluation subset, as lazily processed features."""
    C = len(label_names)
    if imbalance is None:
        tr = np.arange(len(y_train))
        counts = np.bincount(y_train, minlength=C).tolist()
    else:
        tr = imbalanced_indices(y_train, imbalance, ratio, n_max=n_max, seed=split_seed)
        counts = np.bincount(y_train[tr], minlength=C).tolist()
    per_class = eval_per_class(y_eval, eval_size, C)
    ev = balanced_indices(y_eval, per_class, seed=split_seed + 1)
    pre = _preprocessor(processor, image_size)
    info = {"source": source, "imbalance": imbalance, "ratio": ratio, "n_max": n_max,
            "split_seed": split_seed, "train_class_counts": counts, "train_ids": tr.tolist(),
            "eval_ids": ev.tolist(), "eval_class_counts": np.bincount(y_eval[ev], minlength=C).tolist(),
            "eval_full_split": len(ev) == len(y_eval), "image_size": pre.size, "preprocessor": asdict(pre)}
    return TaskData(name=name, num_labels=C, train=ImageFeatures(x_train[tr], y_train[tr], pre),
                    eval=ImageFeatures(x_eval[ev], y_eval[ev], pre), label_names=label_names,
                    kind="image", info=info)


# ----------------------------------------------------------------- image sources
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot"]


def load_fashion_mnist() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test) uint8, from the cache or Debian's IDX files."""
    cache = fashion_mnist_cache()
    if cache.exists():
        with np.load(cache) as z:
            return z["x_train"], z["y_train"].astype(np.int64), z["x_test"], z["y_test"].astype(np.int64)
    src = find_fashion_mnist_idx()
    if src is None:
        raise DataMissingError(
            "Fashion-MNIST is not installed: on Debian/Ubuntu run `apt-get install -y "
            "dataset-fashion-mnist` (then `python -m dsgd.data.prepare` caches it), or use "
            'source="digits" (scikit-learn\'s 8x8 digits) instead.')
    from dsgd.data.prepare import FASHION_MNIST_FILES as F

    return (read_idx(src / F["x_train"]), read_idx(src / F["y_train"]).astype(np.int64),
            read_idx(src / F["x_test"]), read_idx(src / F["y_test"]).astype(np.int64))


def load_digits_split(seed: int = 0, test_fraction: float = 0.25):
    """scikit-learn's 8x8 digits (1,797 images) as uint8, with a stratified train/test split."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.clip(d.images * (255.0 / 16.0), 0, 255).round().astype(np.uint8)
    y = d.target.astype(np.int64)
    rng = np.random.RandomState(seed)
    test = []
    for c in range(10):
        idx = np.where(y == c)[0]
        rng.shuffle(idx)
        test.append(idx[: int(round(len(idx) * test_fraction))])
    test_idx = np.sort(np.concatenate(test))
    train_idx = np.setdiff1d(np.arange(len(y)), test_idx)
    return x[train_idx], y[train_idx], x[test_idx], y[test_idx]


def synthetic_images(num_classes: int, per_class: int, *, size: int = 32, channels: int = 3,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random uint8 images shaped like CIFAR with a class-dependent mean (learnable, fast)."""
    rng = np.random.RandomState(seed)
    y = np.repeat(np.arange(num_classes), per_class)
    centres = rng.randint(40, 216, size=(num_classes, 1, 1, channels)).astype(np.int16)
    x = centres[y] + rng.randint(-40, 41, size=(len(y), size, size, channels), dtype=np.int16)
    return x.astype(np.uint8), y  # values stay within [0, 255]


def _no_train_size(name: str, train_size: int | None, kw: dict[str, Any]) -> None:
    if train_size is not None:
        raise ValueError(f"{name}: the training-set size follows from n_max and the imbalance "
                         "ratio; set n_max instead of train_size")
    if kw:
        raise ValueError(f"task {name!r} got unknown options {sorted(kw)}")


def _fashion_task(kind: str):
    name = f"fashion_mnist_{kind}"

    def loader(processor: Any = None, *, imbalance_ratio: float = 100.0, n_max: float | None = 500,
               eval_size: int | None = None, image_size: int | None = None, split_seed: int = 0,
               source: str = "fashion_mnist", train_size: int | None = None,
               max_length: int | None = None, **kw: Any) -> TaskData:
        _no_train_size(name, train_size, kw)
        asked, eval_size = eval_size, 1000 if eval_size is None else eval_size
        if source == "fashion_mnist":
            xtr, ytr, xte, yte = load_fashion_mnist()
            labels = FASHION_MNIST_CLASSES
        elif source == "digits":
            xtr, ytr, xte, yte = load_digits_split(seed=0)
            labels = [str(i) for i in range(10)]
            if n_max is not None and n_max > np.bincount(ytr).min():
                n_max = int(np.bincount(ytr).min())
                warnings.warn(f"digits: n_max lowered to {n_max} (smallest class)", stacklevel=2)
            smallest = int(np.bincount(yte).min())
            if eval_size // 10 > smallest:
                eval_size = 10 * smallest  # keep the evaluation set balanced
                if asked is not None:
                    warnings.warn(f"digits: eval_size lowered to {eval_size}, its largest balanced "
                                  f"subset ({len(yte)} test images, {smallest} in the smallest class)",
                                  stacklevel=2)
        else:
            raise ValueError(f"source must be 'fashion_mnist' or 'digits', got {source!r}")
        return make_image_task(name, xtr, ytr, xte, yte, labels, processor, imbalance=kind,
                               ratio=imbalance_ratio, n_max=n_max, eval_size=eval_size,
                               split_seed=split_seed, image_size=image_size, source=source)

    loader.__name__ = f"load_{name}"
    loader.__doc__ = (
        f"Fashion-MNIST with {'long-tailed' if kind == 'lt' else 'step'} imbalance on the training "
        "set (default rho = 100, n_max = 500: a CPU-sized set; n_max=None: 6,000 as in Cao et al.), "
        "balanced evaluation subset of eval_size test images (default/None: 1,000; 10000 = FULL_TEST_SIZE: "
        "the whole test split, 1,000 per class; sizes no balanced subset has raise ValueError). "
        "Images are resized to the preprocessor's size (default 32) with 3 channels.")
    register_task(name)(loader)
    return loader


load_fashion_mnist_lt = _fashion_task("lt")
load_fashion_mnist_step = _fashion_task("step")

CIFAR_HUB = {"cifar10": ("uoft-cs/cifar10", "label"), "cifar100": ("uoft-cs/cifar100", "fine_label")}


def _hub_images(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    from dsgd.data.hub import load_hub_dataset

    path, label_key = CIFAR_HUB[name]
    ds = load_hub_dataset(path, None, name, alternatives=(
        f'load_task("{name}", source="synthetic") (random CIFAR-shaped images) or the offline '
        "tasks fashion_mnist_lt / fashion_mnist_step"))
    img_key = "img" if "img" in ds["train"].column_names else "image"

    def arrays(split):
        part = ds[split]
        x = np.stack([np.asarray(im.convert("RGB"), dtype=np.uint8) for im in part[img_key]])
        return x, np.asarray(part[label_key], dtype=np.int64)

    xtr, ytr = arrays("train")
    xte, yte = arrays("test")
    names = list(ds["train"].features[label_key].names)
    return xtr, ytr, xte, yte, names


def _cifar_task(name: str):
    C, per_class = CIFAR_SHAPE[name]

    def loader(processor: Any = None, *, imbalance: str | None = "lt", imbalance_ratio: float = 100.0,
               n_max: float | None = None, eval_size: int | None = None, image_size: int | None = None,
               split_seed: int = 0, source: str = "hub", synthetic_per_class: int | None = None,
               train_size: int | None = None, max_length: int | None = None, **kw: Any) -> TaskData:
        _no_train_size(name, train_size, kw)
        if source == "hub":
            xtr, ytr, xte, yte, labels = _hub_images(name)
        elif source == "synthetic":
            n = per_class if synthetic_per_class is None else synthetic_per_class
            xtr, ytr = synthetic_images(C, n, seed=split_seed)
            xte, yte = synthetic_images(C, max(1, n // 5), seed=split_seed + 1000)
            labels = [f"class{i}" for i in range(C)]
        else:
            raise ValueError(f"source must be 'hub' or 'synthetic', got {source!r}")
        return make_image_task(name, xtr, ytr, xte, yte, labels, processor, imbalance=imbalance,
                               ratio=imbalance_ratio, n_max=n_max, eval_size=eval_size,
                               split_seed=split_seed, image_size=image_size, source=source)

    loader.__name__ = f"load_{name}"
    loader.__doc__ = (
        f"{name.upper()} (hub {CIFAR_HUB[name][0]}; train split imbalanced by `imbalance` 'lt' / "
        "'step' / None and `imbalance_ratio`; eval = the balanced test split). See "
        "paper_table5_setting for the paper's settings; source='synthetic' gives random "
        "CIFAR-shaped images for tests.")
    register_task(name)(loader)
    return loader


load_cifar10 = _cifar_task("cifar10")
load_cifar100 = _cifar_task("cifar100")
