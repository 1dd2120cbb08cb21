"""Benchmark `vlhub publish` (--to git, --to hf) against its bound, HfApi.upload_folder and the tutorial's git + LFS.

    .venv/bin/python bench/publish.py --size 1GB --rounds 3
    .venv/bin/python bench/publish.py --size 8GB --shard 2GB --rounds 1 --workdir /big/disk   # scale check
    .venv/bin/python bench/publish.py --compare /tmp/old   # also another checkout's vlhub (git archive REV)

Everything runs on 127.0.0.1 with the tests' servers (tests/servers): git http-backend +
giftless for git, the HF-API stand-in for HfApi.upload_folder and `vlhub publish --to hf`.
Each round runs every way once, each after ``sync`` (none pays for the dirty pages of the
one before) against a fresh repository (and a fresh HF-API server), and deletes that way's
server copy (repository, LFS objects, tutorial clone) before the next, so that the disk
holds the folder plus one copy at most. Printed: the median seconds of each way over the
rounds, the git server's own ingest of the weights (curl PUTs, oids precomputed), one pass
of read + sha256, every ratio of issue #21's table, the re-publish of an unchanged folder
(bytes the server received, seconds) and the peak memory of the publish for this folder
and for one 16 times smaller (flat memory: the two should be about the same). Ratios
compare ways of the same run; absolute times vary up to 3x with the machine's other load.
``--compare DIR`` adds DIR's ``vlhub publish`` (a checkout of another revision, run with DIR
first on PYTHONPATH) to every round, beside this checkout's.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
VLHUB = Path(sys.executable).parent / "vlhub"
TOKEN = "bench-token-0123456789"
MB = 1024 * 1024

GIT = "vlhub publish --to git"
HF = "vlhub publish --to hf (HF-API server)"
HFAPI = "HfApi.upload_folder"
INGEST = "git server ingest (curl PUTs of the weights)"
HASH = "read + sha256 (one pass)"
TUTORIAL = "tutorial (git lfs track/add/commit/push)"


def parse_size(text: str) -> int:
    """``1GB``, ``512MB``, ``64KB`` or a byte count -> bytes."""
    units = {"GB": 1024**3, "MB": MB, "KB": 1024}
    for unit, factor in units.items():
        if text.upper().endswith(unit):
            return int(float(text[:-len(unit)]) * factor)
    return int(text)


def make_folder(folder: Path, size: int, shard: int) -> None:
    """A model folder: small JSON/tokenizer files plus random safetensors shards totalling ``size``."""
    from publish_helpers import make_model

    count = max(1, -(-size // shard))
    make_model(folder, {f"model-{i + 1:05d}-of-{count:05d}.safetensors": min(shard, size - i * shard)
                        for i in range(count)})


def timed(cmd: list[str], env: dict[str, str], cwd: Path | None = None, sync: bool = True) -> tuple[float, int]:
    """``(seconds, peak RSS in bytes)`` of ``cmd`` (the largest of it and the children it waited for);
    with ``sync``, started on a clean page cache (no dirty pages of the way before)."""
    if sync:
        os.sync()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd[:3])}... failed:\n{stderr[-2000:]}")
    return elapsed, usage.ru_maxrss * 1024


def hash_time(folder: Path) -> float:
    """One read of every byte + sha256, one file after another (the client-side work every way must do)."""
    os.sync()
    start = time.perf_counter()
    for path in sorted(folder.iterdir()):
        digest = hashlib.sha256()
        with open(path, "rb", buffering=0) as handle:
            while chunk := handle.read(4 * MB):
                digest.update(chunk)
    return time.perf_counter() - start


def ingest_time(srv: object, repo: str, paths: list[Path]) -> float:
    """Seconds the git server takes to receive every LFS file: one ``curl`` PUT per file, all at once.

    The oids are computed beforehand (not timed), so this is the server's ingest alone.
    """
    import requests

    objects = []
    for path in paths:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            while chunk := handle.read(4 * MB):
                digest.update(chunk)
        objects.append({"oid": digest.hexdigest(), "size": path.stat().st_size})
    batch = requests.post(f"{srv.repo_url(repo, dot_git=True)}/info/lfs/objects/batch",  # type: ignore[attr-defined]
                          auth=("user", TOKEN), json={"operation": "upload", "transfers": ["basic"], "objects": objects},
                          headers={"Accept": "application/vnd.git-lfs+json",
                                   "Content-Type": "application/vnd.git-lfs+json"}, timeout=60).json()
    commands = []
    for path, item in zip(paths, batch["objects"]):
        action = item["actions"]["upload"]
        headers = [arg for key, value in action.get("header", {}).items() for arg in ("-H", f"{key}: {value}")]
        commands.append(["curl", "-sSf", "-u", f"user:{TOKEN}", "-H", "Expect:", *headers, "-T", str(path),
                         action["href"]])
    os.sync()
    start = time.perf_counter()
    puts = [subprocess.Popen(command, stdout=subprocess.DEVNULL) for command in commands]
    if any(put.wait() for put in puts):
        raise SystemExit("an LFS PUT to the git server failed")
    return time.perf_counter() - start


def tutorial(folder: Path, work: Path, url: str, env: dict[str, str]) -> float:
    """The seeds' way, in place on hard links (no copy counted): lfs track, add, commit, push."""
    shutil.copytree(folder, work, copy_function=os.link)
    steps = [["git", "init", "-q", "-b", "main"], ["git", "lfs", "install", "--local"],
             ["git", "lfs", "track", "*.safetensors"], ["git", "add", "."],
             ["git", "commit", "-qm", "upload"], ["git", "push", "-q", url, "main"]]
    return sum(timed(step, env, cwd=work, sync=n == 0)[0] for n, step in enumerate(steps))


def drop_git_repo(srv: object, repo: str) -> None:
    """Delete a repository of the git server and its LFS objects (the next way starts on an emptier disk)."""
    org, name = repo.split("/")
    shutil.rmtree(srv.repo_path(repo), ignore_errors=True)  # type: ignore[attr-defined]
    shutil.rmtree(srv.lfs_root / org / name, ignore_errors=True)  # type: ignore[attr-defined]


def need_space(base: Path, size: int) -> None:
    """Stop before building a folder the disk cannot hold with one server copy and the tutorial's LFS store."""
    free = shutil.disk_usage(base).free
    need = 3 * size + 512 * MB
    if free < need:
        raise SystemExit(f"{base} has {free / 1024**3:.1f} GB free; this run needs about {need / 1024**3:.1f} GB "
                         "(the folder, one server copy, the tutorial's LFS store). Pass --workdir on a larger disk")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1GB", help="total weights size (default 1GB)")
    parser.add_argument("--shard", default="512MB", help="largest shard size (default 512MB)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of every way; medians are printed (default 5)")
    parser.add_argument("--workdir", type=Path, help="where to build the folder and the servers (default: a temp dir)")
    parser.add_argument("--no-tutorial", action="store_true", help="skip the tutorial's git + LFS commands")
    parser.add_argument("--compare", type=Path, help="a checkout of another vlhub revision, timed beside this one")
    args = parser.parse_args()
    size, shard = parse_size(args.size), parse_size(args.shard)

    from publish_helpers import hub_server_class
    from servers.git_lfs import GitLfsServer

    base = Path(tempfile.mkdtemp(prefix="vlhub-bench-", dir=args.workdir))
    try:
        need_space(base, size)
        model, small = base / "model", base / "small"
        make_folder(model, size, shard)
        make_folder(small, max(size // 16, MB), max(shard // 16, MB))
        total = sum(p.stat().st_size for p in model.iterdir())
        largest = max(model.iterdir(), key=lambda p: p.stat().st_size)
        weights = sorted(model.glob("*.safetensors"))
        home = base / "home"
        env = {**os.environ, "VLHUB_HOME": str(home / "vlhub"), "HOME": str(home), "VLHUB_GIT_TOKEN": TOKEN,
               "VLHUB_GIT_USER": "user", "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": str(home / "gitconfig")}
        home.mkdir()
        (home / "gitconfig").write_text("[user]\n\tname = bench\n\temail = bench@vlhub.invalid\n")
        results: dict[str, list[float]] = defaultdict(list)
        vlhubs = [("", [str(VLHUB)], env)]
        if args.compare:
            shim = base / "compare"
            shim.mkdir()
            (shim / "vlhub").symlink_to(args.compare.resolve(), target_is_directory=True)
            vlhubs.append((" [compare]", [sys.executable, "-c", "import sys; from vlhub.core.cli import main; "
                                          "sys.argv[0] = 'vlhub'; sys.exit(main())"],
                           {**env, "PYTHONPATH": str(shim)}))
        code = ("import sys; from huggingface_hub import HfApi; api = HfApi(); "
                "api.create_repo('bench/InternVL2-bench', exist_ok=True); "
                "api.upload_folder(folder_path=sys.argv[1], repo_id='bench/InternVL2-bench')")
        with GitLfsServer(base / "git-srv", token=TOKEN) as srv:
            for r in range(args.rounds):  # fresh repositories and HF-API servers each round: nothing is there yet
                for tag, exe, run_env in vlhubs:
                    repo = f"org/InternVL2-bench-{r}{'-compare' if tag else ''}"
                    seconds, rss = timed([*exe, "publish", str(model), "--to", f"git:{srv.repo_url(repo)}"], run_env)
                    results[GIT + tag].append(seconds)
                    if r == 0 and not tag:
                        peak_rss = rss
                        srv.reset_stats()
                        republish = timed([*exe, "publish", str(model), "--to", f"git:{srv.repo_url(repo)}"],
                                          run_env)[0]
                        republish_bytes = srv.lfs_bytes_uploaded
                    drop_git_repo(srv, repo)
                if not args.no_tutorial:
                    work, repo = base / f"tutorial-{r}", f"org/InternVL2-tutorial-{r}"
                    results[TUTORIAL].append(tutorial(model, work, srv.repo_url(repo), srv.client_env(base=env)))
                    shutil.rmtree(work, ignore_errors=True)
                    drop_git_repo(srv, repo)
                results[INGEST].append(ingest_time(srv, f"org/InternVL2-ingest-{r}", weights))
                drop_git_repo(srv, f"org/InternVL2-ingest-{r}")
                ways = [(HFAPI, [sys.executable, "-c", code, str(model)], env)]
                ways += [(HF + tag, [*exe, "publish", str(model), "--to", "hf:bench/InternVL2-bench"], run_env)
                         for tag, exe, run_env in vlhubs]
                for n, (name, cmd, run_env) in enumerate(ways if r % 2 == 0 else ways[::-1]):  # alternate: none
                    hub_dir = base / f"hub-{r}-{n}"  # always runs on the dirty disk of another
                    with hub_server_class()(hub_dir, token=TOKEN, user="bench") as hub:
                        results[name].append(timed(cmd, {**run_env, **hub.env()})[0])
                    shutil.rmtree(hub_dir, ignore_errors=True)
                results[HASH].append(hash_time(model))
            small_rss = timed([str(VLHUB), "publish", str(small), "--to", f"git:{srv.repo_url('org/small')}"], env)[1]
        report(results, args.rounds, total, largest, len(list(model.iterdir())), republish, republish_bytes,
               peak_rss, small_rss, sum(p.stat().st_size for p in small.iterdir()))
    finally:
        shutil.rmtree(base, ignore_errors=True)


def report(results: dict[str, list[float]], rounds: int, total: int, largest: Path, files: int, republish: float,
           republish_bytes: int, peak_rss: int, small_rss: int, small_total: int) -> None:
    """Print the medians and every ratio of issue #21's table."""
    med = {name: statistics.median(values) for name, values in results.items()}
    bound = max(med[HASH], med[INGEST])
    print(f"folder: {total / MB:.0f} MB in {files} files (largest {largest.stat().st_size / MB:.0f} MB), "
          f"{os.cpu_count()} CPUs; median of {rounds} rounds (each round: "
          + ", ".join(f"{v:.2f}" for v in results[GIT]) + " s for vlhub --to git)")
    for name, seconds in med.items():
        print(f"  {name:45} {seconds:7.2f} s  {total / seconds / MB:7.0f} MB/s")
    print(f"  {'bound = max(hash, ingest)':45} {bound:7.2f} s")
    print("ratios (issue #21):")
    print(f"  bound / vlhub --to git                         {bound / med[GIT]:6.0%}   (goal >= 80%)")
    print(f"  vlhub --to hf / HfApi.upload_folder            {med[HF] / med[HFAPI]:6.2f}x  (goal <= 1.05x; "
          f"{med[HF]:.2f} vs {med[HFAPI]:.2f} s)")
    print(f"  vlhub --to git / HfApi.upload_folder           {med[GIT] / med[HFAPI]:6.2f}x  "
          "(different servers: for scale only)")
    for tag in [name[len(GIT):] for name in med if name.startswith(GIT) and name != GIT]:
        print(f"  {'compared checkout' + tag:45}  git: bound / vlhub {bound / med[GIT + tag]:.0%}, this / it "
              f"{med[GIT] / med[GIT + tag]:.2f}x; hf: / HfApi {med[HF + tag] / med[HFAPI]:.2f}x, this / it "
              f"{med[HF] / med[HF + tag]:.2f}x")
    if TUTORIAL in med:
        print(f"  vlhub --to git / tutorial                      {med[GIT] / med[TUTORIAL]:6.2f}   "
              f"(lowest possible: bound / tutorial = {bound / med[TUTORIAL]:.2f})")
    print(f"re-publish unchanged: {republish:.2f} s, {republish_bytes} LFS bytes received by the server "
          "(goal: 0 bytes, < 1 s)")
    print(f"peak RSS of the publish: {peak_rss / MB:.0f} MB for {total / MB:.0f} MB of weights, "
          f"{small_rss / MB:.0f} MB for {small_total / MB:.0f} MB (goal: flat)")


if __name__ == "__main__":
    main()
