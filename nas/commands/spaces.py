"""`nas spaces`, `nas space show`, `nas space sample`: list and sample the design spaces."""

from __future__ import annotations

import typer
from rich.table import Table

from core.console import console, human, print_json
from core.errors import UserError
from evaluators.cost import analytic_cost
from search_spaces.space import SPACES, get_space

space_app = typer.Typer(no_args_is_help=True, help="Inspect and sample one design space.")


def spaces(json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """List the registered search spaces."""
    rows = [dict(name=n, description=get_space(n).description, dimensions=len(get_space(n).dimensions()))
            for n in SPACES.names()]
    if json_out:
        print_json(rows)
        return
    table = Table("space", "dimensions", "description", title="Search spaces")
    for r in rows:
        table.add_row(r["name"], str(r["dimensions"]), r["description"])
    console.print(table)


@space_app.command("show")
def show(name: str = typer.Argument(..., help="Space name, e.g. unet_mobile."),
         json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """Every dimension of a space with its choices and when it is active."""
    space = get_space(name)
    dims = space.dimensions()
    if json_out:
        print_json([dict(name=d.name, choices=list(d.choices), description=d.description, condition=d.condition)
                    for d in dims])
        return
    table = Table("dimension", "choices", "active when", "changes", title=f"{name}: {space.description}")
    for d in dims:
        table.add_row(d.name, ", ".join(map(str, d.choices)), d.condition or "always", d.description)
    console.print(table)


@space_app.command("sample")
def sample(name: str = typer.Argument(..., help="Space name, e.g. unet_mobile."),
           n: int = typer.Option(5, "--n", help="Number of distinct configs."),
           seed: int = typer.Option(0, "--seed", help="Sampler seed (deterministic)."),
           json_out: bool = typer.Option(False, "--json", help="One config JSON per line (loadable by --config).")) -> None:
    """Draw N distinct architectures with Optuna's random sampler and show their costs."""
    if n < 1 or n > 10000:
        raise UserError(f"--n must be between 1 and 10000, got {n}")
    configs = get_space(name).sample_random(n, seed)
    if json_out:
        for config in configs:
            print(config.to_json(indent=None))
        return
    table = Table("arch id", "levels (ch/down/up/depth/attn/sep)", "mid", "params", "MACs", title=f"{n} samples of {name}")
    for c in configs:
        cost = analytic_cost(c)
        levels = " ".join(f"{lv.channels}/{lv.down_res}/{lv.up_res}/{lv.transformer_depth}/{lv.attention[:2]}/"
                          f"{'S' if lv.separable else 'F'}" for lv in c.levels)
        table.add_row(c.arch_id, levels, f"{c.mid.num_res}r{c.mid.transformer_depth}t", human(cost.params), human(cost.macs))
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("spaces")(spaces)
    app.add_typer(space_app, name="space")
