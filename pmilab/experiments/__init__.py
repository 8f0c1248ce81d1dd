"""Experiments: the claims `pmilab verify` checks, and the framework that runs them.

Layers, each importing only those before it (docs/architecture.md):
- `framework/`: the claim contract (`claim.ClaimModule`, `ClaimResult`), sweeps of runs in
  local processes (`sweep`), the append-only run tables (`table`) and the report files
  (`report`); it knows no claim;
- `tasks/`: task functions, `task(params) -> metrics`, that train or sample one run;
- `claims/`: one module per claim of docs/theory.md (`t1` ... `t6`), each a config with
  presets, its sweeps and its verdicts; `claims.CLAIMS` is the registry;
- `verify`: runs claims (sweeps, then verdicts) and writes the report.

Figures sit above all of this, in `pmilab.figures`.
"""
