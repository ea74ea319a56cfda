"""Channel and ROI names of simulated datasets, the electrode positions the lead field uses,
and the ROIs' positions in MNI mm.

Positions are embedded (no MNE import, nothing to download): unit vectors of MNE's idealised
``spherical_1005`` montage (head frame: +x right, +y nose, +z vertex). The channel order is
chosen so that the first N names are a sensible cap: 19 gives the classic 10-20 set, 32 the
usual 32-channel EEG-fMRI cap (actiCAP/BrainCap MR layout), 64 its 64-channel extension. FCz,
the usual reference of MR-compatible caps, is kept separately: the simulated EEG is
referenced to it.
"""

from __future__ import annotations

import numpy as np

MONTAGE = "spherical_1005"
REFERENCE = "FCz"

# name, x, y, z (unit sphere); order = channel order of simulated datasets.
_POSITIONS: tuple[tuple[str, float, float, float], ...] = (
    # classic 10-20 (19)
    ("Fp1", -0.2939, 0.9045, 0.3090),
    ("Fp2", 0.2939, 0.9045, 0.3090),
    ("F7", -0.7695, 0.5590, 0.3090),
    ("F3", -0.4591, 0.5800, 0.6730),
    ("Fz", 0.0000, 0.5878, 0.8090),
    ("F4", 0.4591, 0.5800, 0.6730),
    ("F8", 0.7695, 0.5590, 0.3090),
    ("T7", -0.9511, 0.0000, 0.3090),
    ("C3", -0.5878, 0.0000, 0.8090),
    ("Cz", 0.0000, 0.0000, 1.0000),
    ("C4", 0.5878, 0.0000, 0.8090),
    ("T8", 0.9511, 0.0000, 0.3090),
    ("P7", -0.7695, -0.5590, 0.3090),
    ("P3", -0.4591, -0.5800, 0.6730),
    ("Pz", 0.0000, -0.5878, 0.8090),
    ("P4", 0.4591, -0.5800, 0.6730),
    ("P8", 0.7695, -0.5590, 0.3090),
    ("O1", -0.2939, -0.9045, 0.3090),
    ("O2", 0.2939, -0.9045, 0.3090),
    # completes the 32-channel cap
    ("FC5", -0.7658, 0.3000, 0.5688),
    ("FC1", -0.2911, 0.3079, 0.9058),
    ("FC2", 0.2911, 0.3079, 0.9058),
    ("FC6", 0.7658, 0.3000, 0.5688),
    ("CP5", -0.7658, -0.3000, 0.5688),
    ("CP1", -0.2911, -0.3079, 0.9058),
    ("CP2", 0.2911, -0.3079, 0.9058),
    ("CP6", 0.7658, -0.3000, 0.5688),
    ("TP9", -0.9511, -0.3090, 0.0000),
    ("TP10", 0.9511, -0.3090, 0.0000),
    ("Oz", 0.0000, -0.9511, 0.3090),
    ("PO9", -0.5878, -0.8090, 0.0000),
    ("PO10", 0.5878, -0.8090, 0.0000),
    # completes the 64-channel cap
    ("AF7", -0.5590, 0.7695, 0.3090),
    ("AF3", -0.3130, 0.7985, 0.5142),
    ("AF4", 0.3130, 0.7985, 0.5142),
    ("AF8", 0.5590, 0.7695, 0.3090),
    ("F5", -0.6408, 0.5708, 0.5135),
    ("F1", -0.2394, 0.5858, 0.7743),
    ("F2", 0.2394, 0.5858, 0.7743),
    ("F6", 0.6408, 0.5708, 0.5135),
    ("FT9", -0.9511, 0.3090, 0.0000),
    ("FT7", -0.9045, 0.2939, 0.3090),
    ("FC3", -0.5547, 0.3048, 0.7742),
    ("FC4", 0.5547, 0.3048, 0.7742),
    ("FT8", 0.9045, 0.2939, 0.3090),
    ("FT10", 0.9511, 0.3090, 0.0000),
    ("C5", -0.8090, 0.0000, 0.5878),
    ("C1", -0.3090, 0.0000, 0.9511),
    ("C2", 0.3090, 0.0000, 0.9511),
    ("C6", 0.8090, 0.0000, 0.5878),
    ("TP7", -0.9045, -0.2939, 0.3090),
    ("CP3", -0.5547, -0.3048, 0.7742),
    ("CPz", 0.0000, -0.3090, 0.9511),
    ("CP4", 0.5547, -0.3048, 0.7742),
    ("TP8", 0.9045, -0.2939, 0.3090),
    ("P5", -0.6408, -0.5708, 0.5135),
    ("P1", -0.2394, -0.5858, 0.7743),
    ("P2", 0.2394, -0.5858, 0.7743),
    ("P6", 0.6408, -0.5708, 0.5135),
    ("PO7", -0.5590, -0.7695, 0.3090),
    ("PO3", -0.3130, -0.7985, 0.5142),
    ("POz", 0.0000, -0.8090, 0.5878),
    ("PO4", 0.3130, -0.7985, 0.5142),
    ("PO8", 0.5590, -0.7695, 0.3090),
)
_REFERENCE_POSITION = (0.0000, 0.3090, 0.9511)  # FCz

MAX_CHANNELS = len(_POSITIONS)

# name, then the left structure's centre in MNI mm (x, y, z; the right one mirrors x): about the
# centres of mass of the Harvard-Oxford subcortical atlas.
_ROI_BASE: tuple[tuple[str, float, float, float], ...] = (
    ("Thalamus", -11.0, -18.0, 7.0),
    ("Caudate", -13.0, 11.0, 10.0),
    ("Putamen", -25.0, 0.0, 0.0),
    ("Hippocampus", -26.0, -22.0, -13.0),
    ("Pallidum", -20.0, -4.0, -1.0),
    ("Amygdala", -24.0, -5.0, -18.0),
    ("Accumbens", -10.0, 11.0, -7.0),
)
N_PAIRED_ROIS = 2 * len(_ROI_BASE)

# The cortical shell the parcels lie on (MNI mm): an ellipsoid about the size of the brain,
# open below z = centre - 0.75 * semi-axis (brainstem and cerebellum), kept 4 mm off the
# midline so that the two hemispheres' medial parcels stay apart.
_SHELL_CENTRE = (0.0, -18.0, 10.0)
_SHELL_SEMI_AXES = (68.0, 86.0, 62.0)
_SHELL_BOTTOM = -0.75
_MIDLINE_MM = 4.0


def channel_names(n: int) -> tuple[str, ...]:
    """The first ``n`` names of the fixed channel order (19: 10-20 set, 32: a typical cap)."""
    if not 1 <= n <= MAX_CHANNELS:
        raise ValueError(f"channels must be between 1 and {MAX_CHANNELS}, got {n}")
    return tuple(name for name, *_ in _POSITIONS[:n])


def roi_names(n: int) -> tuple[str, ...]:
    """Subcortical ROI names in left/right pairs, then cortical parcels alternating left and
    right, named by hemisphere and 1-based ROI number: ``parcel-L-015``, ``parcel-R-016``, ..."""
    if n < 1:
        raise ValueError(f"rois must be at least 1, got {n}")
    paired = [f"{base}_{side}" for base, *_ in _ROI_BASE for side in ("L", "R")]
    parcels = (f"parcel-{'LR'[i % 2]}-{i + 1:03d}" for i in range(len(paired), n))
    return tuple(paired[:n]) + tuple(parcels)


def roi_positions(n: int) -> np.ndarray:
    """MNI positions [n, 3] in mm of the ROIs of ``roi_names(n)``.

    The subcortical ROIs sit at their structures' centres; the parcels on a quasi-uniform
    Fibonacci lattice of the cortical shell (one lattice per hemisphere, mirror images, so
    parcels 2k-1 and 2k, left and right, are homologues). The lattice depends on the number of
    parcels, as a parcellation depends on its resolution.
    """
    roi_names(n)
    paired = [(side * x, y, z) for _, x, y, z in _ROI_BASE for side in (1.0, -1.0)]
    n_parcels = max(0, n - len(paired))
    half = _hemisphere_lattice((n_parcels + 1) // 2)  # [m, 3], x >= 0 (right)
    parcels = np.repeat(half, 2, axis=0)[:n_parcels]
    parcels[0::2, 0] *= -1.0  # even parcels are left
    return np.vstack([np.array(paired[:n], dtype=np.float64).reshape(-1, 3), parcels])


def _hemisphere_lattice(m: int) -> np.ndarray:
    """``m`` points [m, 3] of the right half of the cortical shell, in MNI mm: a Fibonacci
    lattice in (z, azimuth), which is area-uniform on the sphere the ellipsoid stretches."""
    golden = (np.sqrt(5.0) - 1.0) / 2.0
    i = np.arange(m) + 0.5
    uz = _SHELL_BOTTOM + (1.0 - _SHELL_BOTTOM) * i / m
    azimuth = np.pi * ((i * golden) % 1.0 - 0.5)  # (-pi/2, pi/2): the x >= 0 half
    rho = np.sqrt(1.0 - uz**2)
    ux, uy = rho * np.cos(azimuth), rho * np.sin(azimuth)
    (cx, cy, cz), (ax, ay, az) = _SHELL_CENTRE, _SHELL_SEMI_AXES
    x = cx + _MIDLINE_MM + (ax - _MIDLINE_MM) * ux
    return np.round(np.stack([x, cy + ay * uy, cz + az * uz], axis=1), 1)  # to 0.1 mm


def channel_positions(n: int) -> np.ndarray:
    """Unit-sphere positions [n, 3] of the first ``n`` channels."""
    channel_names(n)
    return np.array([pos for _, *pos in _POSITIONS[:n]], dtype=np.float64)


def all_positions() -> np.ndarray:
    """Positions [MAX_CHANNELS, 3] of every channel, for normalisations independent of ``n``."""
    return channel_positions(MAX_CHANNELS)


def reference_position() -> np.ndarray:
    """Unit-sphere position of the reference electrode (FCz)."""
    return np.array(_REFERENCE_POSITION, dtype=np.float64)
