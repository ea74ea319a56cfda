"""Reading a report's HTML back: its tables, to compare with its JSON cell by cell, and its
rendering in headless Chromium (shared by the report tests)."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest


class Tables(HTMLParser):
    """Every <table> of a page: the heading above it, its header cells and its rows."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[dict] = []
        self.heading, self._text, self._cell, self._row = "", None, None, None

    def handle_starttag(self, tag, attrs):
        if tag in ("h2", "h3"):
            self._text = []
        elif tag == "table":
            self.tables.append({"heading": self.heading, "headers": [], "rows": []})
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("h2", "h3") and self._text is not None:
            self.heading, self._text = "".join(self._text).strip(), None
        elif tag in ("td", "th") and self._cell is not None:
            self._row.append(("".join(self._cell).strip(), tag))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            table = self.tables[-1]
            if all(kind == "th" for _, kind in self._row):
                table["headers"] = [text for text, _ in self._row]
            else:
                table["rows"].append([text for text, _ in self._row])
            self._row = None

    def handle_data(self, data):
        for part in (self._text, self._cell):
            if part is not None:
                part.append(data)


def table_with(tables, headers, heading=None):
    found = [
        t
        for t in tables
        if t["headers"][: len(headers)] == headers and (heading is None or t["heading"] == heading)
    ]
    assert len(found) == 1, (headers, heading, [t["headers"] for t in tables])
    return found[0]


def same(cell: str, value) -> bool:
    """A cell shows ``value`` as the report formats it (rounded to the digits it shows)."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return cell == "–"
    if isinstance(value, str):
        return cell == value
    number = float(cell)
    decimals = len(cell.split("e")[0].split(".")[1]) if "." in cell else 0
    tolerance = 0.5 * 10.0**-decimals if "e" not in cell else abs(value) * 0.051
    return abs(number - float(value)) <= tolerance + 1e-12


def check_rows(table, records, fields):
    assert len(table["rows"]) == len(records)
    for row, record in zip(table["rows"], records, strict=True):
        for column, (cell, field) in enumerate(zip(row, fields, strict=True)):
            value = record[field] if isinstance(field, str) else field(record)
            assert same(cell, value), (table["headers"][column], cell, value, record)


def _json_numbers(value, out: list[float]) -> list[float]:
    if isinstance(value, dict):
        for v in value.values():
            _json_numbers(v, out)
    elif isinstance(value, list):
        for v in value:
            _json_numbers(v, out)
    elif isinstance(value, bool) or value is None:
        pass
    elif isinstance(value, int | float):
        out.append(float(value))
    elif isinstance(value, str):
        out.extend(float(t) for t in re.findall(r"\d+(?:\.\d+)?(?:e-?\d+)?", value))
    return out


def numbers_not_in_json(page_html: str, data) -> tuple[list[tuple[str, bool]], list[str]]:
    """The numbers a report shows as text, and those of them no JSON number rounds to."""
    text = re.sub(r'src="data:[^"]+"', "", page_html)
    text = re.sub(r"<style>.*?</style>", "", text, flags=re.S)
    visible = html.unescape(re.sub(r"<[^>]+>", " ", text))
    known = np.array(sorted(set(_json_numbers(data, []))))
    # numbers standing alone: "2026-11-21" or "6.1.0" are strings, compared as their parts,
    # and digits inside identifiers (trial ids, config hashes: "5e3120ab") are no numbers
    found = re.finditer(r"(?<![\w.\-])-?\d+(?:\.\d+)?(?:e-?\d+)?(?!\w)(%?)", visible)
    tokens = [(m.group(0).rstrip("%"), bool(m.group(1))) for m in found]
    missing = []
    for token, percent in tokens:
        value = float(token) / (100.0 if percent else 1.0)
        if not np.isfinite(value):  # an id made only of digits and "e" ("5e312099")
            continue
        decimals = len(token.split("e")[0].split(".")[1]) if "." in token else 0
        # a displayed number is a rounded (or unit-converted: minutes) JSON number
        tol = (0.5 * 10.0**-decimals + 1e-12) / (100.0 if percent else 1.0)
        candidates = np.concatenate([known, known / 60.0])
        if not np.any(np.abs(candidates - value) <= tol * (1 + abs(value) * ("e" in token))):
            missing.append(token)
    return tokens, missing


def _chromium() -> str | None:
    """Debian's chromium, installed by the set-up command (`make test`) where it may be."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


CHECK = """<script>
window.addEventListener("load", () => {
  const imgs = [...document.images];
  const bad = imgs.filter(i => !i.complete || i.naturalWidth === 0).length;
  const sections = document.querySelectorAll("section").length;
  const text = `images=${imgs.length} broken=${bad} sections=${sections}`;
  document.body.setAttribute("data-check", text);
});
</script></body>"""


def chromium_check(page_html: str, tmp_path: Path) -> dict[str, int]:
    """Open a report in headless Chromium (skip where there is none): the images it shows,
    how many failed to load, its sections; no resource may be missing."""
    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium: `make test` installs Debian's chromium when run as root")
    page = tmp_path / "checked.html"
    page.write_text(page_html.replace("</body>", CHECK))
    run = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--virtual-time-budget=5000",
            "--enable-logging=stderr",
            "--v=0",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    found = re.search(r'data-check="images=(\d+) broken=(\d+) sections=(\d+)"', run.stdout)
    assert found, run.stdout[-500:]
    assert "ERR_FILE_NOT_FOUND" not in run.stderr and "Failed to load resource" not in run.stderr
    images, broken, sections = map(int, found.groups())
    return {"images": images, "broken": broken, "sections": sections}


# ------------------------------------------------------------------ a synthetic parcel study
HEMISPHERES = ("LH", "RH")


def parcel_names(n: int) -> list[str]:
    """Parcel names as Schaefer-style atlases order them: the left hemisphere, then the right."""
    half = (n + 1) // 2
    return [f"{HEMISPHERES[i >= half]}_P{i:03d}" for i in range(n)]


def parcel_coords(n: int, rng: np.random.Generator) -> list[tuple[float, float, float]]:
    """MNI mm inside a brain-sized ellipsoid, x < 0 for the left-hemisphere half."""
    centre, radii = np.array([0.0, -18.0, 15.0]), np.array([66.0, 86.0, 58.0])
    out: list[tuple[float, float, float]] = []
    half = (n + 1) // 2
    while len(out) < n:
        u = rng.uniform(-1, 1, 3)
        if u @ u > 1 or abs(u[0]) < 0.08:  # inside, and off the midline
            continue
        u[0] = -abs(u[0]) if len(out) < half else abs(u[0])
        out.append(tuple(float(v) for v in centre + radii * u))  # type: ignore[misc]
    return out


def _stack(columns: dict[str, list[np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate(v) for k, v in columns.items()}


def write_parcel_study(
    root: Path,
    *,
    rois: int = 400,
    subjects: int = 8,
    trials_per_arm: int = 3,
    protocols: tuple[str, ...] = ("within", "loso"),
    models: tuple[str, ...] = ("ridge", "beira"),
    minutes: float = 6.0,
    mni: bool = True,
    common_mode: bool = False,
    max_epochs: int = 4,
    skilled: float = 0.5,
    seed: int = 0,
) -> dict:
    """A finished sweep over a parcellated dataset, written without training (seconds).

    ``root/data.zarr``: ``subjects`` × one run of ``minutes`` (8 EEG channels, TR 2 s, ``rois``
    parcels, with ``bold.roi_mni`` when ``mni``). ``root/sweep``: the manifest of a real plan,
    ``trials_per_arm`` Optuna trials per arm (parameters from the real search space), and per
    trial × fold (fold k holds out subject k) one results part: the val curve (``final=False``,
    one row per epoch per output, models other than ridge) and the final val and test rows. The
    first ``skilled`` fraction of parcels carries skill (r ≈ 0.3), the rest none. Only the trial
    each fold selects (best Fisher-mean val r, as nested selection picks) gets a predictions
    file — the only ones a report reads; its test r in the table is computed from the file's
    arrays with the report's own metric. ``common_mode`` adds the common-mode output (no
    coordinate). Returns the sizes written.
    """
    import io

    import optuna
    import pyarrow as pa
    import pyarrow.parquet as pq

    from eeg2bold.geometry import COMMON_MODE
    from eeg2bold.launch.config import parse_study_config
    from eeg2bold.launch.plan import make_plan
    from eeg2bold.protocols import pools_selection
    from eeg2bold.provenance import environment
    from eeg2bold.run_folder import RunFolder
    from eeg2bold.run_folder.files import write_bytes
    from eeg2bold.run_folder.table import SCHEMA, part_name
    from eeg2bold.search_spaces.spaces import define_space, experiment_from_sample
    from eeg2bold.storage import create_dataset
    from eeg2bold.storage.schema import BOLDInfo, DatasetInfo, EEGInfo, RunData
    from eeg2bold.study.stats import segment_r
    from eeg2bold.training.metrics import fisher_mean

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = np.random.default_rng(seed)
    names = parcel_names(rois)
    tr, sfreq = 2.0, 50.0
    n_vol = int(minutes * 60 / tr)
    info = DatasetInfo(
        name="parcels",
        eeg=EEGInfo(sfreq=sfreq, channels=("Fz", "Cz", "Pz", "Oz", "C3", "C4", "P3", "P4")),
        bold=BOLDInfo(
            tr=tr,
            rois=tuple(names),
            atlas="synthetic",
            roi_mni=tuple(parcel_coords(rois, rng)) if mni else None,
        ),
        source="synthetic",
    )
    store = root / "data.zarr"
    dataset = create_dataset(store, info)
    subject_ids = [f"S{s:02d}" for s in range(subjects)]
    times = (np.arange(n_vol) + 1.0) * tr
    for subject in subject_ids:
        dataset.write_run(
            RunData(
                subject=subject,
                run="run1",
                eeg=rng.standard_normal((8, int(minutes * 60 * sfreq))).astype(np.float32),
                bold=rng.standard_normal((rois, n_vol)).astype(np.float32),
                volume_times=times,
            )
        )
    config = parse_study_config(
        {
            "name": "parcels",
            "dataset": str(store),
            "targets": {"common_mode": common_mode},
            "protocols": list(protocols),
            "models": list(models),
            "budget": {"num_samples": trials_per_arm},
            "scheduler": {"type": "fifo", "max_epochs": max_epochs},
            "storage": {"results": str(root / "sweep")},
            "seed": seed,
        },
        where="write_parcel_study",
    )
    plan = make_plan(config)
    for arm in plan.arms:
        arm.status = "done"
    folder = RunFolder(root / "sweep")
    state = {"plan": plan.to_dict(), "config": config.model_dump(mode="json")}
    folder.write_manifest("sweep", state | {"provenance": environment()})
    outputs = names + ([COMMON_MODE] if common_mode else [])
    n_out = len(outputs)
    truth_skill = np.where(np.arange(n_out) < int(skilled * rois), 0.3, 0.0)
    storage = optuna.storages.RDBStorage(config.optuna_url)
    n_rows = n_predictions = 0
    for a, arm in enumerate(plan.arms):
        sampler = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed + a))
        trials, frozen = [], []
        for i in range(trials_per_arm):
            ask = sampler.ask()
            sample = define_space(ask, model=arm.model, constraints=config.search)
            experiment = experiment_from_sample(
                sample,
                model=arm.model,
                protocol=arm.protocol,
                protocol_options=config.protocol_options.get(arm.protocol, {}),
                data=config.data_settings(),
                train=config.train_settings(),
            )
            base = {
                "sweep": plan.sweep_id,
                "trial": f"t{a}_{i:05d}",
                "config_hash": experiment.config_hash(),
                "model": arm.model,
                "protocol": arm.protocol,
                "seed": experiment.train.seed,
                "window_s": experiment.data.window_s,
                "delay_s": experiment.data.delay_s,
            }
            folder.write_config(base["config_hash"], experiment.model_dump(mode="json"))
            quality = rng.uniform(0.5, 1.0) * (0.8 if arm.protocol == "loso" else 1.0)
            closed = arm.model == "ridge"
            n_epochs = 1 if closed else int(rng.integers(1, max_epochs + 1))
            folds = []
            for _ in range(subjects):
                skill = np.clip(
                    quality * truth_skill + 0.05 * rng.standard_normal(n_out), -0.9, 0.9
                )
                noise = rng.standard_normal((2, n_out)) / np.sqrt(n_vol / 4)
                val_r, test_r = np.tanh(np.arctanh(skill) + noise)
                folds.append(
                    {
                        "skill": skill,
                        "val": val_r,
                        "test": test_r,
                        "best": n_epochs if closed else int(rng.integers(1, n_epochs + 1)),
                    }
                )
            trials.append({"base": base, "n_epochs": n_epochs, "folds": folds})
            value = float(np.mean([fisher_mean(f["val"]) for f in folds]))
            frozen.append(
                optuna.trial.create_trial(
                    params=ask.params,
                    distributions=ask.distributions,
                    value=value,
                    user_attrs={
                        "trial_id": base["trial"],
                        "finished": True,
                        "config_hash": base["config_hash"],
                        "test_r": float(np.mean([fisher_mean(f["test"]) for f in folds])),
                        "epochs_trained": n_epochs,
                        "best_epoch": max(f["best"] for f in folds),
                    },
                )
            )
        study = optuna.create_study(
            study_name=arm.study_name, storage=storage, direction="maximize"
        )
        study.add_trials(frozen)
        for k, subject in enumerate(subject_ids):
            # the trial this fold selects: the best Fisher-mean val r (ties: the first), over
            # every subject's fold where the protocol pools selection (one fold per subject)
            pooled = pools_selection(arm.protocol)
            winner = int(
                np.argmax(
                    [
                        np.mean([np.arctanh(fisher_mean(f["val"])) for f in t["folds"]])
                        if pooled
                        else fisher_mean(t["folds"][k]["val"])
                        for t in trials
                    ]
                )
            )
            for j, trial in enumerate(trials):
                fold = trial["folds"][k]
                if j == winner:
                    n_test = n_vol if arm.protocol != "within" else int(0.4 * n_vol)
                    test_idx = np.arange(n_vol - n_test, n_vol)
                    val_idx = np.arange(n_vol - n_test - 30, n_vol - n_test)
                    arrays: dict[str, np.ndarray] = {
                        "outputs": np.asarray(outputs),
                        "subject": np.asarray(subject),
                        "runs": np.asarray([f"{s}/run1" for s in subject_ids]),
                    }
                    for split, idx in (("val", val_idx), ("test", test_idx)):
                        truth = rng.standard_normal((n_out, idx.size))
                        s = fold["skill"][:, None]
                        pred = s * truth + np.sqrt(1 - s**2) * rng.standard_normal(truth.shape)
                        arrays |= {
                            f"{split}_times": times[idx],
                            f"{split}_truth": truth.astype(np.float32),
                            f"{split}_pred": pred.astype(np.float32),
                            f"{split}_segment": np.zeros(idx.size, dtype=np.int64),
                            f"{split}_run": np.full(idx.size, k, dtype=np.int64),
                        }
                    fold["test"] = segment_r(
                        arrays["test_truth"],
                        arrays["test_pred"],
                        times=arrays["test_times"],
                        segment=arrays["test_segment"],
                    )
                    folder.write_predictions(trial["base"]["trial"], k, arrays)
                    n_predictions += 1
                columns: dict[str, list[np.ndarray]] = {c: [] for c in SCHEMA.names}
                curve = [  # the val curve of a trained model (ridge is closed-form: none)
                    (e, False, "val", fold["val"] * (1.0 if e == fold["best"] else 0.9))
                    for e in range(1, trial["n_epochs"] + 1)
                    if arm.model != "ridge"
                ]
                final = [
                    (fold["best"], True, "val", fold["val"]),
                    (fold["best"], True, "test", fold["test"]),
                ]
                for epoch, is_final, split, r in curve + final:
                    block = {
                        **{c: np.full(n_out, v, dtype=object) for c, v in trial["base"].items()},
                        "fold": np.full(n_out, k),
                        "subject": np.full(n_out, subject, dtype=object),
                        "roi": np.asarray(outputs, dtype=object),
                        "split": np.full(n_out, split, dtype=object),
                        "epoch": np.full(n_out, epoch),
                        "final": np.full(n_out, is_final),
                        "r": np.asarray(r, dtype=np.float64),
                        "n": np.full(n_out, 30 if split == "val" else n_vol),
                    }
                    for c in SCHEMA.names:
                        columns[c].append(block[c])
                data = _stack(columns)
                table = pa.Table.from_pydict(
                    {c: pa.array(data[c], type=SCHEMA.field(c).type) for c in SCHEMA.names},
                    schema=SCHEMA,
                )
                buffer = io.BytesIO()
                pq.write_table(table, buffer)
                name = part_name(trial["base"]["trial"], f"fold{k}")
                write_bytes(f"{folder.table}/{name}", buffer.getvalue(), what="results")
                n_rows += table.num_rows
    return {
        "rois": rois,
        "outputs": n_out,
        "subjects": subjects,
        "arms": len(plan.arms),
        "trials_per_arm": trials_per_arm,
        "results_rows": n_rows,
        "prediction_files": n_predictions,
        "sweep": root / "sweep",
    }
