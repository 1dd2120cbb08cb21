"""The prepared-data folder: its format, its writer and the engines dataset plugins share.

A dataset plugin (:class:`vlhub.core.types.Dataset`) converts its source into
:class:`~vlhub.core.prepared.records.Item` objects and hands them to these modules;
everything about the folder it writes is decided here, so every plugin's output reads alike.

=====================================  ===========================================================
:mod:`vlhub.core.prepared.format`      the folder layout and ``prepared.json`` schema, the format
                                       version, :func:`~.format.load_manifest` (reads every version),
                                       :class:`~.format.PreparedData`, :class:`~.format.Problem`
:mod:`vlhub.core.prepared.folder`      the writer: :func:`~.folder.check_out`, :func:`~.folder.finish`
:mod:`vlhub.core.prepared.records`     LLaVA records: streaming JSON/JSONL reader, ``messages``
                                       conversion, structural checks, :class:`~.records.Item`
:mod:`vlhub.core.prepared.validate`    :func:`~.validate.validate` (structure, then each image once),
                                       :class:`~.validate.ValidationFailed`, :func:`~.validate.check_kept`
                                       (too few records kept: :class:`~.validate.TooFewRecords`)
:mod:`vlhub.core.prepared.images`      image checks (path safety, decoding, duplicate hashing)
:mod:`vlhub.core.prepared.split`       train/validation split by group (dish, image)
:mod:`vlhub.core.prepared.stats`       ``stats.json``
=====================================  ===========================================================

A plugin's ``prepare`` typically runs::

    check_out(source, out, options["force"])
    with Checks(str(image_root)) as checks:           # images are checked while records convert
        items, rejected = ...                         # the plugin's conversion (or load_items)
        checked = validate(items, image_root, progress, rejected, checks)
    parts = split(checked.items, options["val_fraction"], options["seed"])
    return finish(out, dataset=NAME, source=source, image_root=image_root, validation=checked,
                  split=parts, options=options, progress=progress,
                  root_fix="pass the folder the image paths are relative to: --opt image_root={root}")

``finish`` fails (nothing written) when fewer than ``options["min_kept"]`` (default 1) records
would be written, naming what the dropped records share; ``root_fix`` is the plugin's way to
give another image root, said when their images were not found.
"""
