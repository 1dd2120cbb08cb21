"""Dataset downloads from the Hugging Face Hub, with refused access turned into a clear message."""
from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

from vlhub.core.errors import BadInput, VlhubError
from vlhub.core.net import install_hf_timeouts
from vlhub.core.types import Progress, ProgressCallback


def snapshot(repo: str, out: Path, token: str | None, progress: ProgressCallback | None = None) -> Path:
    """``snapshot_download`` of dataset ``repo`` into ``out``; hub failures become :class:`VlhubError`."""
    from huggingface_hub import snapshot_download

    install_hf_timeouts()

    report = progress or (lambda event: None)
    report(Progress("download", 0, None, "", repo))
    try:
        path = snapshot_download(repo_id=repo, repo_type="dataset", local_dir=out, token=token or None)
    except Exception as exc:
        raise hub_error(exc, repo) from exc
    report(Progress("download", 1, 1, "", repo))
    return Path(path).resolve()


def _status(exc: BaseException) -> tuple[int | None, BaseException]:
    """The HTTP status of the first hub HTTP error in ``exc``'s cause chain, and that error."""
    from huggingface_hub.errors import HfHubHTTPError

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, HfHubHTTPError):
            response = getattr(seen, "response", None)
            return (response.status_code if response is not None else None), seen
        seen = seen.__cause__ or seen.__context__
    return None, exc


def hub_error(exc: BaseException, repo: str) -> VlhubError:
    """The message and fix for a failed download of dataset ``repo``."""
    from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError

    page = f"https://huggingface.co/datasets/{repo}"
    status, cause = _status(exc)
    if isinstance(cause, GatedRepoError) or status in (401, 403):
        return VlhubError(f"the Hub refused access to the gated dataset {repo} (HTTP {status})",
                          f"request access on the dataset page ({page}), then log in with `hf auth login`")
    if isinstance(cause, RepositoryNotFoundError) or status == 404:
        return BadInput(f"dataset {repo} was not found on the Hub (HTTP {status})",
                        f"check the name at {page}, or log in with `hf auth login` if it is private")
    if isinstance(exc, LocalEntryNotFoundError):
        return VlhubError(f"could not reach the Hub to download {repo}",
                          "check the network connection (and HF_ENDPOINT / proxy settings), then retry")
    return VlhubError(f"download of {repo} failed ({type(exc).__name__}: {str(exc).splitlines()[0]})",
                      "retry; rerun with `vlhub --debug` to see the traceback")


def extract_zip(archive: Path, dest: Path) -> None:
    """Extract ``archive`` into ``dest``, refusing members that would land outside it."""
    dest = dest.resolve()
    with zipfile.ZipFile(archive) as zf:
        for member in zf.infolist():
            if member.filename.startswith("__MACOSX/"):
                continue
            target = (dest / member.filename).resolve()
            if not target.is_relative_to(dest):
                raise BadInput(f"{archive} holds a member outside the folder: {member.filename}",
                               "extract it by hand after checking its content")
            if member.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(member) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
