"""An example vlhub plugin: a dataset format, a CSV of ``image,question,answer`` rows.

``vlhub data prepare csv-vqa --source DIR_OR_CSV --out PREPARED`` turns every row into one
LLaVA-style record (``<image>`` + the question, then the answer) and writes the prepared folder
through vlhub's public prepared-data API (:mod:`vlhub.core.prepared`): the records are checked
(structure, then each image once), split by image (the rows of one image stay in one split) and
written atomically, so ``vlhub data stats``, ``vlhub train`` and the Data page read it like any other.
Image paths are relative to the CSV's folder; an empty ``image`` makes a text-only record.

It declares one option, ``val_fraction`` (``--opt val_fraction=0.2`` or ``--val-fraction 0.2``; a field
titled 验证集比例 on the Chinese Data page), and one secret, ``EXAMPLE_CSV_TOKEN``: the bearer token
:meth:`CsvVqa.download` sends to fetch the CSV bundle from ``$EXAMPLE_CSV_URL``
(``vlhub data download csv-vqa --out DIR``).
"""
from __future__ import annotations

import csv
import os
import shutil
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Any, Mapping

from vlhub.core import hookimpl
from vlhub.core.errors import BadInput, VlhubError
from vlhub.core.prepared.folder import finish
from vlhub.core.prepared.records import Item
from vlhub.core.prepared.split import split
from vlhub.core.prepared.validate import validate
from vlhub.core.secrets import require_token
from vlhub.core.types import Option, PreparedData, Problem, Progress, ProgressCallback, Secret

vlhub_requires = ">=1.0,<2"

NAME = "csv-vqa"
COLUMNS = ("image", "question", "answer")
#: Where :meth:`CsvVqa.download` fetches the bundle (a .zip of the CSV and its images, or a bare .csv).
DEFAULT_URL = "https://example.invalid/vlhub/csv-vqa.zip"
TOKEN = Secret(NAME, ("EXAMPLE_CSV_TOKEN",), "bearer token for downloading the CSV bundle at $EXAMPLE_CSV_URL")


def _csv_file(source: Path) -> Path:
    """``source`` itself, or the one ``.csv`` file in the folder ``source``."""
    if source.is_file():
        return source
    found = sorted(p for p in source.glob("*.csv") if p.is_file())
    if len(found) != 1:
        listed = ", ".join(p.name for p in found) or "none"
        raise BadInput(f"{source} holds {len(found)} CSV files ({listed})", "give the CSV file itself as --source")
    return found[0]


def _items(csv_file: Path) -> tuple[list[Item], list[Problem]]:
    """One LLaVA record per row; rows without a question or an answer become problems."""
    items, rejected = [], []
    try:
        with open(csv_file, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or ())]
            if missing:
                raise BadInput(f"{csv_file.name} has no column {', '.join(missing)}",
                               "the first row must name the columns: image,question,answer")
            for index, row in enumerate(reader):
                image, question, answer = ((row.get(c) or "").strip() for c in COLUMNS)
                if not question or not answer:
                    rejected.append(Problem(index, "the question or the answer is empty",
                                            f"{csv_file.name}: row {index + 2}"))
                    continue
                record: dict[str, Any] = {"id": f"{NAME}-{index}", "conversations": [
                    {"from": "human", "value": f"<image>\n{question}" if image else question},
                    {"from": "gpt", "value": answer}]}
                if image:
                    record["image"] = image
                items.append(Item(record, index, csv_file.name, [f"img:{image}"] if image else []))
    except UnicodeDecodeError as exc:
        raise BadInput(f"{csv_file} is not UTF-8 text ({exc.reason})", "save the CSV as UTF-8") from None
    return items, rejected


class CsvVqa:
    """``image,question,answer`` rows -> a prepared folder (:class:`vlhub.core.types.Dataset`)."""

    name = NAME
    description = "A CSV of image,question,answer rows (images relative to the CSV's folder)."
    options = (Option("val_fraction", "Share of the images whose rows go to the validation split.", float, 0.0,
                      labels={"zh": "验证集比例"}),)
    secrets = (TOKEN,)

    def prepare(self, source: Path, out: Path, options: Mapping[str, Any],
                progress: ProgressCallback | None = None) -> PreparedData:
        """Convert the CSV ``source`` (or the one in the folder ``source``) into ``out``
        (:meth:`vlhub.core.types.Dataset.prepare`). Raises BadInput for a bad CSV or option."""
        if not 0 <= options["val_fraction"] < 1:
            raise BadInput(f"val_fraction={options['val_fraction']} is outside [0, 1)", "use e.g. --val-fraction 0.1")
        csv_file = _csv_file(Path(source).resolve())
        image_root = csv_file.parent
        items, rejected = _items(csv_file)
        checked = validate(items, image_root, progress, rejected)
        parts = split(checked.items, options["val_fraction"], seed=0)
        return finish(out, dataset=NAME, source=csv_file, image_root=image_root, validation=checked,
                      split=parts, options=options, progress=progress,
                      root_fix="put the images under {root}, the CSV's folder, with paths relative to it")

    def download(self, out: Path, token: str | None = None, progress: ProgressCallback | None = None) -> Path:
        """Fetch the bundle at ``$EXAMPLE_CSV_URL`` into ``out`` (a .zip is extracted) and return the folder.

        ``token`` is what vlhub passes to every download (the Hugging Face login); this dataset sends its
        own secret instead, ``$EXAMPLE_CSV_TOKEN``, as a bearer token. Raises BadInput when it is not set
        (naming the variable), VlhubError when the download fails.
        """
        key = require_token(TOKEN)
        url = os.environ.get("EXAMPLE_CSV_URL", DEFAULT_URL)
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        target = out / (Path(url.split("?", 1)[0]).name or "data.csv")
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
        if progress:
            progress(Progress("download", 0, None, "", url))
        try:
            with urllib.request.urlopen(request, timeout=60) as response, open(target, "wb") as handle:
                shutil.copyfileobj(response, handle)
        except urllib.error.HTTPError as exc:
            raise VlhubError(f"{url} answered HTTP {exc.code}",
                             "check EXAMPLE_CSV_TOKEN" if exc.code in (401, 403) else "check EXAMPLE_CSV_URL") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise VlhubError(f"cannot download {url} ({reason})", "check EXAMPLE_CSV_URL") from None
        if zipfile.is_zipfile(target):
            with zipfile.ZipFile(target) as bundle:
                for member in bundle.namelist():
                    if not (out / member).resolve().is_relative_to(out.resolve()):
                        raise BadInput(f"{url} holds a file outside its folder: {member}", "fix the bundle")
                bundle.extractall(out)
            target.unlink()
        if progress:
            progress(Progress("download", 1, 1, "", url))
        return out


@hookimpl
def register_datasets(register) -> None:
    """Register the csv-vqa dataset format."""
    register(CsvVqa())
