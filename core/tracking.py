"""Experiment tracking of training runs: TensorBoard into the run folder, W&B and SwanLab when set up.

Trainers report through their own mechanisms (xtuner: mmengine's ``vis_backends``; ms-swift:
``--report_to``); this module decides *which* trackers a run uses and where TensorBoard writes,
the same for every trainer:

- ``tensorboard`` (default): event files in the run folder's :data:`TENSORBOARD_DIR`
  (``tensorboard --logdir RUN/tensorboard``, :func:`tensorboard_command`); the ``tensorboard``
  package is pinned in the ``train`` stage environment.
- ``wandb`` (Weights & Biases) and ``swanlab``: used by default when the package is installed in the
  trainer's stage environment *and* a key is configured: ``WANDB_API_KEY`` / ``SWANLAB_API_KEY`` in the
  environment, or the store their own ``login`` command writes (W&B: the ``.netrc`` entry of its API
  host, ``$NETRC`` or ``~/.netrc``; SwanLab: ``.netrc`` in ``$SWANLAB_ROOT``, ``$SWANLAB_SAVE_DIR`` or
  ``~/.swanlab``). The key never enters a form, a run file or a command line: the training process
  inherits the environment and the libraries read their stores themselves. :data:`WANDB` and
  :data:`SWANLAB` are the declared secrets (so ``vlhub doctor`` lists where each was found and every
  text vlhub writes is scrubbed of them).

``--report-to`` (:func:`choose`) names them explicitly (``none``: no tracker).
"""
from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Mapping, Sequence
from urllib.parse import urlsplit

from . import messages
from .errors import BadInput
from .secrets import Secret, find_token

TENSORBOARD, WANDB_NAME, SWANLAB_NAME, NONE = "tensorboard", "wandb", "swanlab", "none"
TRACKERS = (TENSORBOARD, WANDB_NAME, SWANLAB_NAME)
#: the run folder's TensorBoard log folder
TENSORBOARD_DIR = "tensorboard"
#: the project name runs are filed under in W&B and SwanLab
PROJECT = "vlhub"

messages.register(
    "train.tracker_unknown",
    ("{flag} {value!r} is not a tracker", "use {flag} with tensorboard, wandb, swanlab or none"),
    ("{flag} {value!r} 不是可用的实验跟踪工具", "请在 {flag} 中选择 `tensorboard`、`wandb`、`swanlab` 或 `none`"))
messages.register(
    "train.tracker_missing",
    ("{flag} {tracker}: the {package} package is not installed in the {env} environment",
     "install it there (`{python} -m pip install {package}`), or drop {tracker} from {flag}"),
    ("{flag} {tracker}：{env} 环境中没有安装 {package}",
     "请在该环境中安装（`{python} -m pip install {package}`），或从 {flag} 中去掉 {tracker}"))
messages.register(
    "train.tracker_no_key",
    ("{flag} {tracker}: no {label} key is configured", "export {variable}=... or run `{login}` once, then plan again"),
    ("{flag} {tracker}：没有配置 {label} 密钥", "请设置环境变量 {variable}，或先运行一次 `{login}`，然后重新规划"))


def _netrc_password(path: Path, host: str) -> str | None:
    """The password of ``host``'s entry in the ``.netrc`` file ``path`` (Python's own parser), or None."""
    if not path.is_file():
        return None
    try:
        entry = netrc.netrc(str(path)).authenticators(host)
    except (OSError, netrc.NetrcParseError):
        return None
    return entry[2] if entry and entry[2] else None


def wandb_login_store() -> str | None:
    """The key ``wandb login`` stored: the ``.netrc`` entry (``$NETRC``, else ``~/.netrc``) of the W&B API host
    (``$WANDB_BASE_URL``'s host, default ``api.wandb.ai``), or None: a :class:`Secret` ``login``."""
    host = urlsplit(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname or "api.wandb.ai"
    return _netrc_password(Path(os.environ.get("NETRC") or Path.home() / ".netrc").expanduser(), host)


def swanlab_login_store() -> str | None:
    """The key ``swanlab login`` stored: the password of the first entry of ``.netrc`` in SwanLab's folder
    (``$SWANLAB_ROOT``, else ``$SWANLAB_SAVE_DIR``, else ``~/.swanlab``: its settings' ``get_user_config_dir``),
    or None: a :class:`Secret` ``login``."""
    folder = os.environ.get("SWANLAB_ROOT") or os.environ.get("SWANLAB_SAVE_DIR") or str(Path.home() / ".swanlab")
    path = Path(folder).expanduser() / ".netrc"
    if not path.is_file():
        return None
    try:
        hosts = netrc.netrc(str(path)).hosts
    except (OSError, netrc.NetrcParseError):
        return None
    return next((entry[2] for entry in hosts.values() if entry and entry[2]), None)


WANDB = Secret("wandb", ("WANDB_API_KEY",), "Weights & Biases API key (wandb.ai/authorize), for training runs' "
               "tracking", login=wandb_login_store, login_label="wandb login (.netrc)")
SWANLAB = Secret("swanlab", ("SWANLAB_API_KEY",), "SwanLab API key (swanlab.cn, settings), for training runs' "
                 "tracking", login=swanlab_login_store, login_label="swanlab login (~/.swanlab/.netrc)")
_SECRETS = {WANDB_NAME: WANDB, SWANLAB_NAME: SWANLAB}
_LOGIN = {WANDB_NAME: "wandb login", SWANLAB_NAME: "swanlab login"}


def configured(tracker: str) -> bool:
    """Whether ``tracker`` (``wandb``/``swanlab``) has a key in the environment or its login store
    (``tensorboard`` needs none)."""
    return tracker == TENSORBOARD or find_token(_SECRETS[tracker]).found


def choose(requested: Sequence[str], installed: Mapping[str, bool], env: str = "train", python: str = "PYTHON",
           flag: str = "--report-to") -> list[str]:
    """The trackers a run uses.

    Args:
        requested: the user's ``--report-to`` values (empty: the default: TensorBoard, plus W&B and SwanLab
            where installed and configured); ``none`` alone: no tracker.
        installed: tracker -> whether its package is installed in the trainer's stage environment.
        env, python: the stage environment's name and interpreter (for the fix).
        flag: the flag named in messages.
    Returns:
        Tracker names, in :data:`TRACKERS` order.
    Raises:
        BadInput: an unknown name; a tracker asked for by name that is not installed or has no key.
    """
    names = [n.strip().lower() for value in requested for n in str(value).split(",") if n.strip()]
    for name in names:
        if name not in (*TRACKERS, NONE):
            raise BadInput("train.tracker_unknown", flag=flag, value=name)
    if names == [NONE]:
        return []
    if not names:
        return [t for t in TRACKERS if installed.get(t, False) and configured(t)]
    for name in names:
        if name == NONE:
            continue
        if not installed.get(name, False):
            raise BadInput("train.tracker_missing", flag=flag, tracker=name, package=name, env=env, python=python)
        if not configured(name):
            secret = _SECRETS[name]
            raise BadInput("train.tracker_no_key", flag=flag, tracker=name, label=secret.name,
                           variable=secret.env[0], login=_LOGIN[name])
    return [t for t in TRACKERS if t in names]


def tensorboard_dir(run_dir: Path) -> Path:
    """The TensorBoard log folder of a run."""
    return Path(run_dir) / TENSORBOARD_DIR


def tensorboard_command(run_dir: Path) -> str:
    """The command that shows a run in TensorBoard (``tensorboard --logdir RUN/tensorboard``)."""
    return f"tensorboard --logdir {tensorboard_dir(run_dir)}"
