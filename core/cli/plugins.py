"""``vlhub plugins``: loaded plugins, what each registered, the secrets they declare, and the ones that failed.

Also the command class that turns the options plugins declare into flags of a verb
(:class:`PluginOptionsCommand`: ``vlhub publish``'s publisher options, ``vlhub chat``'s backend options).
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import click

from .. import plugins
from ..errors import BadInput
from ..options import FLAGS, PAIRS, Option, coerce, flag, parse_pairs
from ..output import emit_json


def option_param(opt: Option, owners: Sequence[str]) -> click.Option:
    """A plugin option as a click flag: ``--NAME`` (``--NAME/--no-NAME`` for yes/no, repeatable for lists),
    read as text (converted with :func:`vlhub.core.options.coerce` once the plugin is known)."""
    name = flag(opt.name)
    default = f"; default: {opt.default}" if opt.default not in (None, "", ()) else ""
    help_ = f"{opt.help.rstrip('.')} ({', '.join(owners)}{default})."
    if opt.type is bool:
        return click.Option([f"{name}/--no-{name[2:]}", opt.name], default=None, help=help_)
    kinds = {str: "TEXT", int: "INTEGER", float: "FLOAT"}
    metavar = "[" + "|".join(opt.choices) + "]" if opt.choices else kinds.get(opt.type, opt.type.__name__.upper())
    return click.Option([name, opt.name], multiple=opt.type is list, metavar="TEXT" if opt.type is list else metavar,
                        help=help_)


class PluginOptionsCommand(click.Command):
    """A command whose flags are its fixed ones plus the options the objects of one plugin family declare.

    Every :class:`~vlhub.core.options.Option` of every registered object of ``family`` (e.g. the
    publishers) becomes a flag ``--NAME`` (:func:`option_param`), unless a fixed flag already takes the
    name (the built-ins' common options keep their own flags); objects declaring the same name share
    the flag. The flags are read when the command runs or shows ``--help`` (the plugins load then).
    The callback receives them as keyword arguments (``None`` / ``()`` when not given): pass them to
    :meth:`given`.
    """

    def __init__(self, *args: Any, family: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.family = family
        self._added: list[click.Parameter] | None = None
        self._declared: dict[str, list[tuple[str, Option]]] = {}

    def declared(self) -> dict[str, list[tuple[str, Option]]]:
        """Option name -> ``[(object name, Option)]`` for the options that became flags."""
        self.plugin_params()
        return self._declared

    def plugin_params(self) -> list[click.Parameter]:
        """The flags of the family's declared options (computed once)."""
        if self._added is None:
            label = plugins.FAMILIES[self.family][2]
            taken_names = {p.name for p in self.params}
            taken_opts = {o for p in self.params for o in (*p.opts, *p.secondary_opts)} | {"--help", "-h"}
            declared: dict[str, list[tuple[str, Option]]] = {}
            for name, obj in sorted(plugins.registry(self.family).items()):
                for opt in getattr(obj, "options", None) or ():
                    if opt.name not in taken_names:
                        declared.setdefault(opt.name, []).append((name, opt))
            added = []
            for opt_name, owners in declared.items():
                param = option_param(owners[0][1], [f"{label} {name}" for name, _ in owners])
                if {*param.opts, *param.secondary_opts} & taken_opts:
                    continue  # a flag the command already has: reachable with --opt KEY=VALUE
                taken_opts |= {*param.opts, *param.secondary_opts}
                self._declared[opt_name] = owners
                added.append(param)
            self._added = added
        return self._added

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        params = super().get_params(ctx)
        fixed = len(self.params)
        return [*params[:fixed], *self.plugin_params(), *params[fixed:]]

    def given(self, values: Mapping[str, Any], objects: Iterable[str], pairs: Sequence[str] = ()) -> dict[str, Any]:
        """The plugin options the user gave, typed, for the chosen objects.

        Args:
            values: the callback's plugin-flag keyword arguments (``None`` / ``()``: not given).
            objects: the names of the objects the command will use (e.g. the ``--to`` publishers, the
                chat backend); names that are not registered are skipped (the core reports them).
            pairs: ``--opt KEY=VALUE`` values, for any option the chosen objects declare.
        Returns:
            Option name -> typed value (:func:`vlhub.core.options.coerce`), only what was given.
        Raises:
            BadInput: a flag or ``--opt`` key that none of the chosen objects declares, or a value
                that does not convert.
        """
        label = plugins.FAMILIES[self.family][2]
        registry = plugins.registry(self.family)
        chosen = [name for name in dict.fromkeys(objects) if name in registry]
        own = {opt.name: opt for name in reversed(chosen) for opt in getattr(registry[name], "options", None) or ()}
        out: dict[str, Any] = {}
        for key, value in values.items():
            if value is None or value == ():
                continue
            owners = [name for name, _ in self.declared().get(key, [])]
            if chosen and key not in own:
                raise BadInput(f"{flag(key)} is an option of the {label} {', '.join(owners) or '?'}, which is not used "
                               f"here ({', '.join(chosen)})", f"drop {flag(key)}, or choose that {label}")
            option = own.get(key) or self.declared()[key][0][1]
            out[key] = coerce(option, list(value) if isinstance(value, tuple) else value, FLAGS)
        for key, value in parse_pairs(pairs).items():
            if chosen and key not in own:
                names = ", ".join(sorted(own)) or "none"
                raise BadInput(f"--opt {key}: no such option of the {label} {', '.join(chosen)} (options: {names})",
                               "use one of the listed options")
            out[key] = coerce(own[key], value, PAIRS) if key in own else value
        return out


@click.command(name="plugins")
@click.option("--json", "as_json", is_flag=True, help="Output JSON.")
def plugins_cmd(as_json: bool) -> None:
    """List loaded plugins, what each registered (with options and secrets), and plugins that failed."""
    report = plugins.host().describe()
    if as_json:
        emit_json(report)
        return
    click.echo(f"vlhub plugin API {report['plugin_api_version']}")
    for p in report["plugins"]:
        kind = "built-in" if p["builtin"] else p["distribution"]
        click.echo(f"{p['name']} {p['version']} ({kind})")
        for family, names in p["registered"].items():
            click.echo(f"  {plugins.FAMILIES[family][2]}: {', '.join(names)}")
        for family, objects in p.get("objects", {}).items():
            for obj in objects:
                for secret in obj["secrets"]:
                    login = f", or the {secret['login']}" if secret["login"] else ""
                    click.echo(f"  secret {secret['name']} ({plugins.FAMILIES[family][2]} {obj['name']}): "
                               f"${', $'.join(secret['env'])}{login}")
        if p["hooks"]:
            click.echo(f"  hooks: {', '.join(p['hooks'])}")
    for f in report["failures"]:
        click.echo(f"FAILED {f['plugin']} ({f['stage']}): {f['error']}")
