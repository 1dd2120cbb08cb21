"""Benchmark `vlhub publish --to git:...` against the tutorial's git + LFS commands, HfApi.upload_folder and the bound.

    .venv/bin/python bench/publish.py --size 1GB

Everything runs on 127.0.0.1 with the tests' servers (tests/servers): git http-backend +
giftless for git, the HF-API stand-in for HfApi. Printed: seconds per way, ratios, the
re-publish of an unchanged folder, and the peak memory of the publish.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
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


def timed(cmd: list[str], env: dict[str, str], cwd: Path | None = None) -> float:
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


def ingest_rate(srv: object, repo: str, path: Path) -> float:
    """Bytes/s of one LFS upload of ``path`` into the git server (its oid computed beforehand, not timed)."""
    import requests

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(4 * MB):
            digest.update(chunk)
    size = path.stat().st_size
    auth = ("user", TOKEN)
    batch = requests.post(f"{srv.repo_url(repo, dot_git=True)}/info/lfs/objects/batch", auth=auth,  # type: ignore[attr-defined]
                          headers={"Accept": "application/vnd.git-lfs+json",
                                   "Content-Type": "application/vnd.git-lfs+json"},
                          json={"operation": "upload", "transfers": ["basic"],
                                "objects": [{"oid": digest.hexdigest(), "size": size}]}).json()
    action = batch["objects"][0]["actions"]["upload"]
    start = time.perf_counter()
    with open(path, "rb") as handle:
        requests.put(action["href"], data=handle, auth=auth, headers=action.get("header", {})).raise_for_status()
    return size / (time.perf_counter() - start)


def tutorial(folder: Path, work: Path, url: str, env: dict[str, str]) -> float:
    """The seeds' way, in place on hard links (no copy counted): lfs track, add, commit, push."""
    shutil.copytree(folder, work, copy_function=os.link)
    steps = [["git", "init", "-q", "-b", "main"], ["git", "lfs", "install", "--local"],
             ["git", "lfs", "track", "*.safetensors"], ["git", "add", "."],
             ["git", "commit", "-qm", "upload"], ["git", "push", "-q", url, "main"]]
    return sum(timed(step, env, cwd=work) for step in steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="2GB", help="total weights size (default 2GB)")
    parser.add_argument("--shard", default="512MB", help="largest shard size (default 512MB)")
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
        home = base / "home"
        env = {**os.environ, "VLHUB_HOME": str(home / "vlhub"), "HOME": str(home), "VLHUB_GIT_TOKEN": TOKEN,
               "VLHUB_GIT_USER": "user", "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": str(home / "gitconfig")}
        home.mkdir()
        (home / "gitconfig").write_text("[user]\n\tname = bench\n\temail = bench@vlhub.invalid\n")
        results: dict[str, float] = {}
        with GitLfsServer(base / "git-srv", token=TOKEN) as srv:
            url = srv.repo_url("org/InternVL2-bench")
            results["vlhub publish --to git"] = timed([str(VLHUB), "publish", str(model), "--to", f"git:{url}"], env)
            peak_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
            srv.reset_stats()
            out = subprocess.run([str(VLHUB), "publish", str(model), "--to", f"git:{url}", "--json"], env=env,
                                 capture_output=True, text=True)
            start = time.perf_counter()
            again = subprocess.run([str(VLHUB), "publish", str(model), "--to", f"git:{url}", "--json"], env=env,
                                   capture_output=True, text=True, check=True)
            republish = time.perf_counter() - start
            republish_bytes = json.loads(again.stdout)["targets"][0]["result"]["bytes_sent"]
            assert out.returncode == 0 and srv.lfs_bytes_uploaded == 0
            client = srv.client_env(base=env)
            results["tutorial (git lfs track/add/commit/push)"] = tutorial(
                model, base / "tutorial", srv.repo_url("org/InternVL2-tutorial"), client)
            rate = ingest_rate(srv, "org/InternVL2-ingest", largest)
        with hub_server_class()(base / "hub-srv", token=TOKEN, user="bench") as hub:
            code = ("import sys; from huggingface_hub import HfApi; api = HfApi(); "
                    "api.create_repo('bench/InternVL2-bench', exist_ok=True); "
                    "api.upload_folder(folder_path=sys.argv[1], repo_id='bench/InternVL2-bench')")
            results["HfApi.upload_folder"] = timed([sys.executable, "-c", code, str(model)], {**env, **hub.env()})
        hashing = hash_time(model)
        bound = max(hashing, total / rate)
        vlhub = results["vlhub publish --to git"]
        print(f"folder: {total / MB:.0f} MB in {len(list(model.iterdir()))} files (largest {largest.stat().st_size / MB:.0f} MB), "
              f"{os.cpu_count()} CPUs")
        for name, seconds in results.items():
            print(f"  {name:45} {seconds:7.2f} s  {total / seconds / MB:7.0f} MB/s")
        print(f"  {'read + sha256 (one pass)':45} {hashing:7.2f} s  {total / hashing / MB:7.0f} MB/s")
        print(f"  {'server ingest (one LFS PUT, no hashing)':45} {total / rate:7.2f} s  {rate / MB:7.0f} MB/s")
        print(f"  {'bound = max(hash, ingest)':45} {bound:7.2f} s")
        print(f"ratios: vlhub / tutorial = {vlhub / results['tutorial (git lfs track/add/commit/push)']:.2f} (goal <= 0.5); "
              f"vlhub / HfApi.upload_folder = {vlhub / results['HfApi.upload_folder']:.2f} (goal <= 1); "
              f"bound / vlhub = {bound / vlhub:.0%} (goal >= 80%)")
        print(f"re-publish unchanged: {republish:.2f} s, {republish_bytes} bytes sent (goal: 0 bytes, < 2 s)")
        print(f"peak RSS of the publish (largest child process): {peak_rss / MB:.0f} MB for {total / MB:.0f} MB of weights")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
