"""Persistent chat worker: an InternVL2 model folder through transformers and its own ``chat`` code.

Usage: ``chat_transformers.py MODEL_DIR [--device auto|cpu|cuda] [--max-tiles N]
[--lease FILE --lease-ttl SECONDS]``.

Speaks JSON lines. Out: ``{"event": "ready", ..., "engine": "transformers"}`` once the model is loaded. In:
``{"op": "reply", "history": [{"role", "text", "images"}], "settings": {...}}``;
out: ``{"event": "chunk", "text": ...}`` as tokens arrive, then ``{"event": "finish", "reason": "stop" |
"length", "tokens", "token", "eos"}`` (how generation ended: the number of tokens generated, the last one
as the tokenizer spells it, the folder's eos tokens; what ``vlhub check`` judges), then ``{"event":
"done", "images", "tiles", "earlier_turns", "system"}`` (what the model was given) or ``{"event":
"error", "message", "hint", "code"}``. A ``system`` turn (first in the history) replaces the model's system message for
that request. End of stdin ends the worker; so does the end of its lease (:mod:`chat_lease`: the
launcher stopped renewing the file, e.g. the Chat tab was closed), checked while loading too.

Every image of the conversation is sent again with each turn: the user turns
carry InternVL ``<image>`` placeholders, ``pixel_values`` holds all their tiles in
order and ``num_patches_list`` says how many tiles each image has. The tiles come from
:func:`chat_images.tile_cache`: the new images of a turn are decoded and tiled on threads at once, and an
image already tiled by this worker (the same unchanged file) is not tiled again. In:
``{"op": "prepare", "images": [path, ...]}`` starts tiling images attached before their question is
asked, in the background; nothing is answered.
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

import _protocol
import chat_lease
from chat_images import tile_cache
from chat_tiling import Tiling

#: What serves the answers here (reported to vlhub, recorded with each answer).
ENGINE = "transformers"


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def question(text: str, images: int) -> str:
    """A user turn with InternVL's image placeholders (the official multi-image form for several)."""
    if images == 1:
        return f"<image>\n{text}"
    return "".join(f"Image-{i + 1}: <image>\n" for i in range(images)) + text


class TokenCount:
    """The streamer handed to ``model.chat``: passes every call on to ``streamer`` and keeps the ids of the
    generated tokens (``generate`` first puts the prompt, then each new token; transformers' ``BaseStreamer``
    protocol)."""

    def __init__(self, streamer: Any) -> None:
        self.streamer, self.ids, self.prompt = streamer, [], True

    def put(self, value: Any) -> None:
        if self.prompt:
            self.prompt = False
        else:
            self.ids.extend(int(t) for t in value.reshape(-1).tolist())
        self.streamer.put(value)

    def end(self) -> None:
        self.streamer.end()


class Chat:
    """The loaded model, tokenizer and image settings."""

    def __init__(self, folder: Path, device: str, max_tiles: int | None) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        self.torch = torch
        self.model = AutoModel.from_pretrained(str(folder), torch_dtype=dtype, trust_remote_code=True,
                                               low_cpu_mem_usage=True).eval().to(device)
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=True, use_fast=False)
        config = self.model.config
        self.image_size = int(getattr(config, "force_image_size", None) or config.vision_config.image_size)
        dynamic = bool(getattr(config, "dynamic_image_size", True))
        self.max_tiles = max_tiles or (int(getattr(config, "max_dynamic_patch", 12)) if dynamic else 1)
        self.thumbnail = bool(getattr(config, "use_thumbnail", True))
        self.device = device
        self.system_message = getattr(self.model, "system_message", None)
        self.tiles = tile_cache(Tiling(self.image_size, 1, self.max_tiles, self.thumbnail))

    def reply(self, history: list[dict[str, Any]], settings: dict[str, Any]) -> dict[str, int]:
        """Stream the answer to the last user turn of ``history``; return what the model was given."""
        from transformers import TextIteratorStreamer

        pairs = []
        system = next((turn["text"] for turn in history if turn["role"] == "system"), None)
        if self.system_message is not None:  # the model's chat() builds its template from this attribute
            self.model.system_message = system if system is not None else self.system_message
        for turn in history:
            if turn["role"] == "system":
                continue
            if turn["role"] == "user":
                pairs.append([question(turn["text"], len(turn.get("images", []))), None])
            elif pairs:
                pairs[-1][1] = turn["text"]
        pixels = self.tiles.get_all([image for turn in history if turn["role"] == "user"
                                     for image in turn.get("images", [])])
        patches = [tensor.shape[0] for tensor in pixels]
        current = pairs.pop()[0]
        pixel_values = (self.torch.cat(pixels).to(self.model.device, self.model.dtype) if pixels else None)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        counted = TokenCount(streamer)
        temperature = float(settings.get("temperature", 0.7))
        limit = int(settings.get("max_new_tokens", 512))
        generation = {"max_new_tokens": limit, "streamer": counted, "do_sample": temperature > 0}
        if temperature > 0:
            generation.update(temperature=temperature, top_p=float(settings.get("top_p", 0.8)))
        failure: list[BaseException] = []

        def generate() -> None:
            try:
                with self.torch.inference_mode():
                    self.model.chat(self.tokenizer, pixel_values, current, generation,
                                    history=[tuple(p) for p in pairs], num_patches_list=patches)
            except BaseException as exc:  # reported after the stream ends
                failure.append(exc)
                streamer.end()

        thread = threading.Thread(target=generate, daemon=True)
        thread.start()
        for text in streamer:
            if text:
                emit("chunk", text=text)
        thread.join()
        if failure:
            raise failure[0]
        emit("finish", reason="stop" if len(counted.ids) < limit else "length", tokens=len(counted.ids),
             token=self.tokenizer.convert_ids_to_tokens(counted.ids[-1]) if counted.ids else None, eos=self.eos())
        return {"images": len(patches), "tiles": sum(patches), "earlier_turns": len(pairs),
                "system": system is not None and self.system_message is not None}

    def eos(self) -> list[str]:
        """The folder's eos tokens: the tokenizer's and those of the generation configs (model and LLM)."""
        ids: list[Any] = []
        for config in (getattr(self.model, "generation_config", None),
                       getattr(getattr(self.model, "language_model", None), "generation_config", None)):
            found = getattr(config, "eos_token_id", None)
            ids += found if isinstance(found, list) else [found]
        tokens = [self.tokenizer.eos_token] + [self.tokenizer.convert_ids_to_tokens(i) for i in ids
                                               if isinstance(i, int)]
        return sorted({t for t in tokens if isinstance(t, str) and t})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--max-tiles", type=int, default=None)
    chat_lease.add_arguments(parser)
    args = parser.parse_args()
    chat_lease.watch(args.lease, args.lease_ttl)  # before the slow imports: a closed page stops a load too
    folder = Path(args.model)
    if not (folder / "config.json").is_file():
        _protocol.fail(f"{folder}: not a model folder (no config.json)",
                       "give the folder written by `vlhub convert` (config.json, weights, remote code)")
    try:
        chat = Chat(folder, args.device, args.max_tiles)
    except Exception as exc:
        traceback.print_exc()
        _protocol.fail(f"cannot load {folder} with transformers: {type(exc).__name__}: {exc}",
                       "check that the folder is a complete InternVL2 model (config, weights, *.py)", code=1)
    emit("ready", device=chat.device, image_size=chat.image_size, max_tiles=chat.max_tiles, engine=ENGINE)
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        if request.get("op") == "prepare":
            chat.tiles.submit(request.get("images") or [])
            continue
        try:
            given = chat.reply(request["history"], request.get("settings", {}))
        except Exception as exc:
            traceback.print_exc()
            emit("error", message=f"generation failed: {type(exc).__name__}: {exc}",
                 hint="the worker log has the traceback", code=1)
            continue
        emit("done", **given)


if __name__ == "__main__":
    main()
