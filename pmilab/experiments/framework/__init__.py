"""The verification framework, which knows no claim: the claim contract (`claim`), sweeps of
runs executed in local processes (`sweep`), the append-only run tables (`table`) and the report
files (`report`)."""
