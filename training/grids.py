"""Experiment grids as data (docs/METHOD.md §10): a TOML file names the data sets, the
methods, models and seeds, the fixed settings of each phase and the axes swept, and
`expand` turns it into the Phase 1 runs and Phase 2 cells that `run_experiments` runs.

A grid file (training/grids/*.toml; copy one to make your own):

    name = "lambda_qw"                        # the grid's outputs go to output_dir
    output_dir = "./checkpoints/grids/lambda_qw"
    methods = ["supervised", "ours_pl_qw"]    # registry names or acronyms; [] = every one
    seg_models = ["unetpp"]                   # [] = every model
    seeds = [1, 2, 3]

    [phase1]                                  # train_mq.sh variables, fixed
    [phase2]                                  # train_SSL_methods.sh variables, fixed
    EPOCHS = 200

    [[datasets]]                              # one table per data set
    name = "PH2"
    TRAIN_CSV = "..."                         # top-level keys reach both scripts
    VAL_CSV = "..."
    TEST_CSV = "..."
    phase2 = { UNLABELED_CSV_5K = "..." }     # keys for one script only

    [axes.phase1]                             # each combination trains its own g_phi
    [axes.phase2]                             # combinations that reuse g_phi
    LAMBDA_FINAL_PL_QW_VALUE = [0, 0.25, 0.5, 0.75, 1.0]

Values are strings, numbers, booleans or lists (joined by spaces, e.g. DECODER_CHANNELS).
Cells that would be the same run are one cell: a method without g_phi ignores the Phase 1
axes, and a method ignores the Phase 2 variables that none of its flags read (SUP ignores
LAMBDA_*_PL_QW), so in an ablation over lambda_qw the SUP row is trained once per seed.
Each Phase 1 run trains its own weak models (two of them never write one folder at once).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from models.seg_models import SEG_MODELS, resolve_seg_model
from training.methods import METHODS, get_method
from training.methods.base import LAMBDA_VARIABLES, SSLMethod

REPO = Path(__file__).resolve().parents[1]
GRID_DIR = REPO / "training" / "grids"
TOP_KEYS = {"name", "description", "output_dir", "methods", "seg_models", "seeds"}
TABLE_KEYS = {"phase1", "phase2", "datasets", "axes"}
# Set by the driver for every run; a grid that sets them would break its bookkeeping.
DRIVER_VARIABLES = {
    "phase1": {"DATASET", "OUTPUT_DIR", "EXPERIMENT_NAME", "WEAK_MODEL_DIR", "RESUME", "LOG_DIR"},
    "phase2": {
        "DATASET", "METHODS", "SEG_MODELS", "SEED", "OUTPUT_DIR", "RUN_NAME", "RESUME",
        "MQ_CHECKPOINT", "LOG_DIR",
    },
}  # fmt: skip
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class GridError(ValueError):
    """A grid file that cannot be expanded; the message names the file and the key."""


@dataclass(frozen=True)
class Dataset:
    name: str
    both: dict[str, str]  # variables for both scripts
    phase1: dict[str, str]
    phase2: dict[str, str]


@dataclass(frozen=True)
class Grid:
    path: Path
    name: str
    description: str
    output_dir: Path
    methods: tuple[str, ...]  # registry names
    seg_models: tuple[str, ...]
    seeds: tuple[int, ...]
    phase1: dict[str, str]
    phase2: dict[str, str]
    datasets: tuple[Dataset, ...]
    axes1: dict[str, tuple[str, ...]]  # Phase 1 axes, in file order
    axes2: dict[str, tuple[str, ...]]


@dataclass(frozen=True)
class Phase1Run:
    """One g_phi: train_mq.sh then test_mq.sh. Finished when test_metrics.json exists."""

    id: str
    dataset: str
    axes: tuple[tuple[str, str], ...]
    env: dict[str, str] = field(hash=False, compare=False)
    run_dir: Path = field(compare=False)

    @property
    def checkpoint(self) -> Path:
        return self.run_dir / "best.pth"

    @property
    def done(self) -> bool:
        return (self.run_dir / "test_metrics.json").is_file()


@dataclass(frozen=True)
class Cell:
    """One Phase 2 run (train_SSL_methods.sh with one method, model and seed). Finished
    when its results.json exists."""

    id: str
    dataset: str
    method: str  # registry name
    model: str
    seed: int
    axes: tuple[tuple[str, str], ...]  # the axis values this run depends on
    phase1: Phase1Run | None = field(compare=False)
    env: dict[str, str] = field(hash=False, compare=False)
    run_dir: Path = field(compare=False)

    @property
    def done(self) -> bool:
        return (self.run_dir / "results.json").is_file()


@dataclass(frozen=True)
class Expansion:
    grid: Grid
    phase1: tuple[Phase1Run, ...]
    cells: tuple[Cell, ...]
    # (dataset, full axis combination, model, method, seed) -> cell id: every table entry,
    # including the ones a deduplicated cell stands for.
    entries: dict[tuple, str]


# --------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------


def env_value(value: Any, where: str) -> str:
    """A grid value as the scripts' environment takes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    if isinstance(value, list) and all(isinstance(v, (int, float, str)) for v in value):
        return " ".join(str(v) for v in value)
    raise GridError(f"{where}: {value!r} is not a string, number, boolean or list of them")


def _variables(table: Any, where: str) -> dict[str, str]:
    if not isinstance(table, dict):
        raise GridError(f"{where} must be a table of VARIABLE = value")
    out = {}
    for key, value in table.items():
        if not re.fullmatch(r"[A-Z][A-Z0-9_]*", key):
            raise GridError(f"{where}.{key}: variables are the scripts' UPPER_CASE names")
        out[key] = env_value(value, f"{where}.{key}")
    return out


def _check_driver_variables(variables: dict[str, str], phase: str, where: str) -> None:
    taken = sorted(set(variables) & DRIVER_VARIABLES[phase])
    if taken:
        raise GridError(
            f"{where}: {', '.join(taken)} are set by the driver for every run (the grid's "
            "output_dir, its data set names, methods, seg_models and seeds say them)"
        )


def _axes(table: Any, phase: str, where: str) -> dict[str, tuple[str, ...]]:
    if table is None:
        return {}
    if not isinstance(table, dict):
        raise GridError(f"{where} must be a table of VARIABLE = [values]")
    axes = {}
    for key, values in table.items():
        if not isinstance(values, list) or not values:
            raise GridError(f"{where}.{key} must be a non-empty list of values")
        strings = tuple(env_value(v, f"{where}.{key}") for v in values)
        if len(set(strings)) != len(strings):
            raise GridError(f"{where}.{key} repeats a value: {list(values)}")
        axes[key] = strings
    _check_driver_variables(dict.fromkeys(axes, ""), phase, where)
    return axes


def load_grid(path: str | Path) -> Grid:
    """Read and check a grid file; every error names the file and the key at fault."""
    path = Path(path)
    if not path.is_file():
        raise GridError(f"grid file not found: {path} (the shipped grids: {GRID_DIR})")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise GridError(f"{path} is not valid TOML: {exc}") from None
    unknown = sorted(set(raw) - TOP_KEYS - TABLE_KEYS)
    if unknown:
        raise GridError(f"{path}: unknown keys {unknown}; known: {sorted(TOP_KEYS | TABLE_KEYS)}")
    name = str(raw.get("name") or path.stem)
    if not _NAME.match(name):
        raise GridError(f"{path}: name {name!r} must be letters, digits, '.', '_' or '-'")
    try:
        methods = tuple(get_method(m).name for m in raw.get("methods") or METHODS)
    except ValueError as exc:
        raise GridError(f"{path}: methods: {exc}") from None
    try:
        models = tuple(resolve_seg_model(m).name for m in raw.get("seg_models") or SEG_MODELS)
    except ValueError as exc:
        raise GridError(f"{path}: seg_models: {exc}") from None
    seeds = raw.get("seeds", [42])
    if not (isinstance(seeds, list) and seeds and all(isinstance(s, int) for s in seeds)):
        raise GridError(f"{path}: seeds must be a non-empty list of integers, got {seeds!r}")
    phase1 = _variables(raw.get("phase1", {}), f"{path}: [phase1]")
    phase2 = _variables(raw.get("phase2", {}), f"{path}: [phase2]")
    _check_driver_variables(phase1, "phase1", f"{path}: [phase1]")
    _check_driver_variables(phase2, "phase2", f"{path}: [phase2]")
    datasets = []
    for i, entry in enumerate(raw.get("datasets") or []):
        where = f"{path}: datasets[{i}]"
        if not isinstance(entry, dict) or not _NAME.match(str(entry.get("name", ""))):
            raise GridError(f"{where} needs a name (letters, digits, '.', '_' or '-')")
        rest = {k: v for k, v in entry.items() if k not in ("name", "phase1", "phase2")}
        ds = Dataset(
            str(entry["name"]),
            _variables(rest, where),
            _variables(entry.get("phase1", {}), f"{where}.phase1"),
            _variables(entry.get("phase2", {}), f"{where}.phase2"),
        )
        _check_driver_variables({**ds.both, **ds.phase1}, "phase1", where)
        _check_driver_variables({**ds.both, **ds.phase2}, "phase2", where)
        datasets.append(ds)
    if not datasets:
        raise GridError(f"{path}: no [[datasets]] table")
    names = [d.name for d in datasets]
    if len(set(names)) != len(names):
        raise GridError(f"{path}: data set names repeat: {names}")
    axes = raw.get("axes", {})
    if not isinstance(axes, dict) or set(axes) - {"phase1", "phase2"}:
        raise GridError(f"{path}: [axes] holds only [axes.phase1] and [axes.phase2]")
    axes1 = _axes(axes.get("phase1"), "phase1", f"{path}: [axes.phase1]")
    axes2 = _axes(axes.get("phase2"), "phase2", f"{path}: [axes.phase2]")
    both = sorted(set(axes1) & set(axes2))
    if both:
        raise GridError(f"{path}: {both} swept in both phases; give each axis one phase")
    return Grid(
        path=path,
        name=name,
        description=str(raw.get("description", "")),
        # relative paths, here as in every variable, are relative to the repository root
        output_dir=REPO / str(raw.get("output_dir") or f"./checkpoints/grids/{name}"),
        methods=methods,
        seg_models=models,
        seeds=tuple(seeds),
        phase1=phase1,
        phase2=phase2,
        datasets=tuple(datasets),
        axes1=axes1,
        axes2=axes2,
    )


# --------------------------------------------------------------------------------------
# Expansion
# --------------------------------------------------------------------------------------


def _method_variables() -> frozenset[str]:
    """Every script variable some method's flag reads (its settings and lambda schedule)."""
    names = {v for c in METHODS.values() for v in c.script_variables.values()}
    names |= {
        v.format(c.lambda_variables)
        for c in METHODS.values()
        if c.lambda_variables
        for v in LAMBDA_VARIABLES.values()
    }
    return frozenset(names)


METHOD_VARIABLES = _method_variables()  # the registry is complete once training.methods is imported


def method_reads(cls: type[SSLMethod], variable: str) -> bool:
    """Whether a Phase 2 variable can change this method's run: every variable that is
    not a method setting does (EPOCHS, LR, ...); a method setting only if one of the
    method's flags reads it (`script_arguments`)."""
    if variable not in METHOD_VARIABLES:
        return True
    return bool(cls.script_arguments({variable: "1"}))


def _combinations(axes: dict[str, tuple[str, ...]]) -> list[tuple[tuple[str, str], ...]]:
    keys = list(axes)
    return [tuple(zip(keys, values)) for values in itertools.product(*axes.values())]


def _slug(pairs: tuple[tuple[str, str], ...]) -> str:
    if not pairs:
        return "base"
    return "__".join(f"{k}-{re.sub(r'[^A-Za-z0-9.]+', '_', v)}" for k, v in pairs)


def expand(grid: Grid) -> Expansion:
    """The grid's Phase 1 runs and Phase 2 cells (deduplicated), with their environments."""
    out = grid.output_dir
    needs_gphi = any(get_method(m).uses_quality for m in grid.methods)
    phase1: dict[tuple, Phase1Run] = {}
    cells: dict[str, Cell] = {}
    entries: dict[tuple, str] = {}
    for ds in grid.datasets:
        for p1 in _combinations(grid.axes1) if needs_gphi else []:
            run_id = f"{ds.name}__{_slug(p1)}"
            env = {**grid.phase1, **ds.both, **ds.phase1, **dict(p1)}
            env.update(
                DATASET=ds.name,
                OUTPUT_DIR=str(out / "mq"),
                EXPERIMENT_NAME=run_id,
                WEAK_MODEL_DIR=str(out / "weak_models" / run_id),
                RESUME="true",
                LOG_DIR=str(out / "logs" / "scripts"),
            )
            phase1[(ds.name, p1)] = Phase1Run(run_id, ds.name, p1, env, out / "mq" / run_id)
        for p1, p2, model, method, seed in itertools.product(
            _combinations(grid.axes1),
            _combinations(grid.axes2),
            grid.seg_models,
            grid.methods,
            grid.seeds,
        ):
            cls = get_method(method)
            own1 = p1 if cls.uses_quality else ()
            own2 = tuple((k, v) for k, v in p2 if method_reads(cls, k))
            axes = own1 + own2
            model_acr = resolve_seg_model(model).acronym
            run_name = f"{cls.acronym}_{model_acr}_seed{seed}"
            config = _slug(axes)
            cell_id = f"{ds.name}/{config}/{run_name}"
            entries[(ds.name, p1 + p2, model, method, seed)] = cell_id
            if cell_id in cells:
                continue
            run = phase1.get((ds.name, p1)) if cls.uses_quality else None
            env = {**grid.phase2, **ds.both, **ds.phase2, **dict(own2)}
            env.update(
                DATASET=ds.name,
                METHODS=method,
                SEG_MODELS=model,
                SEED=str(seed),
                OUTPUT_DIR=str(out / "runs" / ds.name / config),
                RUN_NAME=run_name,
                RESUME="true",
                LOG_DIR=str(out / "logs" / "scripts"),
            )
            if run is not None:
                env["MQ_CHECKPOINT"] = str(run.checkpoint)
            run_dir = out / "runs" / ds.name / config / run_name
            cells[cell_id] = Cell(cell_id, ds.name, method, model, seed, axes, run, env, run_dir)
    return Expansion(grid, tuple(phase1.values()), tuple(cells.values()), entries)
