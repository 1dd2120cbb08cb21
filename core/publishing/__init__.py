"""What publishers are built from: the folder scan, hashing, planning and the git + LFS engine.

Public API for the built-in publishers (hf, modelscope, openxlab, git) and third-party ones
alike; :mod:`vlhub.core.publish` runs several targets (what ``vlhub publish`` and the
Publish page call). A publisher's ``preflight`` returns a :class:`~vlhub.core.types.PublishPlan`
and its ``publish`` executes that plan: the folder is scanned once per target, the remote
read once, and nothing is kept in module state.

========================= ==================================================================
module                    what it offers
========================= ==================================================================
:mod:`.folder`            :func:`scan` (one rule for links, loops, special files),
                          :class:`LocalFile`, :class:`FolderScan`, :func:`check_contents`,
                          :func:`check_unchanged`, the LFS rule (:func:`is_lfs`)
:mod:`.checks`            :func:`local_problems`, :func:`split_repo_id`
:mod:`.hashing`           :func:`sha256_file`, :class:`HashCache`, :func:`git_blob_sha`,
                          :func:`lfs_pointer`, :func:`parse_pointer`
:mod:`.plan`              :func:`start`, :func:`plan_files` (the one planning rule, for hub
                          APIs and git alike), :class:`RemoteFile`, :func:`pending`,
                          :func:`settle_extras`, :func:`check_listing`, :func:`mismatch`,
                          :func:`staging_dir`
:mod:`.gitlfs`            the git + LFS engine: :class:`Remote`, :class:`Stage`,
                          :class:`RemoteState`, :func:`check_url`, :func:`git_error`
:mod:`.lfs`               :func:`~vlhub.core.publishing.lfs.send`: LFS objects via ``git lfs push``
                          (copied for a local remote), then checked on the server (batch API)
:mod:`.gitpush`           :class:`GitJob`, ``gitpush.preflight`` / ``gitpush.publish``: a whole
                          git-host publisher in two calls
:mod:`.public`            :func:`public_provenance`: the published ``vlhub_provenance.json``
                          without local paths
:mod:`.access`            who may write where: :class:`~.access.Identity`,
                          :func:`~.access.require_write`, :func:`~.access.visibility`,
                          :func:`~.access.hub_errors` (an SDK's HTTP answers as keyed lines),
                          :func:`~.access.check_git_access` (``ls-remote`` and the push service)
========================= ==================================================================

Importing this package is light (standard library, filelock); GitPython loads when a git
command first runs.
"""
from __future__ import annotations

from . import gitpush
from .checks import local_problems, split_repo_id
from .folder import (BIG_FILE, LFS_PATTERNS, FolderScan, LocalFile, changed_during_upload, check_contents,
                     check_unchanged, is_lfs, scan)
from .gitlfs import Remote, RemoteState, Stage, attr_pattern, check_url, git_error, merge_attributes
from .gitpush import GitJob
from .hashing import HashCache, git_blob_sha, lfs_pointer, parse_pointer, sha256_file
from .plan import (RemoteFile, check_listing, mismatch, pending, plan_files, rerun_command, settle_extras,
                   staging_dir, staging_space, start)
from .public import public_provenance

__all__ = ["BIG_FILE", "LFS_PATTERNS", "FolderScan", "GitJob", "HashCache", "LocalFile", "Remote", "RemoteFile",
           "RemoteState", "Stage", "attr_pattern", "changed_during_upload", "check_contents", "check_listing",
           "check_unchanged", "check_url", "git_blob_sha", "git_error", "gitpush", "is_lfs", "lfs_pointer",
           "local_problems", "merge_attributes", "mismatch", "parse_pointer", "pending", "plan_files",
           "public_provenance", "rerun_command", "scan", "settle_extras", "sha256_file", "split_repo_id",
           "staging_dir", "staging_space", "start"]
