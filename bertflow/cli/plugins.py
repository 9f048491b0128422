import json

import typer

from bertflow.cli._app import app


@app.command("plugins")
def plugins_cli(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List installed bertflow plugins: version, hooks, tasks, factories and load failures."""
    from bertflow.hooks.manager import describe_plugins

    info = describe_plugins()
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    if not info["plugins"]:
        typer.echo("No bertflow plugins installed (entry-point group 'bertflow').")
    for plugin in info["plugins"]:
        version = f" {plugin['version']}" if plugin["version"] else ""
        dist = f" ({plugin['distribution']}{version})" if plugin["distribution"] else ""
        typer.echo(f"{plugin['name']}{dist}")
        typer.echo(f"  hooks:     {', '.join(plugin['hooks']) or '-'}")
        for task in plugin["tasks"]:
            typer.echo(f"  task:      {task['name']}  factory={task['factory']}  scorer={task['scorer'] or '-'}  "
                       f"converters={','.join(task['converters']) or '-'}")
        if plugin["encoders"]:
            typer.echo(f"  encoders:  {', '.join(plugin['encoders'])}")
    for failure in info["failures"]:
        typer.secho(f"✘ {failure['name']} ({failure['value']}) failed to load: {failure['error']}",
                    fg=typer.colors.RED)
