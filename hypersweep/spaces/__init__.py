"""The search-space language: YAML `space:` -> typed params -> Optuna suggest calls and grids."""
from hypersweep.spaces.check import check_against
from hypersweep.spaces.grid import axis, grid, grid_point, grid_size, on_grid, spreads_a_range
from hypersweep.spaces.language import (
    KINDS,
    Categorical,
    Conditional,
    Fixed,
    Float,
    Int,
    Param,
    Space,
    describe,
    fixed_values,
    kind_name,
    lowest_whole_values,
    param_names,
    parse_space,
    space_values,
    to_raw,
    trial_lows,
    values_beside,
    walk,
)
from hypersweep.spaces.optuna_bridge import distributions, suggest

__all__ = [
    "KINDS", "Categorical", "Conditional", "Fixed", "Float", "Int", "Param", "Space",
    "axis", "check_against", "describe", "distributions", "fixed_values", "grid", "grid_point",
    "grid_size", "kind_name", "lowest_whole_values", "on_grid", "param_names", "parse_space",
    "space_values", "spreads_a_range", "suggest", "to_raw", "trial_lows", "values_beside",
    "walk",
]
