"""Benchmark `vlhub publish --to git:...` against the tutorial's git + LFS commands, HfApi.upload_folder and the bound.

    .venv/bin/python bench/publish.py --size 1GB

Everything runs on 127.0.0.1 with the tests' servers (tests/servers): git http-backend +
giftless for git, the HF-API stand-in for HfApi (and for `vlhub publish --to hf`). Each way
starts after ``sync``, so none pays for the dirty pages of the one before. Printed: seconds
per way, the git server's own ingest of the weights (curl PUTs, oids precomputed), ratios,
the re-publish of an unchanged folder, and the peak memory of the publish.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import resource
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


def parse_size(text: str) -> int:
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


def timed(cmd: list[str], env: dict[str, str], cwd: Path | None = None, sync: bool = True) -> float:
    """Seconds ``cmd`` takes; with ``sync``, from a clean page cache (no dirty pages of the way before)."""
    if sync:
        os.sync()
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd[:3])}... failed:\n{proc.stderr[-2000:]}")
    return elapsed


def hash_time(folder: Path) -> float:
    """One read of every byte + sha256 (the client-side work every way must do)."""
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
                                   "Content-Type": "application/vnd.git-lfs+json"}).json()
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
    return sum(timed(step, env, cwd=work, sync=n == 0) for n, step in enumerate(steps))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="2GB", help="total weights size (default 2GB)")
    parser.add_argument("--shard", default="512MB", help="largest shard size (default 512MB)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of every way; medians are printed (default 3)")
    parser.add_argument("--workdir", type=Path, help="where to build the folder (default: a temp dir)")
    args = parser.parse_args()
    size, shard = parse_size(args.size), parse_size(args.shard)

    from publish_helpers import hub_server_class
    from servers.git_lfs import GitLfsServer

    base = Path(tempfile.mkdtemp(prefix="vlhub-bench-", dir=args.workdir))
    try:
        model = base / "model"
        make_folder(model, size, shard)
        total = sum(p.stat().st_size for p in model.iterdir())
        largest = max(model.iterdir(), key=lambda p: p.stat().st_size)
        weights = sorted(model.glob("*.safetensors"))
        home = base / "home"
        env = {**os.environ, "VLHUB_HOME": str(home / "vlhub"), "HOME": str(home), "VLHUB_GIT_TOKEN": TOKEN,
               "VLHUB_GIT_USER": "user", "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": str(home / "gitconfig")}
        home.mkdir()
        (home / "gitconfig").write_text("[user]\n\tname = bench\n\temail = bench@vlhub.invalid\n")
        results: dict[str, list[float]] = defaultdict(list)
        code = ("import sys; from huggingface_hub import HfApi; api = HfApi(); "
                "api.create_repo('bench/InternVL2-bench', exist_ok=True); "
                "api.upload_folder(folder_path=sys.argv[1], repo_id='bench/InternVL2-bench')")
        with GitLfsServer(base / "git-srv", token=TOKEN) as srv:
            for r in range(args.repeat):  # fresh repositories and HF-API servers each round: nothing is there yet
                url = srv.repo_url(f"org/InternVL2-bench-{r}")
                results["vlhub publish --to git"].append(
                    timed([str(VLHUB), "publish", str(model), "--to", f"git:{url}"], env))
                if r == 0:
                    peak_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
                    srv.reset_stats()
                    republish = timed([str(VLHUB), "publish", str(model), "--to", f"git:{url}"], env)
                    republish_bytes = srv.lfs_bytes_uploaded
                results["tutorial (git lfs track/add/commit/push)"].append(tutorial(
                    model, base / f"tutorial-{r}", srv.repo_url(f"org/InternVL2-tutorial-{r}"), srv.client_env(base=env)))
                results["git server ingest (curl PUTs of the weights)"].append(
                    ingest_time(srv, f"org/InternVL2-ingest-{r}", weights))
                for name, cmd in (("HfApi.upload_folder", [sys.executable, "-c", code, str(model)]),
                                  ("vlhub publish --to hf (HF-API server)",
                                   [str(VLHUB), "publish", str(model), "--to", "hf:bench/InternVL2-bench"])):
                    with hub_server_class()(base / f"hub-{len(results[name])}-{name[:5]}", token=TOKEN,
                                            user="bench") as hub:
                        results[name].append(timed(cmd, {**env, **hub.env()}))
                results["read + sha256 (one pass)"].append(hash_time(model))
        med = {name: statistics.median(values) for name, values in results.items()}
        ingest, hashing = med["git server ingest (curl PUTs of the weights)"], med["read + sha256 (one pass)"]
        bound = max(hashing, ingest)
        vlhub, tutorial_s = med["vlhub publish --to git"], med["tutorial (git lfs track/add/commit/push)"]
        print(f"folder: {total / MB:.0f} MB in {len(list(model.iterdir()))} files (largest {largest.stat().st_size / MB:.0f} MB), "
              f"{os.cpu_count()} CPUs; median of {args.repeat} rounds (each round: " + ", ".join(
                  f"{v:.2f}" for v in results["vlhub publish --to git"]) + " s for vlhub --to git)")
        for name, seconds in med.items():
            print(f"  {name:45} {seconds:7.2f} s  {total / seconds / MB:7.0f} MB/s")
        print(f"  {'bound = max(hash, ingest)':45} {bound:7.2f} s")
        print(f"lowest possible vlhub / tutorial = bound / tutorial = {bound / tutorial_s:.2f}")
        print(f"ratios: vlhub / tutorial = {vlhub / tutorial_s:.2f} (goal <= 0.5); "
              f"vlhub / HfApi.upload_folder = {vlhub / med['HfApi.upload_folder']:.2f} (goal <= 1); "
              f"bound / vlhub = {bound / vlhub:.0%} (goal >= 80%)")
        print(f"re-publish unchanged: {republish:.2f} s, {republish_bytes} LFS bytes received by the server "
              "(goal: 0 bytes, < 2 s)")
        print(f"peak RSS of the publish (largest child process): {peak_rss / MB:.0f} MB for {total / MB:.0f} MB of weights")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
