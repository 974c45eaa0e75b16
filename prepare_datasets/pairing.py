"""Finding a labeled set's image/mask pairs: file listing, pairing by name, sample ids.

Each `prepare_<NAME>.py` turns its data set's distributed layout into a `Layout` (a list of
`Sample`: id, image path, mask path, stratification group) with these helpers; files that
find no partner are kept in the layout, for `check_layout` to report.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from data.io import DataError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"})
# How many individual problems one message lists before summarising the rest.
_MAX_LISTED = 10

# Affixes tried, in this order, when a mask's name differs from its image's: the spellings
# of the paper's data sets (PH2 `_lesion`, SCD `_contour`, DermoFit `mask`, ISIC
# `_segmentation`, CVC-ColonDB `p` prefix) and common ones. Matching ignores case.
DEFAULT_MASK_SUFFIXES = (
    "",
    "_lesion",
    "_contour",
    "mask",
    "_mask",
    "-mask",
    "_segmentation",
    "_seg",
    "_gt",
    "_label",
)
DEFAULT_MASK_PREFIXES = ("", "p", "mask_", "gt_")
DEFAULT_IMAGE_SUFFIXES = ("", "_orig", "_image")
DEFAULT_IMAGE_PREFIXES = ("",)


@dataclass(frozen=True)
class Sample:
    """One labeled pair; `group` (a diagnosis, a class) stratifies generated splits."""

    sample_id: str
    image_path: Path
    mask_path: Path
    group: str | None = None


@dataclass
class Layout:
    """What a data set's folder yields: pairs, and files that found no partner."""

    samples: list[Sample]
    unmatched_images: list[Path] = field(default_factory=list)
    unmatched_masks: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    source: Path | None = None
    source_dirs: list[Path] = field(default_factory=list)


def listing(items: Sequence[object], limit: int = _MAX_LISTED) -> str:
    """Items one per indented line, the ones past `limit` summarised."""
    shown = "\n  ".join(str(x) for x in items[:limit])
    more = len(items) - limit
    return "  " + shown + (f"\n  ... and {more} more" if more > 0 else "")


def is_image_file(path: Path) -> bool:
    """Whether a file's name is an image's (hidden files excluded)."""
    # Hidden files include macOS `._name` resource forks, which carry an image extension.
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def list_image_files(folder: Path, recursive: bool = False) -> list[Path]:
    """Image files in a folder (sorted; hidden files and `__MACOSX` folders skipped)."""
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(
        p
        for p in found
        if p.is_file() and is_image_file(p) and "__MACOSX" not in p.relative_to(folder).parts
    )


def _levels(root: Path, max_depth: int) -> Iterator[list[Path]]:
    """`[root]`, then each level of folders below it (sorted, `__MACOSX` skipped)."""
    level = [root]
    for _ in range(max_depth + 1):
        yield level
        level = sorted(c for p in level for c in p.iterdir() if c.is_dir() and c.name != "__MACOSX")
        if not level:
            return


def find_named_dir(root: Path, names: Iterable[str], max_depth: int = 3) -> Path | None:
    """The shallowest folder under `root` (or `root` itself) whose name is one of `names`
    (case-insensitive); ties go to the alphabetically first path."""
    wanted = {n.casefold() for n in names}
    for level in _levels(root, max_depth):
        hits = sorted(p for p in level if p.name.casefold() in wanted)
        if hits:
            return hits[0]
    return None


def find_folder_pair(
    root: Path, image_names: Sequence[str], mask_names: Sequence[str], max_depth: int = 3
) -> tuple[Path, Path] | None:
    """The shallowest sibling pair (image folder, mask folder) under `root`, e.g.
    (`Original`, `Ground Truth`) or (`images`, `masks`); names compare case-insensitively."""
    img_wanted = [n.casefold() for n in image_names]
    mask_wanted = [n.casefold() for n in mask_names]
    for level in _levels(root, max_depth):
        for parent in level:
            children = {c.name.casefold(): c for c in parent.iterdir() if c.is_dir()}
            img = next((children[n] for n in img_wanted if n in children), None)
            msk = next((children[n] for n in mask_wanted if n in children), None)
            if img is not None and msk is not None:
                return img, msk
    return None


def natural_key(text: str) -> list[object]:
    """Sort key that puts `2` before `10` (frame numbers, IMD ids)."""
    return [int(t) if t.isdigit() else t.casefold() for t in re.split(r"(\d+)", text)]


def safe_id(text: str) -> str:
    """A file-name-safe sample id (letters, digits, `.`, `_`, `-`)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "sample"


def unique_ids(stems: Sequence[str], paths: Sequence[Path]) -> list[str]:
    """Ids from stems; stems shared by several files get their parent folders' names
    prefixed (innermost first) until they differ."""
    ids = [safe_id(s) for s in stems]
    for depth in range(1, 8):
        counts = Counter(ids)
        clashes = [i for i, x in enumerate(ids) if counts[x] > 1]
        if not clashes:
            return ids
        for i in clashes:
            parents = [safe_id(p.name) for p in paths[i].parents][:depth]
            ids[i] = "_".join([*reversed(parents), safe_id(stems[i])])
    counts = Counter(ids)
    raise DataError(
        "cannot give these files distinct ids:\n"
        + listing([str(paths[i]) for i, x in enumerate(ids) if counts[x] > 1])
    )


def with_unique_ids(layout: Layout, stem_of: Callable[[Sample], str]) -> Layout:
    """The layout with ids `stem_of(sample)`, made unique by folder names where shared."""
    ids = unique_ids([stem_of(s) for s in layout.samples], [s.image_path for s in layout.samples])
    layout.samples = [replace(s, sample_id=i) for s, i in zip(layout.samples, ids)]
    return layout


def strip_affixes(stem: str, prefixes: Sequence[str], suffixes: Sequence[str]) -> list[str]:
    """`stem` and every core left by removing one prefix and one suffix (order of trial)."""
    low = stem.casefold()
    cores = []
    for pre in prefixes:
        for suf in suffixes:
            pre_f, suf_f = pre.casefold(), suf.casefold()
            if len(pre_f) + len(suf_f) >= len(low):
                continue
            if low.startswith(pre_f) and low.endswith(suf_f):
                core = low[len(pre_f) : len(low) - len(suf_f)]
                if core not in cores:
                    cores.append(core)
    return cores


def match_by_stem(
    images: Sequence[Path],
    masks: Sequence[Path],
    mask_prefixes: Sequence[str] = DEFAULT_MASK_PREFIXES,
    mask_suffixes: Sequence[str] = DEFAULT_MASK_SUFFIXES,
    image_prefixes: Sequence[str] = DEFAULT_IMAGE_PREFIXES,
    image_suffixes: Sequence[str] = DEFAULT_IMAGE_SUFFIXES,
    group_of: Callable[[Path], str | None] | None = None,
) -> Layout:
    """Pair images with masks by file name (case-insensitive), trying affixes in order.

    For each image, the cores of its name (itself, then with each image affix removed)
    are tried against mask names `prefix + core + suffix`, the exact name first; the first
    existing mask wins. Two files with the same stem in one list, or a mask claimed by two
    images, are errors naming the files.
    """
    for kind, files in (("images", images), ("masks", masks)):
        by_stem: dict[str, list[Path]] = {}
        for p in files:
            by_stem.setdefault(p.stem.casefold(), []).append(p)
        dupes = [f"{', '.join(map(str, ps))}" for ps in by_stem.values() if len(ps) > 1]
        if dupes:
            raise DataError(f"{kind} sharing one name (which is meant?):\n" + listing(dupes))
    mask_by_stem = {p.stem.casefold(): p for p in masks}
    image_prefixes = list(dict.fromkeys(["", *image_prefixes]))
    image_suffixes = list(dict.fromkeys(["", *image_suffixes]))
    mask_prefixes = list(dict.fromkeys(["", *mask_prefixes]))
    mask_suffixes = list(dict.fromkeys(["", *mask_suffixes]))

    claimed: dict[Path, Path] = {}
    pairs: list[tuple[Path, Path]] = []
    unmatched_images: list[Path] = []
    clashes: list[str] = []
    for image in images:
        found = None
        for core in strip_affixes(image.stem, image_prefixes, image_suffixes):
            for pre in mask_prefixes:
                for suf in mask_suffixes:
                    candidate = mask_by_stem.get(f"{pre}{core}{suf}".casefold())
                    if candidate is not None:
                        found = candidate
                        break
                if found:
                    break
            if found:
                break
        if found is None:
            unmatched_images.append(image)
        elif found in claimed:
            clashes.append(f"{found} matches both {claimed[found]} and {image}")
        else:
            claimed[found] = image
            pairs.append((image, found))
    if clashes:
        raise DataError("masks matched by two images:\n" + listing(clashes))
    ids = unique_ids([img.stem for img, _ in pairs], [img for img, _ in pairs])
    samples = [
        Sample(sid, img, msk, group_of(img) if group_of else None)
        for sid, (img, msk) in zip(ids, pairs)
    ]
    unmatched_masks = [m for m in masks if m not in claimed]
    return Layout(samples, unmatched_images, unmatched_masks)


def match_per_folder(
    images: Sequence[Path],
    masks: Sequence[Path],
    source: Path,
    stem_of: Callable[[Sample], str],
    *,
    mask_prefixes: Sequence[str],
    mask_suffixes: Sequence[str],
    image_suffixes: Sequence[str],
    group_of: Callable[[Path], str | None] | None = None,
) -> Layout:
    """`match_by_stem` within each folder, for sets whose folders repeat file names; ids are
    `stem_of(sample)`, made unique by folder names."""
    by_folder: dict[Path, tuple[list[Path], list[Path]]] = {}
    for kind, files in enumerate((images, masks)):
        for p in files:
            by_folder.setdefault(p.parent, ([], []))[kind].append(p)
    layout = Layout([], source=source)
    for folder in sorted(by_folder):
        part = match_by_stem(
            *by_folder[folder],
            mask_prefixes=mask_prefixes,
            mask_suffixes=mask_suffixes,
            image_suffixes=image_suffixes,
            group_of=group_of,
        )
        layout.samples += part.samples
        layout.unmatched_images += part.unmatched_images
        layout.unmatched_masks += part.unmatched_masks
    return with_unique_ids(layout, stem_of)


def split_one_folder(
    files: Sequence[Path], mask_prefixes: Sequence[str], mask_suffixes: Sequence[str]
) -> tuple[list[Path], list[Path]]:
    """Images and masks kept side by side (`x.jpg`, `x_mask.png`): a file is a mask when
    its name is another file's name with a mask prefix or suffix added."""
    stems = {p.stem.casefold() for p in files}
    masks = set()
    for p in files:
        low = p.stem.casefold()
        # Every core but the name itself (the empty prefix and suffix).
        cores = strip_affixes(p.stem, mask_prefixes, mask_suffixes)
        if any(core != low and core in stems for core in cores):
            masks.add(p)
    return [p for p in files if p not in masks], [p for p in files if p in masks]


def match_folders(
    images_dir: Path,
    masks_dir: Path,
    source: Path | None,
    recursive: bool = False,
    mask_prefixes: Sequence[str] = DEFAULT_MASK_PREFIXES,
    mask_suffixes: Sequence[str] = DEFAULT_MASK_SUFFIXES,
    image_prefixes: Sequence[str] = DEFAULT_IMAGE_PREFIXES,
    image_suffixes: Sequence[str] = DEFAULT_IMAGE_SUFFIXES,
) -> Layout:
    """`match_by_stem` between an images folder and a masks folder (one folder may be both:
    `split_one_folder`); the layout records both folders as sources."""
    images = list_image_files(images_dir, recursive)
    masks = list_image_files(masks_dir, recursive)
    if images_dir.resolve() == masks_dir.resolve():
        images, masks = split_one_folder(images, mask_prefixes, mask_suffixes)
    layout = match_by_stem(
        images, masks, mask_prefixes, mask_suffixes, image_prefixes, image_suffixes
    )
    layout.source, layout.source_dirs = source, [images_dir, masks_dir]
    return layout


def check_layout(layout: Layout, allow_unpaired: bool, log: Callable[[str], None] = print) -> None:
    """Report unpaired files (an error unless allowed), id clashes, and an empty layout."""
    for note in layout.notes:
        log(f"note: {note}")
    problems = []
    if layout.unmatched_images:
        problems.append(
            f"{len(layout.unmatched_images)} image(s) without a mask:\n"
            + listing(layout.unmatched_images)
        )
    if layout.unmatched_masks:
        problems.append(
            f"{len(layout.unmatched_masks)} mask(s) without an image:\n"
            + listing(layout.unmatched_masks)
        )
    if problems:
        text = "\n".join(problems)
        if not allow_unpaired:
            raise DataError(text + "\npass --allow-unpaired to leave these files out")
        log(f"warning: left out (--allow-unpaired):\n{text}")
    counts = Counter(s.sample_id for s in layout.samples)
    dupes = sorted(k for k, v in counts.items() if v > 1)
    if dupes:
        raise DataError("sample ids used twice:\n" + listing(dupes))
    if not layout.samples:
        where = f" in {layout.source}" if layout.source else ""
        raise DataError(f"no image/mask pairs found{where}")
