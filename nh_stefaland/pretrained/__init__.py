"""The pretrained StefaLand encoders shipped with the package, addressed by name.

Each encoder is an ordinary NeuralHydrology run folder beside this file, ``<name>/``: ``config.yml``,
``train_data/train_data_scaler.yml`` (input statistics only, no target statistics), one ``model_epochNNN.pt`` and
``manifest.json`` (version, checksum, basins, periods, compute), with ``MODEL_CARD.md``. A config names one with
``base_run_dir: stefaland:<name>``; NH's ``Config.base_run_dir`` then returns the folder
(:mod:`nh_stefaland.nh.registration`), so the stock ``nh-run finetune``, ``nh-stefaland pub`` and Python all resolve it.
``benchmarks/pretrained/build.py`` builds them from the data.

This module imports only the standard library: NH's config reads it.
"""
import hashlib
import json
from pathlib import Path

PREFIX = 'stefaland:'
FOLDER = Path(__file__).resolve().parent
MANIFEST = 'manifest.json'


def names() -> list[str]:
    """The shipped encoders' names, sorted."""
    return sorted(folder.name for folder in FOLDER.iterdir() if (folder / MANIFEST).is_file())


def is_name(value) -> bool:
    """Whether a ``base_run_dir`` (or ``--run-dir``) value names a shipped encoder (``stefaland:<name>``)."""
    return value is not None and str(value).startswith(PREFIX)


def resolve(value) -> Path:
    """The run folder of ``stefaland:<name>``; any other value as a path, unchanged.

    Raises
    ------
    ValueError
        If the name is not one of the shipped encoders.
    """
    if not is_name(value):
        return Path(value)
    name = str(value)[len(PREFIX):]
    if name not in names():
        shipped = ', '.join(f'{PREFIX}{n}' for n in names()) or 'none'
        raise ValueError(f"{value} is not a shipped pretrained encoder; shipped: {shipped} "
                         f"(list them with `nh-stefaland pretrained`).")
    return FOLDER / name


def folder(name: str) -> Path:
    """The folder of a shipped encoder, named with or without the ``stefaland:`` prefix (its name: ``.name``)."""
    return resolve(name if is_name(name) else PREFIX + name)


def manifest(name: str) -> dict:
    """The manifest of a shipped encoder (``stefaland:`` prefix optional)."""
    return json.loads((folder(name) / MANIFEST).read_text())


def weight_file(run_dir: Path) -> Path:
    """The newest ``model_epochNNN.pt`` of a run folder (NH's finetuning starts from it)."""
    checkpoints = sorted(Path(run_dir).glob('model_epoch*.pt'))
    if not checkpoints:
        raise FileNotFoundError(f"{run_dir} has no model_epoch*.pt checkpoint.")
    return checkpoints[-1]


def sha256(path: Path) -> str:
    """The SHA-256 checksum of a file, as hex."""
    digest = hashlib.sha256()
    with open(path, 'rb') as stream:
        for block in iter(lambda: stream.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def provenance(base_run_dir) -> dict:
    """What a finetuning run starts from: the encoder's name and version (if shipped), folder, weights, checksum."""
    folder = resolve(base_run_dir)
    weights = weight_file(folder)
    record = {'base_run_dir': str(base_run_dir), 'folder': str(folder), 'weights': weights.name,
              'sha256': sha256(weights)}
    if (folder / MANIFEST).is_file():
        shipped = json.loads((folder / MANIFEST).read_text())
        record.update({'name': shipped['name'], 'version': shipped['version'],
                       'matches_manifest': shipped['sha256'] == record['sha256']})
    return record
